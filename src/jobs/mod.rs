//! Background jobs and the daemon that runs them.
//!
//! Each job has its own module with its payload, its queue name and an `async fn run`
//! that tests call directly, without a worker. The daemon (`daemon`) turns cron ticks
//! into jobs in the persistent apalis queue of the same database and runs workers for
//! them. Job code here is glue: the decisions live in `features`, `model` and `playbook`.

pub mod daemon;
pub mod import;
pub mod par;
pub mod plan;
pub mod pull;
pub mod retrain;
pub mod score;
pub mod sources;
pub mod train;

use std::sync::Arc;

use chrono::NaiveDate;

use crate::config::Config;
use crate::features::FeatureSpec;
use crate::model::ModelArtifact;
use crate::store::Db;

/// What every job needs: the database and the configuration.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: Db,
    pub config: Arc<Config>,
    features: Arc<std::sync::OnceLock<Arc<FeatureSpec>>>,
}

impl JobContext {
    pub fn new(db: Db, config: Config) -> Self {
        Self {
            db,
            config: Arc::new(config),
            features: Default::default(),
        }
    }

    /// The feature spec: `[features] spec`, or the one built in. Read once.
    pub fn feature_spec(&self) -> anyhow::Result<Arc<FeatureSpec>> {
        if let Some(spec) = self.features.get() {
            return Ok(spec.clone());
        }
        let spec = feature_spec(&self.config)?;
        Ok(self.features.get_or_init(|| Arc::new(spec)).clone())
    }

    pub fn playbook_settings(&self) -> crate::playbook::Settings {
        use crate::config::Playbook as P;
        let p = &self.config.playbook;
        let d = crate::playbook::Settings::default();
        // The config was validated when it was loaded; the defaults only cover a config
        // built in code.
        crate::playbook::Settings {
            max_nudges: p.max_nudges,
            window_days: p.window_days,
            quiet_start: P::parse_time_of_day(&p.quiet_hours_start).unwrap_or(d.quiet_start),
            quiet_end: P::parse_time_of_day(&p.quiet_hours_end).unwrap_or(d.quiet_end),
            default_timezone: P::parse_timezone(&p.default_timezone).unwrap_or(d.default_timezone),
            value_horizon_months: p.value_horizon_months,
            medium_risk_from: p.medium_risk_from,
            high_risk_from: p.high_risk_from,
        }
    }

    /// The playbook: `[playbook] file`, or the default built into attune.
    pub fn playbook(&self) -> anyhow::Result<crate::playbook::Playbook> {
        crate::jobs::plan::load_playbook(self.config.playbook.file.as_deref())
    }

    /// The model to score with: the configured file, else the registry's champion, else
    /// the Telco model shipped in `models/`.
    pub async fn scoring_model(&self) -> anyhow::Result<ModelArtifact> {
        use anyhow::Context as _;
        if let Some(path) = &self.config.scoring.model {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading model {}", path.display()))?;
            return parse_model(&text).with_context(|| format!("loading model {}", path.display()));
        }
        if let Some(stored) = self.db.champion_model().await? {
            let model: ModelArtifact =
                serde_json::from_value(stored.artifact.0).with_context(|| {
                    format!(
                        "decoding champion model {} from the registry",
                        stored.version
                    )
                })?;
            model.validate()?;
            return Ok(model);
        }
        parse_model(DEFAULT_MODEL).context("loading the shipped default model")
    }
}

/// The Telco model trained by `attune train --csv tests/fixtures/telco.csv --preset telco`.
pub const DEFAULT_MODEL: &str = include_str!("../../models/telco-default.json");

pub fn parse_model(text: &str) -> anyhow::Result<ModelArtifact> {
    let model: ModelArtifact = serde_json::from_str(text)?;
    model.validate()?;
    Ok(model)
}

/// The feature spec the config names, or the one built in.
pub fn feature_spec(config: &Config) -> anyhow::Result<FeatureSpec> {
    Ok(match &config.features.spec {
        Some(path) => FeatureSpec::load(path)?,
        None => FeatureSpec::default_spec(),
    })
}

pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
