//! What a group does with an applied entry beyond making it readable.
//!
//! A partition group's entries are the data: applying one only moves the
//! high watermark. The metadata group (`crate::meta`) runs on the same
//! machinery, but its entries are commands whose effect is state kept in
//! memory; an [`AppliedHook`] is where that state is changed.

use crate::types::{AppliedAnswer, LogId};
use bytes::Bytes;
use std::io;

/// Called by [`PartitionStateMachine`](super::PartitionStateMachine) for
/// every applied normal entry (not for blank or membership entries), in log
/// order, before the entry's proposer is answered.
///
/// Every replica calls it with the same entries in the same order, and
/// again from the first entry after a restart (a group with a hook keeps no
/// snapshot, so its state is rebuilt by replay): what it does must depend
/// on the entries alone — no clock, no randomness, no local state.
pub trait AppliedHook: Send + Sync + 'static {
    /// `batch` is the entry as stored (its `baseOffset` and
    /// `partitionLeaderEpoch` written by the log). The answer, if any,
    /// travels to the proposer in `BatchPlaced::answer`.
    ///
    /// An error stops the group: openraft takes it as a storage failure.
    /// It is for an entry this replica cannot apply (one it cannot decode);
    /// skipping the entry instead would leave this replica's state
    /// different from the others'. A command the state refuses is not an
    /// error but an answer: every replica refuses it alike.
    fn applied(&self, log_id: &LogId, batch: &Bytes) -> io::Result<Option<AppliedAnswer>>;

    /// Whether the hook keeps state built from the entries (the metadata
    /// group's). Such a group keeps no snapshot, so the state is rebuilt by
    /// replaying every entry. A hook that only reacts to entries (waking
    /// readers) answers `false`: its group snapshots, purges and installs
    /// snapshots as one without a hook, and the hook misses the entries a
    /// snapshot covers.
    fn keeps_state(&self) -> bool {
        true
    }
}
