//! A partition's Raft group on Spool's own log: the log store
//! ([`PartitionLogStore`], openraft's `RaftLogStorage` over an entry-mode
//! [`spool_log::Log`]) and the state machine ([`PartitionStateMachine`]:
//! what is committed becomes readable).

mod entries;
mod log_store;
mod state_machine;

pub use log_store::{PartitionLogReader, PartitionLogStore};
pub use state_machine::PartitionStateMachine;
