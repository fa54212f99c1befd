//! attune's pure logic: what a customer, an event and a complaint are (`domain`), reading
//! customer and event files (`ingest`), features as of a day (`features`), the churn model
//! (`model`), the playbook's rules (`playbook`), the model report (`report`) and the
//! synthetic business the demo runs on (`synth`).
//!
//! Nothing here opens a database, a socket or a runtime: the compiler keeps it so (this
//! crate depends on none of them), and every function is tested on values. The `attune`
//! crate re-exports these modules under the same names and adds the I/O around them.

pub mod delivery;
pub mod domain;
pub mod features;
pub mod ingest;
pub mod model;
pub mod playbook;
pub mod report;
pub mod synth;
