//! Configuration: one TOML file, every key documented in `attune.example.toml`,
//! overridden by `ATTUNE_SECTION_KEY` environment variables (`ATTUNE_DATABASE_URL`,
//! `ATTUNE_SCHEDULE_SCORE`, ...). Unknown keys are errors, not silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod channels;
mod values;

pub use channels::{
    ChannelConfig, ChannelType, Delivery, NUDGE_CHANNELS, OutboxFormat, host_port, webhook_address,
};

pub use values::class_weight::parse as parse_class_weight;
pub use values::{Cron, DayEvery, HelpUrl, LogFormat, SourceKind, TimeOfDay, TimeZone};

use crate::model::optim::ClassWeight;
use crate::store::DatabaseUrl;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH`, a plain file path, or `postgres://...` (its password never printed).
    #[serde(with = "values::database_url")]
    pub database_url: DatabaseUrl,
    pub schedule: Schedules,
    pub scoring: Scoring,
    pub training: Training,
    pub retrain: Retrain,
    pub playbook: Playbook,
    pub pull: Pull,
    pub features: Features,
    /// The business's own event kinds (beyond attune's built-in vocabulary), each with what
    /// it means to attune's rules: `message = "none"`, `purchase = "payment"`.
    pub kinds: std::collections::BTreeMap<String, String>,
    /// What churn means for this business.
    pub churn: Churn,
    /// Where customer activity comes from: SQL databases, drop directories, HTTP clients.
    pub sources: Vec<SourceConfig>,
    /// How approved nudges are claimed, retried and paused on their way out.
    pub delivery: Delivery,
    /// Where approved nudges go: webhooks, SMTP, outbox directories. None: they wait.
    pub channels: Vec<ChannelConfig>,
    pub worker: Worker,
    pub http: Http,
    /// How long ids and text values of events may be.
    pub input: crate::ingest::mapping::InputLimits,
    pub log: Log,
    /// The currency amounts are shown in (`currency`, an ISO 4217 code, and `symbol`,
    /// unset: the currency's own).
    #[serde(with = "values::money")]
    pub money: crate::domain::Currency,
    /// The `ATTUNE_*` variables that set a setting when this config was loaded (not a key
    /// of the file).
    #[serde(skip)]
    pub overridden_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Schedules {
    /// Cron expressions with seconds: `sec min hour day-of-month month day-of-week`, in UTC.
    pub pull: Cron,
    pub score: Cron,
    /// Re-score customers whose activity changed since their last score.
    pub rescore: Cron,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// A model artifact to score with instead of the registry's champion.
    pub model: Option<PathBuf>,
    /// Customers at or above this churn probability count as at risk.
    pub risk_threshold: f64,
    /// Log a warning when a feature's population stability index against the training
    /// data exceeds this (0.1 some shift, 0.25 a large shift).
    pub psi_warning: f64,
    /// Retention: the scores of this many of the newest full runs are kept, with every
    /// run after the oldest of them; older runs keep their counts and drift only.
    pub keep_full_runs: u32,
    /// PostgreSQL: a scoring run is split into shards of about this many active customers
    /// (ranges of customer ids), which any daemon sharing the database may take. SQLite
    /// has one daemon and scores a run as one shard.
    pub shard_customers: u32,
}

/// What churn means: `contract` (the customer record's `churned_on`, which a `churned`
/// event sets) or `inactivity` (no event of `kinds` for `days` days).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    pub definition: ChurnKind,
    /// inactivity: the kinds (or meanings) that count as activity.
    pub kinds: Vec<String>,
    /// inactivity: days of silence after which a customer has left; also the label's
    /// horizon (no such event in the next `days` days).
    pub days: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChurnKind {
    #[default]
    Contract,
    Inactivity,
}

impl ChurnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChurnKind::Contract => "contract",
            ChurnKind::Inactivity => "inactivity",
        }
    }
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            definition: ChurnKind::Contract,
            kinds: Vec::new(),
            days: None,
        }
    }
}

/// Which days training observes customers on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "\"month_starts\", \"week_starts\" or a list of dates such as [\"2026-01-01\", \"2026-02-15\"]"
)]
pub enum ObservationDays {
    /// `"month_starts"` (the first of each month) or `"week_starts"` (Mondays).
    Every(DayEvery),
    /// These days (`["2026-01-01", "2026-02-15"]`).
    Dates(Vec<chrono::NaiveDate>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Training {
    /// The label under `[churn] definition = "contract"`: churned within this many days
    /// after an observation day (an inactivity definition's horizon is its `days`).
    pub horizon_days: u64,
    /// Observation days: `"month_starts"`, `"week_starts"`, or a list of dates. Never before
    /// the first day of imported activity, and only days whose horizon has ended.
    pub observation_days: ObservationDays,
    /// How many of them: the latest this many whose horizon has ended (not for a list).
    #[serde(alias = "observation_months")]
    pub observation_count: usize,
    /// Share of customers held out: they are only ever on the test side.
    pub validation_customer_share: f64,
    /// The backtest's rolling origins: the latest this many observation days are tested
    /// on, each by a model trained on the days whose labels were known by then.
    pub backtest_days: usize,
    /// Below this many churners on the test side, attune says the metrics are noise and
    /// the retrain gate keeps the champion.
    pub min_test_churners: usize,
    /// Bootstrap resamples (of customers) behind each 95% interval.
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// `none` keeps probabilities calibrated (imbalance is handled by ranking: the risk
    /// threshold and top-k capacity); `balanced` weights churners up, as scikit-learn does.
    #[serde(with = "values::class_weight")]
    pub class_weight: ClassWeight,
    /// Marketing's capacity: precision and recall are reported at these top-k sizes.
    pub capacities: Vec<usize>,
    /// Where trained artifacts are written.
    pub models_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retrain {
    /// When to train a challenger (cron with seconds, UTC); default Mondays 03:00.
    pub schedule: Cron,
    /// The challenger is promoted only if its validation AUC is at least the champion's
    /// minus this, on the same rows.
    pub auc_tolerance: f64,
    /// ... and its top-decile lift at least the champion's minus this.
    pub lift_tolerance: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Playbook {
    /// The playbook file (rules, plans, contact roles). Unset: the default playbook built
    /// into attune (`playbook.toml` in the repository).
    pub file: Option<PathBuf>,
    /// Contact pressure: at most this many nudges per customer in any `window_days`,
    /// across every rule. Lower-priority nudges over the limit are deferred.
    pub max_nudges: u32,
    pub window_days: u32,
    /// No customer is contacted between these times of day in their own time zone
    /// (`HH:MM`); a send time inside them moves to the end.
    pub quiet_hours_start: TimeOfDay,
    pub quiet_hours_end: TimeOfDay,
    /// The time zone of customers without a `timezone` attribute (an IANA name).
    pub default_timezone: TimeZone,
    /// Expected value = churn probability x monthly charge x this many months.
    pub value_horizon_months: f64,
    /// Risk bands: `medium` from this churn probability, `high` from `high_risk_from`.
    pub medium_risk_from: f64,
    pub high_risk_from: f64,
    /// The business's help page (`https://...`), the `{help_url}` placeholder of playbook
    /// messages. A playbook whose messages use it needs it set.
    pub help_url: Option<HelpUrl>,
}
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Pull {
    /// A directory the pull job imports `customers*.csv|ndjson` and `events*.csv|ndjson`
    /// files from, moving each to `done/` once taken. Unset: the pull job does nothing.
    pub inbox: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Features {
    /// The feature spec (TOML); unset: the spec built into attune (`features.toml`).
    pub spec: Option<PathBuf>,
}

/// One source of activity events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name: its cursor, its quarantine rows and its events' `source`.
    pub name: String,
    /// `sql`, `files` or `http`.
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// sql: the database URL (sqlite://PATH or postgres://...). Prefer `url_env`: a URL with
    /// a password belongs in the environment, not in this file.
    pub url: Option<String>,
    /// sql: the environment variable holding the database URL.
    pub url_env: Option<String>,
    /// sql: the query, with `$1` the cursor and `$2` the batch size, e.g.
    /// `SELECT id, ... FROM events WHERE id > $1 ORDER BY id LIMIT $2`.
    pub query: Option<String>,
    /// sql: the column whose largest value read is the new cursor (a number, or text that
    /// sorts, such as ISO timestamps).
    pub cursor_column: Option<String>,
    /// sql: the cursor before the first pull.
    #[serde(default = "default_cursor_start")]
    pub cursor_start: String,
    /// Rows read per batch (sql: per query).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// files: rows per transaction (a file's progress is committed with each). Large
    /// transactions write the customer index and the rollups once each, in key order.
    #[serde(default = "default_commit_rows")]
    pub commit_rows: usize,
    /// files: the drop directory. Files are taken once: moved to `done/`, or with their
    /// rejected rows listed beside them, to `rejected/`.
    pub dir: Option<PathBuf>,
    /// Kinds this source sends that the business declares here rather than in `[kinds]`
    /// (the same form: `name = "meaning"` or `"none"`).
    #[serde(default)]
    pub declare_kinds: std::collections::BTreeMap<String, String>,
    /// http: the environment variable holding the bearer token clients send.
    pub token_env: Option<String>,
    /// attune field -> the source's column (customer_id, kind, occurred_at, value,
    /// source_event_id, source). Unmapped fields are read from columns of their own name.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, String>,
    /// The source's own kind names -> the kinds attune stores them as (attune's own, or
    /// the business's declared kinds).
    #[serde(default)]
    pub kinds: std::collections::BTreeMap<String, String>,
}

fn cron(expr: &str) -> Cron {
    expr.parse().expect("a built-in schedule parses")
}

fn default_cursor_start() -> String {
    "0".into()
}

fn default_batch() -> usize {
    200_000
}

fn default_commit_rows() -> usize {
    1_000_000
}

impl SourceConfig {
    /// The mapping of this source's rows onto events of the kinds in `catalog` (checked by
    /// config validation against the declared kinds).
    pub fn mapping(
        &self,
        catalog: &std::sync::Arc<crate::domain::EventKinds>,
    ) -> Result<crate::ingest::mapping::EventMapping, String> {
        let mut kinds = std::collections::BTreeMap::new();
        for (theirs, ours) in &self.kinds {
            let k = catalog
                .accept(ours)
                .map_err(|e| format!("kinds.{theirs:?}: {e}"))?;
            kinds.insert(crate::domain::kinds::normalize(theirs), k.name.clone());
        }
        for field in self.columns.keys() {
            if !crate::ingest::mapping::EVENT_FIELDS.contains(&field.as_str()) {
                return Err(format!(
                    "columns.{field}: {field:?} is not an event field; map one of: {}",
                    crate::ingest::mapping::EVENT_FIELDS.join(", ")
                ));
            }
        }
        Ok(crate::ingest::mapping::EventMapping {
            source: self.name.clone(),
            columns: self.columns.clone(),
            kinds,
            catalog: catalog.clone(),
            limits: Default::default(),
        })
    }

    /// Environment variables this source reads secrets from.
    pub fn secret_vars(&self) -> impl Iterator<Item = &str> {
        self.url_env
            .iter()
            .chain(self.token_env.iter())
            .map(String::as_str)
    }

    fn validate(&self, catalog: &std::sync::Arc<crate::domain::EventKinds>) -> Result<(), String> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_name {
            return Err(format!(
                "name {:?} is not a source name; use letters, digits, - and _ (at most 64)",
                self.name
            ));
        }
        self.mapping(catalog)?;
        if self.batch == 0 || self.batch > 1_000_000 {
            return Err(format!("batch = {} must be from 1 to 1000000", self.batch));
        }
        if self.commit_rows == 0 {
            return Err("commit_rows = 0 must be at least 1".into());
        }
        let need = |what: bool, key: &str, hint: &str| {
            if what {
                Ok(())
            } else {
                Err(format!("a {} source needs `{key}`: {hint}", self.kind))
            }
        };
        match self.kind {
            SourceKind::Sql => {
                need(
                    self.url.is_some() || self.url_env.is_some(),
                    "url_env",
                    "the environment variable holding the database URL",
                )?;
                if let Some(url) = &self.url {
                    let db = crate::store::DatabaseUrl::parse(url).map_err(|e| e.to_string())?;
                    if db.redacted() != *url {
                        return Err("url holds a password; put the URL in an environment variable and name it with url_env".into());
                    }
                }
                let q = self.query.as_deref().unwrap_or_default();
                need(
                    q.contains("$1") && q.contains("$2"),
                    "query",
                    "a query reading rows after the cursor $1, at most $2 of them, in cursor order: SELECT ... WHERE id > $1 ORDER BY id LIMIT $2",
                )?;
                need(
                    self.cursor_column.is_some(),
                    "cursor_column",
                    "the column whose largest value read becomes the cursor, e.g. \"id\"",
                )?;
            }
            SourceKind::Files => need(
                self.dir.is_some(),
                "dir",
                "the drop directory to take files from",
            )?,
            SourceKind::Http => need(
                self.token_env.is_some(),
                "token_env",
                "the environment variable holding the bearer token its clients send",
            )?,
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Worker {
    /// Prefix of this process's worker names; a unique suffix is always added.
    pub name: String,
    /// Seconds to let running jobs finish after Ctrl-C or SIGTERM.
    #[serde(rename = "shutdown_grace_secs", with = "values::secs")]
    pub shutdown_grace: std::time::Duration,
    /// How often an idle worker looks for new jobs, in milliseconds.
    #[serde(rename = "poll_interval_ms", with = "values::millis")]
    pub poll_interval: std::time::Duration,
    /// How long a lease (the right to run a scoring run, planning, a source's pull) lasts
    /// without renewal; its holder renews it every third of that while it works. A holder
    /// that dies blocks for at most this long. Also how long a job's worker may be silent
    /// before the job is taken back (three times its heartbeat).
    #[serde(rename = "lease_secs", with = "values::secs")]
    pub lease: std::time::Duration,
    /// A failed job is tried again up to this many attempts in all, after 5 s, 10 s, 20 s,
    /// ... (doubling, with jitter, at most 10 minutes); an error retrying cannot fix ends
    /// it at once.
    pub max_attempts: u32,
}

/// The review desk: web pages and the JSON API, served by `attune run` and `attune demo`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Serve the review desk beside the workers.
    pub enabled: bool,
    /// The address to listen on, `HOST:PORT`; port 0 picks a free port.
    #[serde(with = "values::listen")]
    pub listen: std::net::SocketAddr,
    /// Mark the session cookie `Secure` (sent only over HTTPS, and to localhost).
    pub cookie_secure: bool,
    /// How long a sign-in lasts, in hours.
    #[serde(rename = "session_hours", with = "values::hours")]
    pub session: std::time::Duration,
    /// The largest request body accepted, in bytes; larger ones are refused with 413.
    pub body_limit_bytes: usize,
    /// Failed sign-ins for one name (a user's or not) within `login_window_minutes` that
    /// lock the name for `login_lockout_minutes` (an admin lifts it sooner with `attune
    /// users unlock NAME`).
    pub login_max_failures: u32,
    /// Failed sign-ins from one address within the window that lock the address.
    pub login_max_failures_per_address: u32,
    #[serde(rename = "login_window_minutes", with = "values::minutes")]
    pub login_window: std::time::Duration,
    #[serde(rename = "login_lockout_minutes", with = "values::minutes")]
    pub login_lockout: std::time::Duration,
    /// Take the client's address from the last entry of `X-Forwarded-For` (set this only
    /// behind a reverse proxy that appends it); otherwise the connection's peer address.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `attune=debug,sqlx=warn`.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DatabaseUrl::parse(DatabaseUrl::DEFAULT).expect("the default parses"),
            schedule: Schedules::default(),
            scoring: Scoring::default(),
            training: Training::default(),
            retrain: Retrain::default(),
            playbook: Playbook::default(),
            pull: Pull::default(),
            features: Features::default(),
            kinds: Default::default(),
            churn: Churn::default(),
            sources: Vec::new(),
            delivery: Delivery::default(),
            channels: Vec::new(),
            worker: Worker::default(),
            http: Http::default(),
            input: Default::default(),
            log: Log::default(),
            money: Default::default(),
            overridden_by: Vec::new(),
        }
    }
}

impl Default for Schedules {
    fn default() -> Self {
        Self {
            pull: cron("0 */5 * * * *"),
            score: cron("0 0 2 * * *"),
            rescore: cron("0 */10 * * * *"),
        }
    }
}

impl Default for Training {
    fn default() -> Self {
        Self {
            horizon_days: 60,
            observation_days: ObservationDays::Every(DayEvery::MonthStart),
            observation_count: 12,
            validation_customer_share: 0.25,
            backtest_days: 3,
            min_test_churners: 50,
            bootstrap_resamples: 1000,
            seed: 42,
            class_weight: ClassWeight::None,
            capacities: vec![100, 500, 1000],
            models_dir: PathBuf::from("models"),
        }
    }
}

impl Default for Retrain {
    fn default() -> Self {
        Self {
            schedule: cron("0 0 3 * * Mon"),
            auc_tolerance: 0.0,
            lift_tolerance: 0.0,
        }
    }
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            model: None,
            risk_threshold: 0.5,
            psi_warning: 0.2,
            keep_full_runs: 30,
            shard_customers: 100_000,
        }
    }
}

impl Default for Playbook {
    fn default() -> Self {
        Self {
            file: None,
            max_nudges: 2,
            window_days: 14,
            quiet_hours_start: TimeOfDay(
                chrono::NaiveTime::from_hms_opt(21, 0, 0).expect("a time"),
            ),
            quiet_hours_end: TimeOfDay(chrono::NaiveTime::from_hms_opt(8, 0, 0).expect("a time")),
            default_timezone: TimeZone(chrono_tz::UTC),
            value_horizon_months: 12.0,
            medium_risk_from: 0.3,
            high_risk_from: 0.5,
            help_url: None,
        }
    }
}

impl Playbook {
    fn validate(&self, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if self.max_nudges == 0 || self.window_days == 0 {
            return Err(invalid(
                "playbook.max_nudges",
                "max_nudges and window_days must be at least 1 (e.g. 2 nudges in 14 days)".into(),
            ));
        }
        if !(self.value_horizon_months.is_finite() && self.value_horizon_months > 0.0) {
            return Err(invalid(
                "playbook.value_horizon_months",
                format!(
                    "{} must be a number of months above 0, e.g. 12",
                    self.value_horizon_months
                ),
            ));
        }
        if !(0.0 < self.medium_risk_from
            && self.medium_risk_from < self.high_risk_from
            && self.high_risk_from <= 1.0)
        {
            return Err(invalid(
                "playbook.medium_risk_from",
                format!(
                    "risk bands need 0 < medium_risk_from < high_risk_from <= 1; got {} and {}",
                    self.medium_risk_from, self.high_risk_from
                ),
            ));
        }
        Ok(())
    }
}

impl Worker {
    /// How long a lease lasts, in whole seconds: `lease`, and never under 3 s (its holder
    /// renews it every third of that).
    pub fn lease_ttl_secs(&self) -> i64 {
        self.lease.as_secs().max(3) as i64
    }
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            name: "attune".into(),
            shutdown_grace: std::time::Duration::from_secs(30),
            poll_interval: std::time::Duration::from_millis(1000),
            lease: std::time::Duration::from_secs(15),
            max_attempts: 5,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            cookie_secure: true,
            session: std::time::Duration::from_secs(12 * 3600),
            body_limit_bytes: 256 * 1024,
            login_max_failures: 5,
            login_max_failures_per_address: 20,
            login_window: std::time::Duration::from_secs(15 * 60),
            login_lockout: std::time::Duration::from_secs(15 * 60),
            trust_forwarded_for: false,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info,sqlx=warn".into(),
        }
    }
}

pub const ENV_PREFIX: &str = "ATTUNE_";

/// The name of the files source `[pull] inbox` stands for.
pub const INBOX_SOURCE: &str = "inbox";

impl Config {
    /// The kinds the business declares: `[kinds]` and each source's `declare_kinds`, in
    /// name order. An error names the key: a bad name, an unknown meaning, or one name
    /// declared twice with two meanings.
    pub fn declared_kinds(&self) -> Result<Vec<crate::domain::DeclaredKind>, (String, String)> {
        use crate::domain::DeclaredKind;
        let mut out: std::collections::BTreeMap<String, (DeclaredKind, String)> =
            Default::default();
        let all = self
            .kinds
            .iter()
            .map(|(n, m)| (format!("kinds.{n}"), n, m))
            .chain(self.sources.iter().enumerate().flat_map(|(i, s)| {
                s.declare_kinds.iter().map(move |(n, m)| {
                    (format!("sources[{i}] ({}).declare_kinds.{n}", s.name), n, m)
                })
            }));
        for (key, name, meaning) in all {
            let d = DeclaredKind::parse(name, meaning).map_err(|e| (key.clone(), e.to_string()))?;
            match out.get(&d.name) {
                Some((other, at)) if other.meaning != d.meaning => {
                    return Err((
                        key,
                        format!(
                            "kind {:?} is declared again with another meaning ({} here, {} at {at}); declare it once",
                            d.name,
                            d.meaning.map_or("none", |m| m.as_str()),
                            other.meaning.map_or("none", |m| m.as_str()),
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    out.insert(d.name.clone(), (d, key));
                }
            }
        }
        if out.len() > crate::domain::kinds::MAX_DECLARED {
            return Err((
                "kinds".into(),
                format!(
                    "{} kinds are declared; at most {} are allowed",
                    out.len(),
                    crate::domain::kinds::MAX_DECLARED
                ),
            ));
        }
        Ok(out.into_values().map(|(d, _)| d).collect())
    }

    /// The currency amounts are shown in.
    pub fn currency(&self) -> crate::domain::Currency {
        self.money.clone()
    }

    /// The churn definition, its kinds resolved in `catalog`.
    pub fn churn_definition(
        &self,
        catalog: &crate::domain::EventKinds,
    ) -> Result<crate::features::churn::ChurnDefinition, String> {
        crate::features::churn::ChurnDefinition::new(
            self.churn.definition.as_str(),
            u32::try_from(self.training.horizon_days).unwrap_or(u32::MAX),
            &self.churn.kinds,
            self.churn.days,
            catalog,
        )
    }

    /// Reads the file if given (or `./attune.toml` if it exists), then applies environment
    /// overrides from `vars`, then validates.
    /// Where [`Config::load`] reads settings from, in words: the file given, else
    /// `attune.toml` if it exists, else the built-in defaults.
    pub fn origin(path: Option<&Path>) -> String {
        match path {
            Some(p) => p.display().to_string(),
            None if Path::new("attune.toml").exists() => "attune.toml".into(),
            None => "no file (attune.toml does not exist here): the built-in defaults".into(),
        }
    }

    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let default_path = Path::new("attune.toml");
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None if default_path.exists() => (
                std::fs::read_to_string(default_path).map_err(|source| ConfigError::Read {
                    path: default_path.to_owned(),
                    source,
                })?,
                default_path.display().to_string(),
            ),
            None => (String::new(), "defaults".to_owned()),
        };
        Self::from_toml(&text, &origin, vars)
    }

    pub fn from_toml(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        // Variables the sources read secrets from are theirs, not settings.
        let secrets: std::collections::HashSet<String> = table
            .get("sources")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_table())
            .flat_map(|t| ["url_env", "token_env"].map(|k| t.get(k).and_then(|v| v.as_str())))
            .flatten()
            .map(str::to_owned)
            .chain(channel_secret_vars(&table))
            .collect();
        // Which setting each environment variable set, so errors name the variable.
        let mut from_env: std::collections::HashMap<String, String> = Default::default();
        for (key, value) in vars {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if matches!(rest, "CONFIG" | "TEST_POSTGRES_URL")
                || value.is_empty()
                || secrets.contains(&key)
            {
                continue;
            }
            let setting = apply_override(&mut table, rest, &value).map_err(|message| {
                ConfigError::Invalid {
                    origin: format!("environment variable {key}"),
                    message,
                }
            })?;
            from_env.insert(setting, key);
        }
        let origin_of = |key: &str| match from_env.get(key) {
            Some(var) => format!("environment variable {var} ({key})"),
            None => format!("{origin}: {key}"),
        };
        let sources = table.get("sources").cloned();
        let mut config: Config = table.try_into().map_err(|e: toml::de::Error| {
            // A value that does not parse is named by its key (and its variable).
            match value_error(&e.to_string()) {
                Some((key, message)) => ConfigError::Invalid {
                    origin: origin_of(&in_which_source(&key, sources.as_ref())),
                    message,
                },
                None => ConfigError::Parse {
                    path: origin.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                },
            }
        })?;
        config.validate_with(&origin_of)?;
        let mut vars: Vec<String> = from_env.into_values().collect();
        vars.sort();
        config.overridden_by = vars;
        Ok(config)
    }

    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate_with(&|key| format!("{origin}: {key}"))
    }

    /// Checks every rule; `origin_of` says where a key's value came from.
    fn validate_with(&self, origin_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin_of(key),
            message,
        };
        if !(0.0..=1.0).contains(&self.scoring.risk_threshold) {
            return Err(invalid(
                "scoring.risk_threshold",
                format!(
                    "{} is not a probability; use a number from 0 to 1",
                    self.scoring.risk_threshold
                ),
            ));
        }
        if self.scoring.keep_full_runs == 0 {
            return Err(invalid(
                "scoring.keep_full_runs",
                "0 would remove the scores every reader uses; keep at least 1 full run (30 by default)".into(),
            ));
        }
        if self.scoring.shard_customers < 100 {
            return Err(invalid(
                "scoring.shard_customers",
                format!(
                    "{} customers per shard would make a run mostly bookkeeping; use at least 100 (100000 by default)",
                    self.scoring.shard_customers
                ),
            ));
        }
        if !(self.training.validation_customer_share > 0.0
            && self.training.validation_customer_share < 1.0)
        {
            return Err(invalid(
                "training.validation_customer_share",
                format!(
                    "{} must be a fraction between 0 and 1, e.g. 0.25",
                    self.training.validation_customer_share
                ),
            ));
        }
        if self.training.horizon_days == 0 || self.training.observation_count == 0 {
            return Err(invalid(
                "training",
                "horizon_days and observation_count must be at least 1".into(),
            ));
        }
        if let ObservationDays::Dates(d) = &self.training.observation_days
            && d.is_empty()
        {
            return Err(invalid(
                "training.observation_days",
                "the list of dates is empty; give at least one, or use \"month_starts\"".into(),
            ));
        }
        if self.training.backtest_days == 0 || self.training.bootstrap_resamples < 100 {
            return Err(invalid(
                "training.backtest_days",
                "backtest_days must be at least 1 and bootstrap_resamples at least 100".into(),
            ));
        }
        let declared = self.declared_kinds().map_err(|(key, m)| invalid(&key, m))?;
        let catalog = std::sync::Arc::new(crate::domain::EventKinds::provisional(&declared));
        self.churn_definition(&catalog)
            .map_err(|m| invalid("churn", m))?;
        let mut names = std::collections::BTreeSet::new();
        for (i, src) in self.sources.iter().enumerate() {
            let key = format!("sources[{i}] ({})", src.name);
            src.validate(&catalog).map_err(|m| invalid(&key, m))?;
            if !names.insert(src.name.as_str())
                || (src.name == INBOX_SOURCE && self.pull.inbox.is_some())
            {
                return Err(invalid(
                    &key,
                    format!(
                        "the name {:?} is used twice; each source needs its own",
                        src.name
                    ),
                ));
            }
        }
        self.delivery
            .validate()
            .map_err(|(key, m)| invalid(&key, m))?;
        let mut channel_names = std::collections::BTreeSet::new();
        let mut carried: std::collections::BTreeMap<&str, &str> = Default::default();
        for (i, ch) in self.channels.iter().enumerate() {
            let key = |field: &str| format!("channels[{i}] ({}).{field}", ch.name);
            ch.validate()
                .map_err(|(field, m)| invalid(&key(&field), m))?;
            if !channel_names.insert(ch.name.as_str()) {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "the name {:?} is used twice; each channel needs its own",
                        ch.name
                    ),
                ));
            }
            for c in &ch.carries {
                if let Some(other) = carried.insert(c.as_str(), ch.name.as_str()) {
                    return Err(invalid(
                        &key("carries"),
                        format!(
                            "{c:?} is carried by {other:?} already; a nudge's channel goes one way"
                        ),
                    ));
                }
            }
        }
        if self.http.session.is_zero() {
            return Err(invalid(
                "http.session_hours",
                "must be at least 1 (hours a sign-in lasts)".into(),
            ));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(invalid(
                "http.body_limit_bytes",
                format!(
                    "{} is too small to hold a form; use at least 1024 (the default is 262144)",
                    self.http.body_limit_bytes
                ),
            ));
        }
        for (key, v) in [
            (
                "http.login_max_failures",
                self.http.login_max_failures as u64,
            ),
            (
                "http.login_max_failures_per_address",
                self.http.login_max_failures_per_address as u64,
            ),
            (
                "http.login_window_minutes",
                self.http.login_window.as_secs(),
            ),
            (
                "http.login_lockout_minutes",
                self.http.login_lockout.as_secs(),
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if let Err((key, m)) = self.input.validate() {
            return Err(invalid(key, m));
        }
        self.playbook.validate(&invalid)?;
        if self.worker.name.trim().is_empty() {
            return Err(invalid(
                "worker.name",
                "is empty; name the worker, e.g. \"attune\"".into(),
            ));
        }
        Ok(())
    }
}

/// Environment variables `[[channels]]` read secrets from: theirs, not settings.
fn channel_secret_vars(table: &toml::Table) -> Vec<String> {
    table
        .get("channels")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_table())
        .flat_map(|t| {
            let list = t
                .get("secret_env")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str());
            list.chain(t.get("password_env").and_then(|v| v.as_str()))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The key and the message of an error in one value, from the text of a deserialization
/// error (`MESSAGE\nin `section.key``); `None` when the error is not about one value.
fn value_error(text: &str) -> Option<(String, String)> {
    let text = text.trim_end();
    let (message, key) = text.rsplit_once("\nin `")?;
    let key = key.strip_suffix('`')?;
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return None;
    }
    // `[money]` is read as one value: name the key the message is about.
    let key = match key {
        "money" if message.contains("symbol") => "money.symbol",
        "money" => "money.currency",
        k => k,
    };
    Some((key.to_owned(), message.to_owned()))
}

/// `sources.type` -> `sources[1] (crm).type`: which of the sources holds the bad value (the
/// first that does not read on its own).
fn in_which_source(key: &str, sources: Option<&toml::Value>) -> String {
    let (Some(field), Some(toml::Value::Array(list))) = (key.strip_prefix("sources."), sources)
    else {
        return key.to_owned();
    };
    list.iter()
        .enumerate()
        .find(|(_, s)| SourceConfig::deserialize(toml::Value::clone(s)).is_err())
        .map_or_else(
            || key.to_owned(),
            |(i, s)| {
                let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                format!("sources[{i}] ({name}).{field}")
            },
        )
}

/// `DATABASE_URL` sets `database_url`; `SCHEDULE_SCORE` sets `[schedule] score`.
/// Returns the setting it changed, as `section.key`.
fn apply_override(table: &mut toml::Table, rest: &str, value: &str) -> Result<String, String> {
    let lower = rest.to_ascii_lowercase();
    if lower == "database_url" {
        table.insert("database_url".into(), toml::Value::String(value.into()));
        return Ok("database_url".into());
    }
    // The sections are the config's own tables: no second list to keep in step.
    let defaults = toml::Table::try_from(Config::default()).expect("the defaults serialize");
    let sections: Vec<&str> = defaults
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| k.as_str())
        .collect();
    let Some(section) = sections
        .iter()
        .find(|s| lower.starts_with(&format!("{s}_")))
    else {
        return Err(format!(
            "is not a setting attune knows; settings are ATTUNE_DATABASE_URL or ATTUNE_<SECTION>_<KEY> with a section of {}",
            sections.join(", ")
        ));
    };
    let key = &lower[section.len() + 1..];
    // A comma-separated list of numbers is an array: ATTUNE_TRAINING_CAPACITIES=100,500.
    let list: Option<Vec<toml::Value>> = value
        .contains(',')
        .then(|| {
            value
                .split(',')
                .map(|p| p.trim().parse::<i64>().map(toml::Value::Integer).ok())
                .collect()
        })
        .flatten();
    let parsed = match list {
        Some(items) => toml::Value::Array(items),
        None => value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| value.parse::<f64>().map(toml::Value::Float))
            .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or_else(|_| toml::Value::String(value.into())),
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(Default::default()));
    let toml::Value::Table(t) = entry else {
        return Err(format!("[{section}] in the file is not a table"));
    };
    t.insert(key.into(), parsed);
    Ok(format!("{section}.{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("", "defaults", env(&[])).unwrap();
        assert_eq!(c.schedule.score, "0 0 2 * * *");
        assert_eq!((c.playbook.max_nudges, c.playbook.window_days), (2, 14));
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../../attune.example.toml");
        let c = Config::from_toml(text, "attune.example.toml", env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn environment_overrides_file() {
        let c = Config::from_toml(
            "[playbook]\nmax_nudges = 3\n",
            "f.toml",
            env(&[
                ("ATTUNE_PLAYBOOK_MAX_NUDGES", "9"),
                ("ATTUNE_DATABASE_URL", "x.db"),
                ("ATTUNE_TRAINING_CAPACITIES", "50, 200"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.playbook.max_nudges, 9);
        assert_eq!(c.database_url, DatabaseUrl::Sqlite("x.db".into()));
        assert_eq!(c.training.capacities, vec![50, 200]);
    }

    #[test]
    fn sources_are_checked_and_their_secret_variables_are_not_settings() {
        let text = r#"
[[sources]]
name = "billing"
type = "sql"
url_env = "ATTUNE_BILLING_URL"
query = "SELECT * FROM e WHERE id > $1 ORDER BY id LIMIT $2"
cursor_column = "id"
[sources.kinds]
BILL = "invoice_issued"

[[sources]]
name = "app"
type = "http"
token_env = "ATTUNE_APP_TOKEN"
"#;
        let c = Config::from_toml(
            text,
            "f.toml",
            env(&[("ATTUNE_APP_TOKEN", "s3cret"), ("ATTUNE_BILLING_URL", "x")]),
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].batch, 200_000);
        let m = c.sources[0]
            .mapping(&std::sync::Arc::new(crate::domain::EventKinds::builtin()))
            .unwrap();
        assert_eq!(m.kinds["bill"], "invoice_issued");
        let bad = |t: &str| {
            Config::from_toml(t, "f.toml", env(&[]))
                .unwrap_err()
                .to_string()
        };
        let e = bad(
            "[[sources]]\nname = \"x\"\ntype = \"sql\"\nurl = \"postgres://u:pw@h/db\"\nquery = \"$1 $2\"\ncursor_column = \"id\"\n",
        );
        assert!(e.contains("sources[0] (x)") && e.contains("url_env"), "{e}");
        let e = bad("[[sources]]\nname = \"x\"\ntype = \"files\"\n");
        assert!(e.contains("needs `dir`"), "{e}");
        let e = bad(
            "[[sources]]\nname = \"x\"\ntype = \"files\"\ndir = \"d\"\n[sources.kinds]\nA = \"teleport\"\n",
        );
        assert!(e.contains("kinds.\"A\": unknown event kind"), "{e}");
        let e = bad("[[sources]]\nname = \"x\"\ntype = \"ftp\"\n");
        assert!(e.contains("not a source type"), "{e}");
        let e = bad(
            "[[sources]]\nname = \"x\"\ntype = \"http\"\ntoken_env = \"T\"\n[[sources]]\nname = \"x\"\ntype = \"http\"\ntoken_env = \"T\"\n",
        );
        assert!(e.contains("used twice"), "{e}");
    }

    /// Issue 21: each value is parsed once into its type; a value that does not parse is
    /// named by its key, or by the variable that set it, with the fix.
    #[test]
    fn values_are_typed_once_and_bad_ones_name_their_key_or_variable() {
        let c = Config::from_toml(
            "[training]\nclass_weight = \"balanced\"\nobservation_days = \"week_starts\"\n[log]\nformat = \"json\"\n[worker]\nlease_secs = 9\npoll_interval_ms = 250\n[http]\nlisten = \"0.0.0.0:9000\"\nsession_hours = 2\n",
            "f.toml",
            env(&[("ATTUNE_PLAYBOOK_QUIET_HOURS_START", "22:30")]),
        )
        .unwrap();
        assert_eq!(c.training.class_weight, ClassWeight::Balanced);
        assert_eq!(
            c.training.observation_days,
            ObservationDays::Every(DayEvery::WeekStart)
        );
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.worker.lease, std::time::Duration::from_secs(9));
        assert_eq!(
            c.worker.poll_interval,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.http.session, std::time::Duration::from_secs(7200));
        assert_eq!(c.playbook.quiet_hours_start.to_string(), "22:30");
        for (file, vars, starts, says) in [
            (
                "[training]\nclass_weight = \"heavy\"\n",
                vec![],
                "f.toml: training.class_weight",
                "\"none\" or \"balanced\"",
            ),
            (
                "",
                vec![("ATTUNE_TRAINING_CLASS_WEIGHT", "heavy")],
                "environment variable ATTUNE_TRAINING_CLASS_WEIGHT (training.class_weight)",
                "\"none\" or \"balanced\"",
            ),
            (
                "",
                vec![("ATTUNE_LOG_FORMAT", "xml")],
                "environment variable ATTUNE_LOG_FORMAT (log.format)",
                "\"human\" or \"json\"",
            ),
            (
                "[[sources]]\nname = \"x\"\ntype = \"http\"\ntoken_env = \"T\"\n[[sources]]\nname = \"crm\"\ntype = \"ftp\"\n",
                vec![],
                "f.toml: sources[1] (crm).type",
                "sql, files or http",
            ),
            (
                "[training]\nobservation_days = \"fortnightly\"\n",
                vec![],
                "f.toml: training.observation_days",
                "\"month_starts\", \"week_starts\" or a list of dates",
            ),
            (
                "database_url = \"mysql://db\"\n",
                vec![],
                "f.toml: database_url",
                "unsupported database scheme",
            ),
        ] {
            let e = Config::from_toml(file, "f.toml", env(&vars))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(starts) && e.contains(says),
                "{file:?} {vars:?}: {e}"
            );
        }
        // Every section of the config can be set from the environment: the list of
        // sections is the config's own tables, not a second list.
        let c = Config::from_toml(
            "[churn]\nkinds = [\"payment\"]\n",
            "f.toml",
            env(&[
                ("ATTUNE_CHURN_DEFINITION", "inactivity"),
                ("ATTUNE_CHURN_DAYS", "30"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.churn.definition, c.churn.days),
            (ChurnKind::Inactivity, Some(30))
        );
    }

    /// A database password never prints: not in `config check`'s output, not in `Debug`.
    #[test]
    fn the_database_password_never_prints() {
        let c = Config::from_toml(
            "",
            "f.toml",
            env(&[(
                "ATTUNE_DATABASE_URL",
                "postgres://app:s3cret@db:5432/attune",
            )]),
        )
        .unwrap();
        assert!(matches!(&c.database_url, DatabaseUrl::Postgres(u) if u.contains("s3cret")));
        let shown = toml::to_string_pretty(&c).unwrap();
        assert!(
            shown.contains("postgres://app:***@db:5432/attune"),
            "{shown}"
        );
        let json = serde_json::to_string(&c).unwrap();
        let debug = format!("{c:?}");
        for text in [shown, json, debug] {
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = Config::from_toml("[schedule]\nscore = \"every day\"\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.toml: schedule.score") && e.contains("six fields"),
            "{e}"
        );
        let e = Config::from_toml("[playbok]\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `playbok`"), "{e}");
        let e = Config::from_toml("", "f.toml", env(&[("ATTUNE_SCHEDULE_SCORE", "every day")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable ATTUNE_SCHEDULE_SCORE (schedule.score)"),
            "{e}"
        );
        let e = Config::from_toml("[retrain]\nschedule = \"weekly\"\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml: retrain.schedule"), "{e}");
        let e = Config::from_toml("", "f.toml", env(&[("ATTUNE_NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ATTUNE_NOPE"), "{e}");
        let e = Config::from_toml("", "f.toml", env(&[("ATTUNE_HTTP_LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable ATTUNE_HTTP_LISTEN (http.listen)")
                && e.contains("HOST:PORT"),
            "{e}"
        );
        let e = Config::from_toml("[scoring]\nrisk_threshold = 2.0\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scoring.risk_threshold"), "{e}");
        let e = Config::from_toml("[scoring]\nkeep_full_runs = 0\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scoring.keep_full_runs"), "{e}");
        let c = Config::from_toml("", "f.toml", env(&[("ATTUNE_SCORING_KEEP_FULL_RUNS", "3")]))
            .unwrap();
        assert_eq!(c.scoring.keep_full_runs, 3);
        let e = Config::from_toml(
            "[playbook]\nquiet_hours_start = \"9pm\"\n",
            "f.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("f.toml: playbook.quiet_hours_start") && e.contains("HH:MM"),
            "{e}"
        );
        let e = Config::from_toml(
            "",
            "f.toml",
            env(&[("ATTUNE_PLAYBOOK_DEFAULT_TIMEZONE", "Mars/Base")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ATTUNE_PLAYBOOK_DEFAULT_TIMEZONE") && e.contains("IANA"),
            "{e}"
        );
        let e = Config::from_toml("[playbook]\nmedium_risk_from = 0.6\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("medium_risk_from < high_risk_from"), "{e}");
    }

    /// `[playbook] help_url` is a real address (issue 19: the default playbook said
    /// `attune.example/help`); a playbook that says `{help_url}` needs it.
    #[test]
    fn money_has_an_iso_currency_and_errors_name_the_key_or_variable() {
        let c = Config::from_toml("[money]\ncurrency = \"eur\"\n", "f.toml", env(&[])).unwrap();
        assert_eq!(c.currency().format(80.0), "€80.00");
        assert_eq!(Config::default().currency().format(80.0), "$80.00");
        let c = Config::from_toml("", "f.toml", env(&[("ATTUNE_MONEY_CURRENCY", "GBP")])).unwrap();
        assert_eq!(c.currency().code(), "GBP");
        assert_eq!(c.overridden_by, ["ATTUNE_MONEY_CURRENCY"]);
        let e = Config::from_toml("[money]\ncurrency = \"EURO\"\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.toml: money.currency") && e.contains("ISO 4217"),
            "{e}"
        );
        let e = Config::from_toml("", "f.toml", env(&[("ATTUNE_MONEY_CURRENCY", "dollars")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ATTUNE_MONEY_CURRENCY") && e.contains("\"dollars\""),
            "{e}"
        );
        let e = Config::from_toml("[money]\nsymbol = \"\"\n", "f.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: money.symbol"), "{e}");
    }

    #[test]
    fn the_help_url_is_a_real_address_and_required_by_messages_that_use_it() {
        let ok = Config::from_toml(
            "[playbook]\nhelp_url = \"https://help.acme.co.uk/billing\"\n",
            "f.toml",
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            ok.playbook.help_url.as_ref().map(HelpUrl::as_str),
            Some("https://help.acme.co.uk/billing")
        );
        for bad in [
            "attune.example/help",
            "https://example.com/help",
            "https://x.example/h",
            "https:// a",
        ] {
            let e = Config::from_toml("", "f.toml", env(&[("ATTUNE_PLAYBOOK_HELP_URL", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("ATTUNE_PLAYBOOK_HELP_URL"), "{bad}: {e}");
        }
        let default = crate::playbook::Playbook::default_playbook();
        assert!(
            default.rules_using_help_url().is_empty(),
            "no address in the default playbook"
        );
        assert!(crate::jobs::plan::check_help_url(&default, &Playbook::default()).is_ok());
        let text = "[[rules]]\nname = \"welcome\"\nstage = \"early_days\"\ntrigger = { on = \"signup\", within_days = 7 }\nmessage = \"See {help_url}\"\n";
        let pb = crate::playbook::file::parse("p.toml", text).unwrap();
        assert_eq!(pb.rules_using_help_url(), ["welcome"]);
        let e = crate::jobs::plan::check_help_url(&pb, &Playbook::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("playbook.help_url") && e.contains("welcome"),
            "{e}"
        );
        assert!(crate::jobs::plan::check_help_url(&pb, &ok.playbook).is_ok());
        assert!(!crate::playbook::file::DEFAULT_PLAYBOOK.contains(".example"));
    }

    #[test]
    fn declared_kinds_and_churn_definitions_are_checked() {
        let ok = Config::from_toml(
            "[kinds]\npurchase = \"payment\"\nmessage = \"none\"\n[churn]\ndefinition = \"inactivity\"\nkinds = [\"purchase\", \"message\"]\ndays = 60\n[training]\nobservation_days = \"week_starts\"\n",
            "f.toml",
            env(&[]),
        )
        .unwrap();
        let d = ok.declared_kinds().unwrap();
        assert_eq!(d.len(), 2);
        let bad = |t: &str| {
            Config::from_toml(t, "f.toml", env(&[]))
                .unwrap_err()
                .to_string()
        };
        let e = bad(
            "[kinds]\npurchase = \"payment\"\n[churn]\ndefinition = \"inactivity\"\nkinds = [\"purchse\"]\ndays = 60\n",
        );
        assert!(
            e.starts_with("f.toml: churn: churn.kinds: unknown event kind \"purchse\"")
                && e.contains("purchase"),
            "{e}"
        );
        let e = bad("[churn]\ndefinition = \"silence\"\n");
        assert!(
            e.contains("unknown variant `silence`") && e.contains("inactivity"),
            "{e}"
        );
        let e = bad("[churn]\ndefinition = \"inactivity\"\nkinds = [\"login\"]\n");
        assert!(e.contains("churn.days is missing"), "{e}");
        let e = bad("[kinds]\nlogin = \"none\"\n");
        assert!(
            e.contains("f.toml: kinds.login") && e.contains("attune's own kinds"),
            "{e}"
        );
        let e = bad("[kinds]\ndislike = \"complain\"\n");
        assert!(
            e.contains("kinds.dislike") && e.contains("complaint_opened"),
            "{e}"
        );
        let e = bad(
            "[kinds]\nticket = \"contact\"\n[[sources]]\nname = \"app\"\ntype = \"http\"\ntoken_env = \"T\"\n[sources.declare_kinds]\nticket = \"complaint\"\n",
        );
        assert!(
            e.contains("sources[0] (app).declare_kinds.ticket") && e.contains("declared again"),
            "{e}"
        );
        // A source may map its own names onto declared kinds.
        let e = bad(
            "[[sources]]\nname = \"app\"\ntype = \"http\"\ntoken_env = \"T\"\n[sources.kinds]\nMSG = \"message\"\n",
        );
        assert!(
            e.contains("kinds.\"MSG\": unknown event kind \"message\""),
            "{e}"
        );
        Config::from_toml("[kinds]\nmessage = \"none\"\n[[sources]]\nname = \"app\"\ntype = \"http\"\ntoken_env = \"T\"\n[sources.kinds]\nMSG = \"message\"\n", "f.toml", env(&[])).unwrap();
        let e = bad("[training]\nobservation_days = \"fortnightly\"\n");
        assert!(
            e.contains("training.observation_days") && e.contains("week_starts"),
            "{e}"
        );
    }
}
