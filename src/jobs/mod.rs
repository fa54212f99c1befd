//! Background jobs and the daemon that runs them.
//!
//! Each job has its own module with its payload, its queue name and an `async fn run`
//! that tests call directly, without a worker. The daemon (`daemon`) turns cron ticks
//! into jobs in the persistent apalis queue of the same database and runs workers for
//! them. Job code here is glue: the decisions live in `features`, `model` and `playbook`.

pub mod daemon;
pub mod deliver;
pub mod import;
pub mod lease;
pub mod par;
pub mod plan;
pub mod predict;
pub mod progress;
pub mod pull;
pub mod retrain;
pub mod score;
pub mod sources;
pub mod train;

use std::sync::Arc;

use chrono::NaiveDate;

use crate::config::Config;
use crate::domain::{EventKinds, KindSet};
use crate::features::FeatureSpec;
use crate::features::churn::ChurnDefinition;
use crate::model::ModelArtifact;
use crate::store::Db;

/// What every job needs: the database and the configuration.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: Db,
    pub config: Arc<Config>,
    /// This process's name as a holder of leases and a worker: unique to it.
    pub worker: Arc<str>,
    /// Where long work says how far it has got; shows nothing unless the command line
    /// gives it a terminal display.
    pub progress: progress::Reporter,
    kinds: Arc<tokio::sync::OnceCell<Arc<EventKinds>>>,
    features: Arc<tokio::sync::OnceCell<Arc<FeatureSpec>>>,
}

impl JobContext {
    pub fn new(db: Db, config: Config) -> Self {
        let worker = unique_worker_name(&config.worker.name).into();
        Self {
            db,
            config: Arc::new(config),
            worker,
            progress: Default::default(),
            kinds: Default::default(),
            features: Default::default(),
        }
    }

    /// The same context, reporting progress to `progress`.
    pub fn with_progress(mut self, progress: progress::Reporter) -> Self {
        self.progress = progress;
        self
    }

    /// The event kinds this business records: attune's own and those the config declares,
    /// with the database's codes (a kind declared for the first time gets one now). Read
    /// once per process.
    pub async fn kinds(&self) -> anyhow::Result<Arc<EventKinds>> {
        use anyhow::Context as _;
        self.kinds
            .get_or_try_init(|| async {
                let declared = self
                    .config
                    .declared_kinds()
                    .map_err(|(key, m)| anyhow::anyhow!("{key}: {m}"))?;
                let kinds = self
                    .db
                    .event_kinds(&declared)
                    .await
                    .context("loading the event kinds")?;
                Ok::<_, anyhow::Error>(Arc::new(kinds))
            })
            .await
            .cloned()
    }

    /// The configured feature spec (`[features] spec`, or the one built in), its kinds
    /// resolved in [`JobContext::kinds`]. With `auto` set it still has to be derived for
    /// the kinds at hand ([`crate::features::auto`]). Read once.
    pub async fn feature_spec(&self) -> anyhow::Result<Arc<FeatureSpec>> {
        let kinds = self.kinds().await?;
        self.features
            .get_or_try_init(|| async {
                Ok::<_, anyhow::Error>(Arc::new(feature_spec(&self.config, &kinds)?))
            })
            .await
            .cloned()
    }

    /// The spec as planning and `features show` compute it: auto features derived for
    /// every kind the business records.
    pub async fn planning_spec(&self) -> anyhow::Result<Arc<FeatureSpec>> {
        let spec = self.feature_spec().await?;
        if !spec.auto {
            return Ok(spec);
        }
        let kinds = self.kinds().await?;
        let codes: Vec<_> = kinds
            .iter()
            .filter(|k| k.accepted)
            .map(|k| k.code)
            .collect();
        let valued: KindSet = codes.iter().copied().collect();
        Ok(Arc::new(crate::features::auto::derive(
            &spec, &kinds, &codes, &valued,
        )))
    }

    /// What churn means for this business (`[churn]`).
    pub async fn churn(&self) -> anyhow::Result<ChurnDefinition> {
        let kinds = self.kinds().await?;
        self.config
            .churn_definition(&kinds)
            .map_err(|m| anyhow::anyhow!("[churn]: {m}"))
    }

    pub fn playbook_settings(&self) -> crate::playbook::Settings {
        let p = &self.config.playbook;
        crate::playbook::Settings {
            max_nudges: p.max_nudges,
            window_days: p.window_days,
            quiet_start: p.quiet_hours_start.0,
            quiet_end: p.quiet_hours_end.0,
            default_timezone: p.default_timezone.0,
            value_horizon_months: p.value_horizon_months,
            medium_risk_from: p.medium_risk_from,
            high_risk_from: p.high_risk_from,
            help_url: p.help_url.as_ref().map(|u| u.as_str().to_owned()),
            currency: self.config.currency(),
        }
    }

    /// The playbook: `[playbook] file`, or the default built into attune.
    /// The playbook the config names, or the built-in one. One that fails to load is
    /// [`Permanent`]: a planning run aborts with the reason rather than retry it.
    pub fn playbook(&self) -> anyhow::Result<crate::playbook::Playbook> {
        let pb = crate::jobs::plan::load_playbook(self.config.playbook.file.as_deref())
            .map_err(Permanent::from)?;
        crate::jobs::plan::check_help_url(&pb, &self.config.playbook).map_err(Permanent::from)?;
        Ok(pb)
    }

    /// The model to score with: the configured file, else the registry's champion, else
    /// the Telco model shipped in `models/`.
    pub async fn scoring_model(&self) -> anyhow::Result<ModelArtifact> {
        use anyhow::Context as _;
        if let Some(path) = &self.config.scoring.model {
            // A file that cannot be read may be there on the next try (a deploy under
            // way); one that does not parse will not.
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading model {}", path.display()))?;
            return parse_model(&text)
                .with_context(|| format!("loading model {}", path.display()))
                .map_err(Permanent::from);
        }
        if let Some(stored) = self.db.champion_model().await? {
            return stored_model(stored);
        }
        parse_model(DEFAULT_MODEL).context("loading the shipped default model")
    }
}

pub use crate::model::DEFAULT_MODEL;

/// A model from the registry, decoded and checked; one that does not decode or validate
/// is [`Permanent`]: no retry changes what is stored.
pub fn stored_model(stored: crate::store::StoredModel) -> anyhow::Result<ModelArtifact> {
    use anyhow::Context as _;
    let model: ModelArtifact = serde_json::from_value(stored.artifact.0)
        .with_context(|| format!("decoding model {} from the registry", stored.version))
        .map_err(Permanent::from)?;
    model.validate().map_err(|e| Permanent::from(e.into()))?;
    Ok(model)
}

pub fn parse_model(text: &str) -> anyhow::Result<ModelArtifact> {
    let model: ModelArtifact = serde_json::from_str(text)?;
    model.validate()?;
    Ok(model)
}

/// The feature spec the config names, or the one built in (with auto features for a
/// business that declares kinds of its own), its kinds resolved in `kinds`.
pub fn feature_spec(config: &Config, kinds: &EventKinds) -> anyhow::Result<FeatureSpec> {
    let mut spec = match &config.features.spec {
        Some(path) => FeatureSpec::load(path, kinds)?,
        None => {
            let mut spec = FeatureSpec::default_for(kinds);
            spec.auto = kinds.iter().any(|k| k.accepted && !k.built_in);
            spec
        }
    };
    spec.currency = config.currency();
    Ok(spec)
}

/// An error no retry can fix (bad input, a bad config or playbook, too little history):
/// the job ends at once with the reason instead of being tried again.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Permanent(pub anyhow::Error);

impl Permanent {
    /// Wraps an error as one retrying cannot fix.
    pub fn from(e: anyhow::Error) -> anyhow::Error {
        anyhow::Error::new(Permanent(e))
    }
}

/// A name no other process will have: prefix, host, pid and a random suffix.
pub fn unique_worker_name(prefix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix: u32 = rand::random();
    format!("{prefix}-{host}-{}-{suffix:08x}", std::process::id())
}

pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
