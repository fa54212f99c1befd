//! `attune bench`: reproducible measurements for BENCHMARKS.md, printed as JSON beside the
//! anchors they are compared with (`../shared/bench/sklearn_baseline.py`).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fit a logistic regression on synthetic N x D standard-normal rows (the same
    /// distribution as `sklearn_baseline.py synthetic`) and print AUC and fit time.
    Fit {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 45)]
        features: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `fast` (attune's trainer) or `linfa` (linfa-logistic as it is).
        #[arg(long, default_value = "fast")]
        solver: String,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fit { .. } => anyhow::bail!("attune bench fit is not built yet"),
    }
}
