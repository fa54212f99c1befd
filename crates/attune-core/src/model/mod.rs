//! The churn model: a regularised logistic regression over encoded point-in-time features.
//!
//! This module exists so that training, scoring and explaining a score are one small,
//! testable piece of pure code: [`fit`] turns feature rows and churn labels into a
//! [`ModelArtifact`] (plain data, serialised as readable JSON), and the artifact scores
//! ([`ModelArtifact::predict`]) and explains ([`ModelArtifact::drivers`]) customers. It
//! never touches the database, files or the clock: callers load and store artifacts and
//! pass in `created_at` and `attune_version`.

pub mod artifact;
pub mod backtest;
pub mod dataset;
pub mod drift;
pub mod encoder;
pub mod evaluation;
pub mod explain;
mod fit;
pub mod frame;
pub mod metrics;
pub mod optim;
pub mod split;
/// Synthetic rows for the trainer's tests and benchmarks (`attune-bench fit`); not shipped.
#[cfg(any(test, feature = "testing"))]
pub mod synthetic;

pub use artifact::{Driver, EncodedFeature, FORMAT, ModelArtifact, SolverReport, TrainingInfo};
pub use encoder::{Column, Encoder, Encoding};
pub use fit::{
    FitOptions, LINFA_LIBRARY, SOLVER_LIBRARY, Solver, fingerprint, fingerprint_frame, fit,
    fit_frame, fit_frame_rows, relative_gradient,
};
pub use frame::Frame;

/// The Telco model trained by `attune train --csv tests/fixtures/telco.csv --preset telco`,
/// shipped in the binary: what the daemon scores with before a model of the business's own.
pub const DEFAULT_MODEL: &str = include_str!("../../../../models/telco-default.json");
pub use metrics::Metrics;
pub use split::stratified_split;

/// Why a model could not be trained or an artifact cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("no training rows: a model needs customers with known outcomes")]
    Empty,
    #[error("{rows} feature rows but {labels} labels; every row needs exactly one label")]
    LengthMismatch { rows: usize, labels: usize },
    #[error(
        "all {rows} training rows have churn = {class}; a model needs both churners and \
         stayers (widen the date range or check how churn is recorded)"
    )]
    OneClass { class: bool, rows: usize },
    #[error("feature {feature:?} is not a finite number in row {row}")]
    NonFinite { feature: String, row: usize },
    #[error(
        "no usable features: every feature was constant, had a single category or was \
         never known in the training rows (dropped: {dropped:?})"
    )]
    NoFeatures { dropped: Vec<String> },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error(
        "the solver did not converge within {iterations} iterations (largest gradient \
         component {gradient_norm:.3e} per row); try a larger max_iterations, a larger \
         alpha (stronger regularisation), or removing features that duplicate each other \
         or on their own separate churners from stayers"
    )]
    NotConverged { iterations: u64, gradient_norm: f64 },
    #[error("solver failed: {0}")]
    Solver(String),
    #[error("invalid model artifact: {0}")]
    InvalidArtifact(String),
}
