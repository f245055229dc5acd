//! [`Log`]: one partition's ordered sequence of segments, with group commit.
//!
//! The log's state and its small accessors live here; its work is split by
//! concern into submodules, each adding methods to [`Log`]:
//! - `recovery`: [`Log::open`], which repairs what a crash left behind;
//! - `write`: the one write path ([`Log::write`], [`Log::sync_to`] and what
//!   is built on them), segment rolls;
//! - `read`: reads by offset or timestamp, locating batches in a segment;
//! - `retention`: the low-water mark, retention, suffix truncation;
//! - `entries` (entry mode): writing, reading and locating entries;
//!   `entry_cuts`: removing entries at either end, starting over.

mod entries;
mod entry_cuts;
mod read;
mod recovery;
mod retention;
mod write;

pub use entries::{EntryAppended, EntryBounds, EntryId, StoredEntry};
pub use read::ReadBatches;
pub use recovery::RecoveryReport;
pub use retention::RetentionCut;

use crate::config::{Durability, LogConfig};
use crate::file_header::FILE_HEADER_BYTES;
use crate::scan::Accept;
use crate::segment::{Files, Segment};
use crate::LogError;
use entries::EntryState;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Offsets assigned to one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
}

impl Appended {
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// A snapshot of a log's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub start_offset: i64,
    /// The offset the next append receives.
    pub next_offset: i64,
    /// Offsets below this are fdatasync'd.
    pub durable_offset: i64,
    /// Offsets below this are visible to readers.
    pub end_offset: i64,
    pub size_bytes: u64,
    /// Bytes of the batches from the one holding the start offset to the end:
    /// the size of what is still retained, without file headers.
    pub retained_bytes: u64,
    pub segments: usize,
}

struct Inner {
    config: LogConfig,
    /// Where segments open their files (the log's number, the cache of
    /// sealed segments' files).
    files: Files,
    /// Ordered by base offset; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    start_offset: i64,
    /// Position in the first segment of the batch that holds `start_offset`.
    start_position: u64,
    /// Every offset below this is fdatasync'd.
    durable_offset: i64,
    /// Size of the active segment the last fdatasync covered (kept with
    /// `durable_offset` by `synced_through`): with the segment's size now,
    /// the bytes a sync would carry.
    synced_position: u64,
    /// A [`Log::sync_to`] leader is inside fdatasync.
    syncing: bool,
    last_sync_ms: i64,
    /// Set after a write or sync failure that leaves the file state unknown.
    failed: Option<String>,
    /// What a log in entry mode knows besides its segments (`None`: plain).
    entries: Option<EntryState>,
}

impl Inner {
    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }
    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
    /// The offset after the last batch in the file (and accounted in the
    /// active segment): the offset the next batch receives. Readers never
    /// go past it.
    fn written_offset(&self) -> i64 {
        self.active().next_offset
    }
    fn end_offset(&self) -> i64 {
        let end = match self.config.durability {
            // Readers never see what a power loss could take back.
            Durability::Always => self.durable_offset,
            _ => self.written_offset(),
        };
        match &self.entries {
            // Nor, in entry mode, what a leader change could take back.
            // Whatever lies below the start offset was committed (only
            // committed entries are purged), whatever the cap says.
            Some(state) => end.min(state.committed_end.max(self.start_offset)),
            None => end,
        }
    }
    /// Which batches the segments may hold.
    fn accept(&self) -> Accept {
        // From the configuration, fixed at open: recovery reads before the
        // entry state exists.
        if self.config.entry_mode {
            Accept::DataAndControl
        } else {
            Accept::DataOnly
        }
    }
    /// Whether a batch of `incoming` bytes must go to a new segment.
    fn roll_due(&self, incoming: u64, now_ms: i64) -> bool {
        let active = self.active();
        // A segment that covers no offsets (empty, or in entry mode holding
        // only control entries) is never rolled: its successor would get
        // the same base offset, and so the same file name.
        if active.size == FILE_HEADER_BYTES as u64 || active.next_offset == active.base_offset {
            return false;
        }
        let too_big = active.size + incoming > self.config.segment_bytes;
        let too_old = match (self.config.segment_ms, active.first_append_ms) {
            (Some(limit), Some(first)) => now_ms - first >= limit as i64,
            _ => false,
        };
        too_big || too_old
    }
    /// An fdatasync of the active segment up to `position` (its size then)
    /// covered every offset below `offset` and, in entry mode, every entry
    /// below `next_index`.
    fn synced_through(&mut self, offset: i64, position: u64, next_index: Option<u64>) {
        self.durable_offset = self.durable_offset.max(offset);
        self.synced_position = position;
        if let (Some(state), Some(next_index)) = (&mut self.entries, next_index) {
            state.synced_below(next_index);
        }
    }
    /// Whether every batch that [`Log::sync_to`]`(next_offset)` covers is
    /// durable: every offset below `next_offset` (up to the written end)
    /// and, in entry mode, every control entry at or below it, which
    /// advanced no offset.
    fn durable_to(&self, next_offset: i64) -> bool {
        let next_offset = next_offset.min(self.written_offset());
        self.durable_offset >= next_offset
            && self
                .entries
                .as_ref()
                .is_none_or(|state| state.controls_durable_to(next_offset))
    }
    fn check_failed(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(why) => Err(LogError::Failed(why.clone())),
            None => Ok(()),
        }
    }
    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    fn retained_bytes(&self) -> u64 {
        let headers = (self.segments.len() * FILE_HEADER_BYTES) as u64;
        let skipped = self.start_position.saturating_sub(FILE_HEADER_BYTES as u64);
        self.size_bytes().saturating_sub(headers + skipped)
    }
}

/// An append-only, segmented, durable log of record batches: one partition.
///
/// All methods take `&self`; share a `Log` between threads with `Arc`.
/// Writes are serialised by an internal lock; fdatasyncs and reads run
/// without it (reads copy what they need under the lock first).
pub struct Log {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Signalled when a [`Log::sync_to`] fdatasync finishes.
    synced: Condvar,
    #[cfg(test)]
    hooks: tests::Hooks,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish()
    }
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the data on disk is
        // still recoverable, so carry on with the inner state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// Changes settings of an open log (durability, rolling, retention).
    /// Its mode (`entry_mode`) cannot change.
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        let mut inner = self.lock();
        if config.entry_mode != inner.config.entry_mode {
            return Err(LogError::InvalidConfig(
                "entry_mode is fixed when a log is opened".into(),
            ));
        }
        inner.config = config;
        Ok(())
    }

    /// Descriptors the log holds open between calls: its active segment's
    /// ([`crate::SEGMENT_FILES`]); sealed segments' files are in the
    /// [`crate::SealedFileCache`] while they are read.
    pub fn open_files(&self) -> usize {
        self.lock().segments.iter().map(Segment::open_files).sum()
    }

    /// Why the log stopped taking writes (a failed fdatasync or a write
    /// left in doubt), if it did: only a reopen, with its recovery, brings
    /// it back. (A full disk does not stop it: that write was cut back.)
    pub fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    pub fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            start_offset: inner.start_offset,
            next_offset: inner.written_offset(),
            durable_offset: inner.durable_offset,
            end_offset: inner.end_offset(),
            size_bytes: inner.size_bytes(),
            retained_bytes: inner.retained_bytes(),
            segments: inner.segments.len(),
        }
    }
}

#[cfg(test)]
mod tests;
