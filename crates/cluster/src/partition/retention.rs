//! Retention of a replicated partition. Its log is its Raft log, so the
//! log may not drop segments behind openraft's back: a replica that lags
//! would then be sent entries that are gone. Instead each replica, by its
//! own copy of the topic's limits, runs [`RetentionPass`] on a timer:
//!
//! 1. The log names its cut ([`Log::retention_cut`]): the last entry of the
//!    whole sealed segments past the size or age limit.
//! 2. Once that entry is applied, the replica's snapshot is made *at the
//!    cut* (the [`RetentionMark`] tells the state machine where): the state
//!    after the cut's last entry, i.e. the offset after it.
//! 3. openraft then purges up to the snapshot (`max_in_snapshot_log_to_keep`
//!    is 0 for partition groups), and the log store deletes the segments,
//!    never past the mark.
//!
//! A replica that needs an entry its leader purged receives that snapshot:
//! its log starts over after the cut, and every entry the leader still
//! stores follows by ordinary replication, batch bytes as stored. So a
//! replica that fell behind retention ends with exactly the records its
//! leader retains, from the same start offset.

use crate::groups::{Groups, PartitionGroup};
use crate::types::{log_entry_index, log_id, raft_index, LogId};
use openraft::async_runtime::WatchReceiver;
use spool_log::Log;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a snapshot for retention is to be made, and how far the log store
/// may delete segments. Shared by the pass (which sets it), the state
/// machine and the log store.
#[derive(Debug, Clone, Default)]
pub struct RetentionMark(Arc<Mutex<Option<Mark>>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The last entry retention lets go.
    pub last: LogId,
    /// The first offset kept after it.
    pub next_offset: i64,
}

impl RetentionMark {
    pub fn get(&self) -> Option<Mark> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, mark: Mark) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(mark);
    }
}

/// One partition replica's retention: its log and its mark.
#[derive(Clone)]
pub struct RetentionPass {
    pub log: Arc<Log>,
    pub mark: RetentionMark,
}

/// What one pass did (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionStep {
    /// Nothing past the limits, or already purged.
    Nothing,
    /// The cut's last entry is not applied yet.
    Waiting,
    /// Asked openraft for a snapshot at the cut.
    Snapshot,
    /// Asked openraft to purge up to the snapshot.
    Purge,
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RetentionPass {
    /// One step towards the log's retention cut now.
    pub async fn run(&self, raft: &PartitionGroup, now_ms: i64) -> io::Result<RetentionStep> {
        let Some(cut) = self.log.retention_cut(now_ms).map_err(io_error)? else {
            return Ok(RetentionStep::Nothing);
        };
        let (applied, snapshot, purged) = {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            (m.last_applied, m.snapshot, m.purged)
        };
        let entry_of = |id: Option<LogId>| id.map(|id| log_entry_index(id.index()));
        if entry_of(purged) >= Some(cut.last_entry) {
            return Ok(RetentionStep::Nothing);
        }
        if entry_of(applied) < Some(cut.last_entry) {
            return Ok(RetentionStep::Waiting);
        }
        let term = self
            .log
            .entry_term(cut.last_entry)
            .map_err(io_error)?
            .ok_or_else(|| io_error(format!("entry {} is not stored", cut.last_entry)))?;
        let last = log_id(term, raft_index(cut.last_entry));
        self.mark.set(Mark {
            last,
            next_offset: cut.next_offset,
        });
        if entry_of(snapshot) < Some(cut.last_entry) {
            raft.trigger().snapshot().await.map_err(io_error)?;
            Ok(RetentionStep::Snapshot)
        } else {
            raft.trigger()
                .purge_log(last.index())
                .await
                .map_err(io_error)?;
            Ok(RetentionStep::Purge)
        }
    }
}

/// How often each hosted partition's retention is looked at (the broker's
/// housekeeping tick does the same for single-node topics).
pub const RETENTION_CHECK_MS: u64 = 1_000;

/// Runs every hosted replica's retention step every
/// [`RETENTION_CHECK_MS`], until aborted.
pub async fn retention_loop(groups: Arc<Groups>, now_ms: fn() -> i64) {
    let mut tick = tokio::time::interval(Duration::from_millis(RETENTION_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Groups stopped on a storage error (a full disk) are left out:
        // liveness reports them, and retrying would only log each tick.
        for (group, raft, pass) in groups.retention_passes() {
            match pass.run(&raft, now_ms()).await {
                Ok(RetentionStep::Nothing | RetentionStep::Waiting) => {}
                Ok(step) => tracing::debug!(?group, ?step, "retention"),
                Err(e) => tracing::warn!(?group, error = %e, "retention step failed"),
            }
        }
    }
}
