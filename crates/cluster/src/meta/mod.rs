//! The cluster's metadata group (docs/cluster.md, "Shape"): one Raft group
//! with every node a voter, on the same machinery as a partition group (a
//! [`PartitionStateMachine`](crate::partition::PartitionStateMachine) over
//! an entry-mode log, the same wire and transport). Its entries are
//! [`MetaCommand`]s, one per record batch; what differs is applying them:
//! [`MetaHook`], the group's [`AppliedHook`](crate::partition::AppliedHook),
//! applies each to the node's [`ClusterState`] and answers the proposer
//! with a [`MetaAnswer`].
//!
//! - `command`: the commands and their stored form;
//! - `state`: [`ClusterState`] and its deterministic `apply`;
//! - `placement`: [`place_replicas`], where a new topic's partitions go;
//! - `hook`: [`MetaHook`];
//! - `incarnation`: a node's incarnation, made with its data directory.
//!
//! The group keeps no snapshot and never purges its log: the state is
//! rebuilt at every start by replaying the log from its first entry.

mod command;
mod hook;
pub mod incarnation;
mod placement;
mod state;
#[cfg(test)]
mod tests;

pub use command::{CommandError, MetaCommand, COMMAND_BYTES_MAX, COMMAND_RECORDS};
pub use hook::{MetaAnswer, MetaHook};
pub use placement::place_replicas;
pub use state::{
    ClusterState, MetaApplied, MetaEffect, MetaRefusal, NodeInfo, TopicInfo, PRODUCER_ID_BLOCK_MAX,
    PRODUCER_ID_END,
};

use crate::groups::PartitionGroup;
use crate::types::{BatchData, BatchPlaced, PartitionRaft};
use openraft::error::{ClientWriteError, RaftError};

/// Why a proposed command has no outcome, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Committed and refused, alike on every node: the state is unchanged.
    #[error("refused: {0}")]
    Refused(MetaRefusal),
    /// Not proposed: the command does not encode.
    #[error("command not encoded: {0}")]
    Encode(#[from] CommandError),
    /// openraft's answer: not the leader (it names the leader when known),
    /// or the outcome is unknown (the entry may still commit: proposals of
    /// commands that are not idempotent are checked against the state).
    #[error(transparent)]
    Raft(Box<RaftError<PartitionRaft, ClientWriteError<PartitionRaft>>>),
    /// Applied, but with no answer: the group has no [`MetaHook`].
    #[error("the entry was applied without a metadata answer (not the metadata group?)")]
    NoAnswer,
}

/// The metadata answer an applied entry carries, if it is one.
pub fn answer_of(placed: &BatchPlaced) -> Option<&MetaAnswer> {
    placed.answer.as_ref()?.downcast_ref::<MetaAnswer>()
}

/// Proposes `command` to the metadata group through `raft` (the leader's)
/// and waits until it is applied here: what applying it did, or why every
/// node refused it. `now_ms` only timestamps the stored record.
pub async fn propose(
    raft: &PartitionGroup,
    command: &MetaCommand,
    now_ms: i64,
) -> Result<MetaApplied, ProposeError> {
    let batch = command.to_batch(now_ms)?;
    let written = raft
        .client_write(BatchData(batch.into()))
        .await
        .map_err(|e| ProposeError::Raft(Box::new(e)))?;
    match answer_of(&written.data) {
        Some(Ok(applied)) => Ok(applied.clone()),
        Some(Err(refusal)) => Err(ProposeError::Refused(refusal.clone())),
        None => Err(ProposeError::NoAnswer),
    }
}
