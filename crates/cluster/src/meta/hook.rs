//! The metadata group's apply hook: each applied entry is a command,
//! applied to the node's [`ClusterState`].

use super::{ClusterState, MetaApplied, MetaCommand, MetaRefusal};
use crate::partition::AppliedHook;
use crate::types::{AppliedAnswer, LogId};
use bytes::Bytes;
use std::io;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::watch;

/// What the metadata group answers the proposer of a command: the
/// `BatchPlaced::answer` of its entry holds one.
pub type MetaAnswer = Result<MetaApplied, MetaRefusal>;

/// Applies the metadata group's entries to a shared [`ClusterState`] and
/// announces each new version.
///
/// The state is behind a std `RwLock`: every access is a short, synchronous
/// look or change, never held across an `.await`.
pub struct MetaHook {
    state: Arc<RwLock<ClusterState>>,
    /// The Raft index of the last entry applied, so that a hook given to a
    /// restarted Raft (which replays its log from the start) skips what it
    /// has applied already instead of applying it twice.
    applied_index: Mutex<Option<u64>>,
    versions: watch::Sender<u64>,
}

impl Default for MetaHook {
    fn default() -> MetaHook {
        MetaHook::new()
    }
}

impl MetaHook {
    /// A hook with an empty state, as at a node's start: the group's log
    /// replay rebuilds it.
    pub fn new() -> MetaHook {
        MetaHook {
            state: Arc::new(RwLock::new(ClusterState::default())),
            applied_index: Mutex::new(None),
            versions: watch::Sender::new(0),
        }
    }

    /// The shared state, to keep and read (never to change: only the
    /// group's log does).
    pub fn state(&self) -> Arc<RwLock<ClusterState>> {
        self.state.clone()
    }

    /// A read of the state now. Do not hold it across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The state's version, each time a command changes it: the server
    /// watches this to act on what changed (create the partition groups
    /// of a new topic placed on it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// The Raft index of the last entry this hook applied.
    pub fn applied_index(&self) -> Option<u64> {
        *self.applied_index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AppliedHook for MetaHook {
    fn applied(&self, log_id: &LogId, batch: &Bytes) -> io::Result<Option<AppliedAnswer>> {
        let mut applied_index = self.applied_index.lock().unwrap_or_else(|p| p.into_inner());
        if applied_index.is_some_and(|done| log_id.index() <= done) {
            return Ok(None);
        }
        // An entry that is not a command stops the group (see
        // `AppliedHook::applied`): skipped here and applied elsewhere, it
        // would split the nodes' states.
        let command = MetaCommand::from_batch(batch)
            .map_err(|e| io::Error::other(format!("metadata entry {}: {e}", log_id.index())))?;
        let answer = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.apply(&command)
        };
        *applied_index = Some(log_id.index());
        if let Ok(applied) = &answer {
            self.versions.send_replace(applied.version);
        }
        Ok(Some(AppliedAnswer::new(answer)))
    }
}
