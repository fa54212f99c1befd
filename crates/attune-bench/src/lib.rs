//! `attune-bench`: the measurements BENCHMARKS.md quotes, the seeders they need and an
//! HTTP load generator. A separate package from the `attune` daemon, so that nothing here
//! (nor a dependency only this uses, such as the HTTP client) ships in the product.
//!
//! The library holds each measurement; `main.rs` is the command line.

pub mod fit;
pub mod ingest;
pub mod load;
pub mod planning;
pub mod playbook;
pub mod receiver;
pub mod smtp;
pub mod uplift;

/// The configured database, migrated: the one `attune` opens.
pub use attune::cli::open;
