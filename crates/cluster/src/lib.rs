//! Replication for Spool: openraft groups whose Raft logs are Spool's own
//! segment logs (`spool-log` in entry mode). See `docs/cluster.md`.
//!
//! Layering: this crate depends on the log and the batch codec; the broker
//! and the front ends know nothing of it beyond the boundary the server
//! plugs it in at.

/// The consensus library, for callers that read its metrics.
pub use openraft;

pub mod groups;
pub mod liveness;
pub mod meta;
pub mod node;
pub mod partition;
pub mod producers;
pub mod proposer;
pub mod raft_files;
pub mod rejoin;
pub mod transport;
pub mod types;
pub mod wire;
