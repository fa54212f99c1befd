//! Logging: human-readable by default, JSON with `--log-format json` (or `[log] format`).
//! Logs go to stderr so that `--json` output on stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

pub fn init(format: crate::config::LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if format == crate::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
