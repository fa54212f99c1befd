//! `attune models`: the registry for data teams.

use std::path::PathBuf;

use clap::Subcommand;

use super::output::Printer;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every registered model, newest first, with its metrics; the champion is marked.
    List,
    /// One model in full.
    Show { version: String },
    /// Make VERSION the champion.
    Promote {
        version: String,
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Restore the previous champion.
    Rollback {
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Write an HTML report (SVG plots) for VERSION; `--json` prints the numbers instead.
    Report {
        version: String,
        /// Where to write the HTML; default models/VERSION.html.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(_config: &Config, _cmd: ModelsCommand, _out: &Printer) -> anyhow::Result<()> {
    anyhow::bail!("attune models is not built yet")
}
