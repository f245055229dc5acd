//! Entry mode: removing entries at either end of the log, and starting it
//! over. A Raft log removes a conflicting suffix
//! ([`Log::truncate_entries_from`]), drops a prefix a snapshot covers
//! ([`Log::purge_entries_to`]) and, on a replica that installs a snapshot,
//! starts over empty ([`Log::reset_entries`]).

use super::entries::EntryState;
use super::{Inner, Log};
use crate::file_header::FILE_HEADER_BYTES;
use crate::segment::Segment;
use crate::{fsutil, start_entry, start_offset, LogError};

impl Log {
    /// Removes entries `index..` (a Raft log's conflicting suffix) and
    /// their offsets: later writes get those indexes and offsets again.
    /// Nothing to do past the last entry. Refuses ([`LogError::BelowCommitted`])
    /// to remove an entry that starts below the committed end: committed
    /// entries never change, so asking is a bug in the caller. Durable when
    /// it returns; syncs in flight finish first, as for
    /// [`Log::truncate_suffix`].
    pub fn truncate_entries_from(&self, index: u64) -> Result<(), LogError> {
        let mut inner = self.lock_between_syncs();
        inner.check_failed()?;
        let bounds = inner.entry_bounds("truncate_entries_from")?;
        if index >= bounds.next_index() {
            return Ok(());
        }
        if index < bounds.first_index {
            return Err(LogError::EntryOutOfRange {
                requested: index,
                first: bounds.first_index,
                last: bounds.last.map(|l| l.index),
            });
        }
        let found = inner.locate_entry(index)?;
        let committed_end = inner
            .entry_state_mut("truncate_entries_from")?
            .committed_end;
        let offset = found.header.base_offset;
        if offset < committed_end {
            return Err(LogError::BelowCommitted {
                index,
                offset,
                committed_end,
            });
        }
        self.cut_at(&mut inner, found.segment, found.position, offset)
    }

    /// Entries up to `index` may be dropped: deletes the whole sealed
    /// segments whose entries are all at or below it, recording the new
    /// first entry and start offset first. Never the active segment: its
    /// entries stay, as do those of any segment that also holds later
    /// ones. (After a truncation to the first entry of a segment the active
    /// segment holds none; purging past the last entry then leaves the log
    /// holding none, its first index the next one.) Durable when it returns.
    pub fn purge_entries_to(&self, index: u64) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner.check_failed()?;
        inner.entry_bounds("purge_entries_to")?;
        let sealed = inner.segments.len() - 1;
        let doomed = inner.segments[..sealed]
            .iter()
            .take_while(|s| {
                s.entries
                    .as_ref()
                    .is_some_and(|e| e.next_index() <= index.saturating_add(1))
            })
            .count();
        if doomed == 0 {
            return Ok(());
        }
        let new_start = inner.segments[doomed].base_offset.max(inner.start_offset);
        if new_start > inner.start_offset {
            start_offset::write(&self.dir, new_start)?;
            inner.start_offset = new_start;
        }
        self.delete_first_segments(&mut inner, doomed)?;
        inner.locate_start()
    }

    /// Starts the log over, empty: the next entry gets `next_index` and the
    /// next record `next_offset` (a replica that installed a snapshot
    /// covering everything before them). Records both (`start-entry`,
    /// `start-offset`) before it deletes every segment, so that a crash part
    /// way leaves either the old log's later segments or the new empty log,
    /// and creates a fresh segment. The commit cap becomes `next_offset`.
    /// A failure part way stops the log until it is reopened.
    pub fn reset_entries(&self, next_index: u64, next_offset: i64) -> Result<(), LogError> {
        if next_index < start_entry::FIRST_ENTRY_INDEX || next_index > i64::MAX as u64 {
            return Err(LogError::EntryOutOfRange {
                requested: next_index,
                first: start_entry::FIRST_ENTRY_INDEX,
                last: Some(i64::MAX as u64),
            });
        }
        if next_offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: next_offset,
                start: 0,
                end: i64::MAX,
            });
        }
        let mut inner = self.lock_between_syncs();
        inner.check_failed()?;
        inner.entry_bounds("reset_entries")?;
        if let Err(e) = self.start_over(&mut inner, next_index, next_offset) {
            inner.failed = Some(format!("reset_entries failed part way: {e}"));
            return Err(e);
        }
        Ok(())
    }

    fn start_over(
        &self,
        inner: &mut Inner,
        next_index: u64,
        next_offset: i64,
    ) -> Result<(), LogError> {
        start_entry::write(&self.dir, next_index)?;
        start_offset::write(&self.dir, next_offset)?;
        // Oldest first: a crash part way leaves a log whose first segments
        // are gone, which recovery opens like a purged one.
        for seg in &inner.segments {
            seg.delete_files(&self.dir)?;
        }
        let fresh = Segment::create(&self.dir, next_offset, Some(next_index), &inner.files)?;
        fsutil::sync_dir(&self.dir)?;
        // The old segments go (their cached files with them).
        inner.segments = vec![fresh];
        inner.start_offset = next_offset;
        inner.start_position = FILE_HEADER_BYTES as u64;
        inner.durable_offset = next_offset;
        inner.synced_position = FILE_HEADER_BYTES as u64;
        inner.entries = Some(EntryState::new(next_offset));
        Ok(())
    }
}
