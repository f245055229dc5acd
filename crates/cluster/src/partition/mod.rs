//! A partition's Raft group on Spool's own log: the log store
//! ([`PartitionLogStore`], openraft's `RaftLogStorage` over an entry-mode
//! [`spool_log::Log`]) and the state machine ([`PartitionStateMachine`]:
//! what is committed becomes readable; an optional [`AppliedHook`] sees each
//! applied entry, which is how the metadata group runs on the same parts).

mod entries;
mod hook;
mod log_store;
mod retention;
mod state_machine;

pub use hook::AppliedHook;
pub use log_store::{PartitionLogReader, PartitionLogStore};
pub use retention::{
    retention_loop, Mark, RetentionMark, RetentionPass, RetentionStep, RETENTION_CHECK_MS,
};
pub use state_machine::PartitionStateMachine;
