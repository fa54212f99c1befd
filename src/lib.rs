//! attune: a background worker that scores churn risk and queues early-relationship nudges.
//!
//! See `ARCHITECTURE.md` for the map of modules and the flow of data through them.

// The OpenAPI document in `http::openapi` is one large `json!` literal.
#![recursion_limit = "256"]

pub use attune_core::{delivery, domain, features, ingest, model, playbook, report};

pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod store;
pub mod telemetry;
