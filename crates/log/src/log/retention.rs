//! Cutting the log at either end: the low-water mark
//! ([`Log::advance_start_offset`]), retention of whole sealed segments
//! ([`Log::apply_retention`]) and suffix truncation ([`Log::truncate_suffix`]).
//! In entry mode, whatever deletes the first segments also records the
//! new first entry index (`start-entry`).

use super::{Inner, Log};

/// Where retention would cut a log in entry mode ([`Log::retention_cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCut {
    /// The last entry that would go.
    pub last_entry: u64,
    /// The first offset kept: the log's start offset after the cut.
    pub next_offset: i64,
}

/// How many of the first sealed segments are past the size or age limit
/// (counted from the first; the active segment always stays).
fn segments_past_retention(inner: &Inner, now_ms: i64) -> usize {
    let mut total = inner.size_bytes();
    let mut drop_count = 0;
    let sealed = inner.segments.len() - 1;
    for seg in &inner.segments[..sealed] {
        let over_size = inner
            .config
            .retention_bytes
            .is_some_and(|limit| total - seg.size >= limit);
        let too_old = inner
            .config
            .retention_ms
            .is_some_and(|limit| seg.max_timestamp < now_ms - limit as i64);
        if !(over_size || too_old) {
            break;
        }
        total -= seg.size;
        drop_count += 1;
    }
    drop_count
}
use crate::scan::{Scanner, Step};
use crate::{fsutil, start_entry, start_offset, LogError};

impl Log {
    /// Raises the low-water mark: offsets below `offset` become unreadable and
    /// whole segments below it are deleted. Durable before it returns.
    pub fn advance_start_offset(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        let offset = offset.min(inner.written_offset());
        if offset <= inner.start_offset {
            return Ok(());
        }
        start_offset::write(&self.dir, offset)?;
        inner.start_offset = offset;
        self.delete_segments_below(&mut inner)?;
        inner.locate_start()
    }

    /// Deletes whole sealed segments past the size or age limit and returns
    /// how many went. The start offset moves up to the first kept segment.
    /// A log in entry mode refuses: its Raft group decides when entries go
    /// ([`Log::retention_cut`], then [`Log::purge_entries_to`]).
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = self.lock();
        if inner.config.entry_mode {
            return Err(LogError::InEntryMode {
                op: "apply_retention",
                instead: "retention_cut and purge_entries_to",
            });
        }
        let drop_count = segments_past_retention(&inner, now_ms);
        if drop_count == 0 {
            return Ok(0);
        }
        let new_start = inner.segments[drop_count]
            .base_offset
            .max(inner.start_offset);
        if new_start > inner.start_offset {
            start_offset::write(&self.dir, new_start)?;
            inner.start_offset = new_start;
        }
        let before = inner.segments.len();
        self.delete_segments_below(&mut inner)?;
        inner.locate_start()?;
        Ok(before - inner.segments.len())
    }

    /// Where retention would cut a log in entry mode now: the last entry of
    /// the last whole sealed segment past the size or age limit, and the
    /// first offset kept after it. `None` when nothing is past the limits.
    /// Nothing is deleted: the caller (a partition's Raft group) first makes
    /// a snapshot there, then purges.
    pub fn retention_cut(&self, now_ms: i64) -> Result<Option<RetentionCut>, LogError> {
        let inner = self.lock();
        inner.entry_bounds("retention_cut")?;
        let drop_count = segments_past_retention(&inner, now_ms);
        if drop_count == 0 {
            return Ok(None);
        }
        let last_dropped = &inner.segments[drop_count - 1];
        let Some(entries) = last_dropped.entries.as_ref() else {
            return Ok(None);
        };
        if entries.next_index() <= entries.first_index {
            return Ok(None); // a segment holding no entry: nothing to cut
        }
        Ok(Some(RetentionCut {
            last_entry: entries.next_index() - 1,
            next_offset: inner.segments[drop_count]
                .base_offset
                .max(inner.start_offset),
        }))
    }

    fn delete_segments_below(&self, inner: &mut Inner) -> Result<(), LogError> {
        let start = inner.start_offset;
        let last = inner.segments.len() - 1;
        let doomed = inner.segments[..last]
            .iter()
            .take_while(|s| s.next_offset <= start)
            .count();
        self.delete_first_segments(inner, doomed)
    }

    /// Deletes the first `doomed` segments (sealed ones: never the last),
    /// in entry mode recording first the index of the entry that becomes
    /// the first (written before the deletions, like the start offset).
    pub(super) fn delete_first_segments(
        &self,
        inner: &mut Inner,
        doomed: usize,
    ) -> Result<(), LogError> {
        if doomed == 0 {
            return Ok(());
        }
        let first_kept = &inner.segments[doomed];
        if let Some(entries) = &first_kept.entries {
            start_entry::write(&self.dir, entries.first_index)?;
        }
        for seg in inner.segments.drain(..doomed) {
            seg.delete_files(&self.dir)?;
        }
        fsutil::sync_dir(&self.dir)
    }

    /// Drops every batch at or after `offset`, which must be a batch boundary
    /// (or the end of the log). Used when replication must discard a suffix.
    /// A log in entry mode removes entries instead
    /// ([`Log::truncate_entries_from`]): its control entries share offsets.
    ///
    /// Syncs in flight finish first, so they are ordered before the
    /// truncation: no fdatasync that started before it can afterwards raise
    /// the durable offset over batches written after it.
    pub fn truncate_suffix(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock_between_syncs();
        if inner.config.entry_mode {
            return Err(LogError::InEntryMode {
                op: "truncate_suffix",
                instead: "truncate_entries_from",
            });
        }
        inner.check_failed()?;
        let next = inner.written_offset();
        if offset >= next {
            return Ok(());
        }
        if offset < inner.start_offset {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: inner.start_offset,
                end: next,
            });
        }
        let idx = inner
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        // Find the batch boundary inside segment idx.
        let (file, path, start_pos, end_pos) = {
            let seg = &inner.segments[idx];
            (
                seg.reader()?,
                seg.path.clone(),
                seg.scan_start(offset),
                seg.size,
            )
        };
        let mut boundary = None;
        let mut scanner = Scanner::new(&file, &path, start_pos, end_pos, false);
        loop {
            match scanner.next_step()? {
                Step::End => break,
                Step::Bad {
                    position, reason, ..
                } => return Err(LogError::corrupt(&path, position, reason)),
                Step::Batch { position, header } => {
                    if header.base_offset == offset {
                        boundary = Some(position);
                        break;
                    }
                    if header.last_offset() >= offset {
                        return Err(LogError::NotBatchBoundary { offset });
                    }
                }
            }
        }
        let position = match boundary {
            Some(p) => p,
            // `offset` is the end of segment idx (a gap follows): keep it whole.
            None if inner.segments[idx].next_offset == offset => inner.segments[idx].size,
            None => return Err(LogError::NotBatchBoundary { offset }),
        };
        self.cut_at(&mut inner, idx, position, offset)
    }

    /// The log's lock, once no [`Log::sync_to`] fdatasync is in flight: a
    /// truncation or reset that waits for it is ordered after it, so that
    /// fdatasync cannot raise the durable offset afterwards.
    pub(super) fn lock_between_syncs(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        while inner.syncing {
            inner = self.synced.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        inner
    }

    /// Cuts the log just before the batch at `position` of segment `idx`
    /// (whose base offset is `offset`): later segments are deleted, segment
    /// `idx` is cut and becomes the active one. Called with no sync in
    /// flight ([`Log::lock_between_syncs`]).
    pub(super) fn cut_at(
        &self,
        inner: &mut Inner,
        idx: usize,
        position: u64,
        offset: i64,
    ) -> Result<(), LogError> {
        for seg in inner.segments.drain(idx + 1..) {
            seg.delete_files(&self.dir)?;
        }
        // Segment idx is the active one now.
        inner.segments[idx].reactivate()?;
        inner.segments[idx].truncate_to(position, offset)?;
        fsutil::sync_dir(&self.dir)?;
        inner.durable_offset = inner.durable_offset.min(offset);
        inner.synced_position = inner.synced_position.min(inner.active().size);
        inner.entries_cut()
    }
}
