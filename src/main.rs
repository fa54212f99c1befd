use std::process::ExitCode;

use clap::Parser;

/// glibc's allocator spends a third of planning's time on the many small allocations of
/// row decoding; mimalloc keeps per-thread free lists (see BENCHMARKS.md, planning).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    attune::store::configure_process();
    let cli = attune::cli::Cli::parse();
    match attune::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
