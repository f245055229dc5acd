//! openraft's log storage over an entry-mode [`Log`].
//!
//! - `append` writes the batches into the page cache under the log's lock
//!   and returns (so they are readable, as openraft requires); the flush
//!   callback runs after the fdatasync that covers them, made by the
//!   broker's shared [`Syncer`] threads — appends of many groups and
//!   rounds share fdatasyncs. Under `interval`/`never` durability the
//!   callback runs at once (docs/cluster.md: what an acknowledgement
//!   promises then).
//! - The vote and the purge point are in [`RaftFiles`], fdatasync'd.

use super::entries;
use super::RetentionMark;
use crate::raft_files::RaftFiles;
use crate::types::{
    log_entry_index, log_id, raft_index, Entry, LogId, PartitionRaft, Vote, REPLICATION_BYTES_MAX,
};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use spool_log::{Log, Syncer};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries read per call when openraft asks for "every entry in a range"
/// (the loop goes on until the range is done).
const READ_CHUNK_ENTRIES: usize = 1024;
fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads of one group's log; a clone sees everything appended later.
#[derive(Clone)]
pub struct PartitionLogReader {
    log: Arc<Log>,
    files: Arc<Mutex<RaftFiles>>,
}

/// The log storage of one partition group.
pub struct PartitionLogStore {
    reader: PartitionLogReader,
    syncer: Arc<Syncer>,
    now_ms: fn() -> i64,
    /// With retention ([`super::RetentionPass`]): purges delete segments
    /// only up to its mark. Without: up to what openraft purges.
    retention: Option<RetentionMark>,
}

impl PartitionLogStore {
    /// `log` must be open in entry mode; `files` in the same directory.
    pub fn new(
        log: Arc<Log>,
        files: RaftFiles,
        syncer: Arc<Syncer>,
        now_ms: fn() -> i64,
    ) -> PartitionLogStore {
        PartitionLogStore {
            reader: PartitionLogReader {
                log,
                files: Arc::new(Mutex::new(files)),
            },
            syncer,
            now_ms,
            retention: None,
        }
    }

    /// Purges delete segments only as far as `mark` allows: openraft
    /// purges after every snapshot it builds or installs, but what
    /// consumers can still read is retention's to decide.
    pub fn with_retention(mut self, mark: RetentionMark) -> PartitionLogStore {
        self.retention = Some(mark);
        self
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.reader.log
    }
}

impl PartitionLogReader {
    fn files(&self) -> MutexGuard<'_, RaftFiles> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last entry's log id, if the log holds any.
    fn last_log_id(&self) -> Option<LogId> {
        let bounds = self.log.entry_bounds().ok()?;
        bounds
            .last
            .map(|last| log_id(last.term, raft_index(last.index)))
    }

    /// Entries `[start, end)` by raft index, at most about `max_bytes`
    /// (always at least one when the range holds one). Entries below the
    /// log's first (purged) are skipped, as openraft allows.
    fn read_range(&self, start: u64, end: u64, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let bounds = self.log.entry_bounds().map_err(io_error)?;
        let Some(last_entry) = bounds.last else {
            return Ok(Vec::new());
        };
        // Purging is lazy (whole segments go); what is purged is never read.
        let after_purge = self
            .files()
            .purged()
            .map_or(0, |p| log_entry_index(p.index()) + 1);
        let mut next = log_entry_index(start)
            .max(bounds.first_index)
            .max(after_purge);
        let end = log_entry_index(end).min(last_entry.index + 1);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while next < end && (out.is_empty() || bytes < max_bytes) {
            let want = ((end - next) as usize).min(READ_CHUNK_ENTRIES);
            let stored = self
                .log
                .read_entries(next, want, max_bytes.saturating_sub(bytes).max(1))
                .map_err(io_error)?;
            if stored.is_empty() {
                return Err(io_error(format!("entry {next} missing from the log")));
            }
            for entry in stored {
                if entry.index >= end {
                    break;
                }
                if entry.index != next {
                    return Err(io_error(format!(
                        "log returned entry {} where {next} was expected",
                        entry.index
                    )));
                }
                bytes += entry.batch.len();
                next += 1;
                out.push(entries::decode(entry)?);
            }
        }
        Ok(out)
    }
}

fn range_to_indexes<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX - 1,
    };
    (start, end)
}

impl RaftLogReader<PartitionRaft> for PartitionLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_indexes(&range);
        self.read_range(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.files().vote())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_range(start, end, REPLICATION_BYTES_MAX)
    }
}

impl PartitionLogStore {
    /// A log that stores no entry starts at whichever index openraft
    /// appends first (openraft's storage suite appends to a fresh store
    /// from index 1; in a cluster an empty log's next index is already the
    /// one after its purge point).
    fn start_empty_log_at(&self, index: u64) -> io::Result<()> {
        let log = &self.reader.log;
        let bounds = log.entry_bounds().map_err(io_error)?;
        if bounds.last.is_none() && bounds.first_index != index {
            log.reset_entries(index, log.stats().next_offset)
                .map_err(io_error)?;
        }
        Ok(())
    }
}

impl RaftLogStorage<PartitionRaft> for PartitionLogStore {
    type LogReader = PartitionLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<PartitionRaft>, io::Error> {
        let purged = self.reader.files().purged();
        let last = self.reader.last_log_id().or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.reader.files().save_vote(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.reader.files().save_committed(committed.as_ref())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let saved = self.reader.files().read_committed()?;
        let Some(saved) = saved else { return Ok(None) };
        // Saved without an fdatasync: never beyond what this log holds
        // (see `RaftFiles::read_committed`).
        let Some(last) = self.reader.last_log_id() else {
            return Ok(None);
        };
        if saved.index() <= last.index() {
            return Ok(Some(saved));
        }
        Ok(Some(last))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<PartitionRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = &self.reader.log;
        let now_ms = (self.now_ms)();
        // (next offset, must sync) after the last entry written.
        let mut written_to = None;
        for entry in entries {
            self.start_empty_log_at(log_entry_index(entry.log_id.index()))?;
            let term = crate::types::term_of(&entry.log_id);
            let batch = entries::encode(&entry)?;
            let appended = log.write_entry(&batch, term, now_ms).map_err(io_error)?;
            if appended.index != log_entry_index(entry.log_id.index()) {
                return Err(io_error(format!(
                    "raft entry {} stored as log entry {}: the log and Raft disagree",
                    entry.log_id.index(),
                    appended.index
                )));
            }
            written_to = Some((appended.next_offset, appended.must_sync));
        }
        match written_to {
            Some((next_offset, true)) => {
                let done = Box::new(move |result: Result<(), spool_log::LogError>| {
                    callback.io_completed(result.map_err(io_error));
                });
                self.syncer.sync(log, next_offset, done);
            }
            // Nothing written, or a topic whose durability does not ask
            // for an fdatasync before the answer (docs/cluster.md).
            _ => callback.io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = match last_log_id {
            Some(id) => log_entry_index(id.index()) + 1,
            None => 0,
        };
        let bounds = self.reader.log.entry_bounds().map_err(io_error)?;
        match bounds.last {
            Some(last) if from <= last.index => self
                .reader
                .log
                .truncate_entries_from(from.max(bounds.first_index))
                .map_err(io_error),
            _ => Ok(()),
        }
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        // Recorded first: openraft never reads a purged entry again, so the
        // segments may go later (or, under retention, stay until it says).
        self.reader.files().save_purged(&upto)?;
        let log = &self.reader.log;
        let upto_entry = log_entry_index(upto.index());
        let bounds = log.entry_bounds().map_err(io_error)?;
        if upto_entry < bounds.first_index {
            return Ok(()); // already gone (a snapshot's install reset the log)
        }
        match bounds.last {
            Some(last) if upto_entry < last.index => {
                let deletable = match &self.retention {
                    None => Some(upto_entry),
                    Some(mark) => mark
                        .get()
                        .map(|m| upto_entry.min(log_entry_index(m.last.index()))),
                };
                match deletable {
                    Some(entry) => log.purge_entries_to(entry).map_err(io_error),
                    None => Ok(()),
                }
            }
            // Everything stored, or past the end (a snapshot was
            // installed): the log starts over after it, at its current
            // next offset.
            _ => log
                .reset_entries(upto_entry + 1, log.stats().next_offset)
                .map_err(io_error),
        }
    }
}
