//! attune: a background worker that scores churn risk and queues early-relationship nudges.
//!
//! See `ARCHITECTURE.md` for the map of modules and the flow of data through them.

// The OpenAPI document in `http::openapi` is one large `json!` literal.
#![recursion_limit = "256"]

pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod features;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod playbook;
pub mod report;
pub mod store;
pub mod telemetry;
