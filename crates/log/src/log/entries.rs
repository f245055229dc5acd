//! Entry mode: the log as the Raft log of a replicated partition, without
//! it knowing of Raft. Every stored batch is one *entry*, numbered 1, 2, 3,
//! … in log order without holes (after a purge the log starts at a later
//! index), with a *term* in its `partitionLeaderEpoch` field (outside the
//! CRC, written into the copy of the header the log writes, as the base
//! offset is). An entry is a data batch, which gets the next offsets as in
//! a plain log, or a control batch, which covers none: client offsets stay
//! dense.
//!
//! This module: writing entries, their bounds and terms, reading them, and
//! the commit cap of offset readers. Removing entries is `entry_cuts`.
//!
//! Entries are read up to the written end: a Raft log serves its own
//! entries before they are durable or committed. Offset reads (client
//! data) stop at the committed end, see [`Log::set_committed_end`].

use super::read::check_continuity;
use super::{Inner, Log};
use crate::entry_index::SegmentEntries;
use crate::file_header::FILE_HEADER_BYTES;
use crate::scan::{self, Accept, Scanner, Step};
use crate::segment::Segment;
use crate::{read_buffers, start_entry, LogError};
use bytes::Bytes;
use spool_batch::{BatchError, BatchHeader};
use spool_types::limits::BATCH_HEADER_BYTES;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An entry's identity: its index and term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId {
    pub index: u64,
    pub term: u64,
}

/// Where [`Log::write_entry`] put an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAppended {
    pub index: u64,
    /// The log's next offset when the entry was written: the offset of its
    /// first record (a control entry's too, though it holds none).
    pub base_offset: i64,
    /// The log's next offset after the entry: `base_offset` plus its record
    /// count (for a control entry, `base_offset`). [`Log::sync_to`] of it
    /// makes the entry durable, control entries included.
    pub next_offset: i64,
    /// Whether the caller must sync before it reports the entry durable,
    /// per the log's durability policy (as [`Log::write`] says).
    pub must_sync: bool,
}

/// The entries a log stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryBounds {
    /// The first entry still stored; while the log stores none, the index
    /// the next entry gets.
    pub first_index: u64,
    /// The last stored entry, `None` when the log stores none.
    pub last: Option<EntryId>,
}

impl EntryBounds {
    /// The index the next entry gets.
    pub fn next_index(&self) -> u64 {
        self.last.map_or(self.first_index, |last| last.index + 1)
    }
}

/// One stored entry, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub term: u64,
    pub base_offset: i64,
    /// The whole stored batch, CRC-checked, as written (its header carries
    /// `base_offset` and the term). A slice of the read's shared buffer.
    pub batch: Bytes,
}

impl StoredEntry {
    pub fn is_control(&self) -> bool {
        BatchHeader::parse_with_control(&self.batch).is_ok_and(|h| h.is_control())
    }
}

/// What a log in entry mode keeps besides its segments.
#[derive(Debug)]
pub(super) struct EntryState {
    /// Offset readers stop here: the next offset after the committed
    /// entries. Raised only, by [`Log::set_committed_end`].
    pub(super) committed_end: i64,
    /// Control entries written and not yet fdatasync'd, as (index, base
    /// offset), oldest first. They advance no offset, so the durable offset
    /// alone cannot say whether [`Log::sync_to`] must still cover them.
    unsynced_controls: VecDeque<(u64, i64)>,
    /// The term of the last stored entry (`None`: the log stores none).
    last_term: Option<u64>,
}

impl EntryState {
    pub(super) fn new(committed_end: i64) -> Self {
        EntryState {
            committed_end,
            unsynced_controls: VecDeque::new(),
            last_term: None,
        }
    }

    /// An fdatasync covered every entry below `next_index`.
    pub(super) fn synced_below(&mut self, next_index: u64) {
        while self
            .unsynced_controls
            .front()
            .is_some_and(|&(index, _)| index < next_index)
        {
            self.unsynced_controls.pop_front();
        }
    }

    /// Whether every control entry at or below `next_offset` is durable.
    pub(super) fn controls_durable_to(&self, next_offset: i64) -> bool {
        self.unsynced_controls
            .front()
            .is_none_or(|&(_, base_offset)| base_offset > next_offset)
    }
}

/// An entry's position in its segment file, with its header.
pub(super) struct Located {
    pub(super) segment: usize,
    pub(super) position: u64,
    pub(super) header: BatchHeader,
}

impl Log {
    /// Writes one entry (a data batch, validated here as [`Log::write`]
    /// does, or a control batch from [`spool_batch::control_batch`]) with
    /// its `term` at the end of the log: the page-cache write only, like
    /// `write`; durability through [`Log::sync_to`]`(next_offset)` (or a
    /// [`Syncer`](crate::Syncer)), which covers control entries too. A data
    /// entry gets the next offsets; a control entry gets the next offset as
    /// its base offset and advances nothing.
    pub fn write_entry(
        &self,
        batch: &[u8],
        term: u64,
        now_ms: i64,
    ) -> Result<EntryAppended, LogError> {
        // CPU work outside the lock.
        let header = validate_entry(batch)?;
        self.write_entry_validated(batch, header, term, now_ms)
    }

    /// [`Log::write_entry`] for a batch its caller has just validated
    /// (`spool_batch::validate` or `validate_control`), `header` being what
    /// that returned. Debug builds re-check.
    pub fn write_entry_validated(
        &self,
        batch: &[u8],
        mut header: BatchHeader,
        term: u64,
        now_ms: i64,
    ) -> Result<EntryAppended, LogError> {
        debug_assert_eq!(validate_entry(batch).ok(), Some(header));
        header.partition_leader_epoch =
            i32::try_from(term).map_err(|_| LogError::TermTooLarge { term })?;
        let mut inner = self.lock();
        let index = inner
            .next_index()
            .ok_or(LogError::NotEntryMode { op: "write_entry" })?;
        let must_sync = self.append_batch(&mut inner, batch, &mut header, now_ms)?;
        let state = inner.entry_state_mut("write_entry")?;
        if header.is_control() {
            state
                .unsynced_controls
                .push_back((index, header.base_offset));
        }
        state.last_term = Some(term);
        Ok(EntryAppended {
            index,
            base_offset: header.base_offset,
            next_offset: header.next_offset(),
            must_sync,
        })
    }

    /// The first stored entry's index and the last stored entry.
    pub fn entry_bounds(&self) -> Result<EntryBounds, LogError> {
        let inner = self.lock();
        inner.entry_bounds("entry_bounds")
    }

    /// The term of entry `index`, `None` if the log does not store it.
    pub fn entry_term(&self, index: u64) -> Result<Option<u64>, LogError> {
        let view = {
            let inner = self.lock();
            inner.entry_bounds("entry_term")?;
            match inner.segment_holding(index) {
                Some(seg) => SegmentView::of(&inner.segments[seg], index)?,
                None => return Ok(None),
            }
        };
        let (position, header) = view.locate(index)?;
        term_of(&view.path, position, &header).map(Some)
    }

    /// Whole stored entries from `from_index` on, at most `max_entries` and
    /// about `max_bytes` (at least one, whatever its size), across segments,
    /// each CRC-checked. Reads up to the written end, not the committed end.
    /// `from_index` must be a stored entry ([`LogError::EntryOutOfRange`]).
    pub fn read_entries(
        &self,
        from_index: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEntry>, LogError> {
        self.check_stored(from_index, "read_entries")?;
        let mut out: Vec<StoredEntry> = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_entries && (out.is_empty() || bytes < max_bytes) {
            let index = from_index + out.len() as u64;
            let view = {
                let inner = self.lock();
                match inner.segment_holding(index) {
                    Some(seg) => SegmentView::of(&inner.segments[seg], index)?,
                    None => break,
                }
            };
            let budget = Budget {
                entries: max_entries - out.len(),
                bytes: max_bytes.saturating_sub(bytes),
                at_least_one: out.is_empty(),
            };
            let read = view.read_from(index, budget)?;
            if read.is_empty() {
                break;
            }
            bytes += read.iter().map(|e| e.batch.len()).sum::<usize>();
            out.extend(read);
        }
        Ok(out)
    }

    /// Offset reads (client data: [`Log::read`], [`Log::read_from_timestamp`],
    /// [`Log::offset_for_timestamp`], `stats().end_offset`) of a log in entry
    /// mode stop below `next_offset` from now on: the next offset after the
    /// committed entries. It only rises (a lower value is ignored), starts
    /// at the log's start offset when the log is opened, and is kept in
    /// memory only. No effect on a plain log.
    pub fn set_committed_end(&self, next_offset: i64) {
        if let Some(state) = self.lock().entries.as_mut() {
            state.committed_end = state.committed_end.max(next_offset);
        }
    }

    /// Refuses `index` unless the log stores it.
    fn check_stored(&self, index: u64, op: &'static str) -> Result<(), LogError> {
        let bounds = self.lock().entry_bounds(op)?;
        match bounds.last {
            Some(last) if (bounds.first_index..=last.index).contains(&index) => Ok(()),
            last => Err(LogError::EntryOutOfRange {
                requested: index,
                first: bounds.first_index,
                last: last.map(|l| l.index),
            }),
        }
    }
}

impl Inner {
    /// The index the next entry gets (`None`: a plain log).
    pub(super) fn next_index(&self) -> Option<u64> {
        self.active()
            .entries
            .as_ref()
            .map(SegmentEntries::next_index)
    }

    pub(super) fn entry_state_mut(
        &mut self,
        op: &'static str,
    ) -> Result<&mut EntryState, LogError> {
        self.entries.as_mut().ok_or(LogError::NotEntryMode { op })
    }

    pub(super) fn entry_bounds(&self, op: &'static str) -> Result<EntryBounds, LogError> {
        let state = self.entries.as_ref().ok_or(LogError::NotEntryMode { op })?;
        let first_index = self.first_index();
        let next_index = self.next_index().unwrap_or(first_index);
        let last = match state.last_term {
            Some(term) if next_index > first_index => Some(EntryId {
                index: next_index - 1,
                term,
            }),
            _ => None,
        };
        Ok(EntryBounds { first_index, last })
    }

    /// Sets up entry mode on a log just recovered: the commit cap at the
    /// start offset, the last entry's term, and a `start-entry` file that
    /// names the first segment's first entry (written if it is missing or
    /// says otherwise: that segment's own `.entryindex` header ruled).
    pub(super) fn open_entries(
        &mut self,
        dir: &Path,
        recorded: Option<u64>,
    ) -> Result<(), LogError> {
        let first_index = self.first_index();
        if recorded != Some(first_index) {
            start_entry::write(dir, first_index)?;
        }
        self.entries = Some(EntryState::new(self.start_offset));
        self.refresh_last_term()
    }

    /// The first segment's first entry index.
    fn first_index(&self) -> u64 {
        self.segments[0]
            .entries
            .as_ref()
            .map_or(start_entry::FIRST_ENTRY_INDEX, |e| e.first_index)
    }

    /// After a cut at the end: control entries that are gone no longer
    /// wait for a sync, and the last entry (and so its term) changed.
    pub(super) fn entries_cut(&mut self) -> Result<(), LogError> {
        let Some(next_index) = self.next_index() else {
            return Ok(());
        };
        if let Some(state) = &mut self.entries {
            state
                .unsynced_controls
                .retain(|&(index, _)| index < next_index);
        }
        self.refresh_last_term()
    }

    /// Reads the last stored entry's term from its batch header.
    fn refresh_last_term(&mut self) -> Result<(), LogError> {
        let first_index = self.first_index();
        let next_index = self.next_index().unwrap_or(first_index);
        let term = match next_index
            .checked_sub(1)
            .filter(|&last| last >= first_index)
        {
            Some(last) => {
                let found = self.locate_entry(last)?;
                let path = &self.segments[found.segment].path;
                Some(term_of(path, found.position, &found.header)?)
            }
            None => None,
        };
        if let Some(state) = &mut self.entries {
            state.last_term = term;
        }
        Ok(())
    }

    /// The segment that stores entry `index`, if one does.
    pub(super) fn segment_holding(&self, index: u64) -> Option<usize> {
        let after = self
            .segments
            .partition_point(|s| s.entries.as_ref().is_some_and(|e| e.first_index <= index));
        let at = after.checked_sub(1)?;
        let entries = self.segments[at].entries.as_ref()?;
        (index < entries.next_index()).then_some(at)
    }

    /// Finds stored entry `index` under the lock (a truncation, the last
    /// term): its segment, position and header.
    pub(super) fn locate_entry(&self, index: u64) -> Result<Located, LogError> {
        let Some(segment) = self.segment_holding(index) else {
            let bounds = self.entry_bounds("locate_entry")?;
            return Err(LogError::EntryOutOfRange {
                requested: index,
                first: bounds.first_index,
                last: bounds.last.map(|l| l.index),
            });
        };
        let view = SegmentView::of(&self.segments[segment], index)?;
        let (position, header) = view.locate(index)?;
        Ok(Located {
            segment,
            position,
            header,
        })
    }
}

/// Validates an entry as [`Log::write_entry`] takes it: a control batch or
/// a data batch, each checked completely.
fn validate_entry(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    match BatchHeader::parse_with_control(batch) {
        Ok(header) if header.is_control() => spool_batch::validate_control(batch),
        _ => spool_batch::validate(batch),
    }
}

/// The term a stored entry's header carries; a negative one (the log never
/// writes one) is corruption.
fn term_of(path: &Path, position: u64, header: &BatchHeader) -> Result<u64, LogError> {
    u64::try_from(header.partition_leader_epoch).map_err(|_| {
        let reason = format!(
            "entry has leader epoch {}, not a term",
            header.partition_leader_epoch
        );
        LogError::corrupt(path, position, reason)
    })
}

/// A point to walk a segment's batches from: the position of a batch, its
/// entry index and its base offset (vouched for, since base offsets lie
/// outside the CRC: by the file header for the first batch, by the offset
/// index otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    position: u64,
    index: u64,
    offset: i64,
}

/// What reading entries of one segment needs, copied under the log's lock;
/// the reads run without it.
struct SegmentView {
    file: Arc<File>,
    path: PathBuf,
    /// The end of the segment's batches.
    end: u64,
    origin: Anchor,
    anchor: Anchor,
}

/// How much one segment's read may return.
struct Budget {
    entries: usize,
    bytes: usize,
    /// Return the first entry even if it is larger than `bytes`.
    at_least_one: bool,
}

impl SegmentView {
    /// A view of `seg` to find entry `index` in.
    fn of(seg: &Segment, index: u64) -> Result<SegmentView, LogError> {
        let first_index = seg.entries.as_ref().map_or(0, |e| e.first_index);
        let origin = Anchor {
            position: FILE_HEADER_BYTES as u64,
            index: first_index,
            offset: seg.base_offset,
        };
        let anchor = seg.entries.as_ref().map_or(origin, |entries| {
            let (position, at) = entries.anchor(index);
            // The offset index is pushed by the same rule, so it normally
            // has an entry at the same position, giving the base offset.
            let indexed = seg
                .offset_index
                .entries
                .binary_search_by_key(&position, |e| e.position as u64);
            match indexed {
                Ok(i) => Anchor {
                    position,
                    index: at,
                    offset: seg.base_offset + seg.offset_index.entries[i].relative_offset as i64,
                },
                Err(_) => origin,
            }
        });
        Ok(SegmentView {
            file: seg.reader()?,
            path: seg.path.clone(),
            end: seg.size,
            origin,
            anchor,
        })
    }

    /// The position and header of entry `index`: a walk over batch headers
    /// from the anchor, or from the first batch if the anchor proves wrong
    /// (indexes are hints).
    fn locate(&self, index: u64) -> Result<(u64, BatchHeader), LogError> {
        match self.walk_to(self.anchor, index) {
            Err((true, _)) if self.anchor != self.origin => {
                self.walk_to(self.origin, index).map_err(|(_, e)| e)
            }
            other => other.map_err(|(_, e)| e),
        }
    }

    /// [`SegmentView::locate`] from one anchor, checking that base offsets
    /// continue. An error says whether it concerns the anchor's batch.
    fn walk_to(&self, from: Anchor, index: u64) -> Result<(u64, BatchHeader), (bool, LogError)> {
        let path = &self.path;
        if from.position > self.end || index < from.index {
            let reason = format!("entry index anchor at byte {} is wrong", from.position);
            return Err((true, LogError::corrupt(path, from.position, reason)));
        }
        let mut scanner = Scanner::new(&self.file, path, from.position, self.end, false)
            .accepting(Accept::DataAndControl);
        let (mut at, mut expected) = (from.index, from.offset);
        loop {
            match scanner.next_step().map_err(|e| (false, e))? {
                Step::End => {
                    let reason = format!("the segment ends before entry {index}");
                    return Err((false, LogError::corrupt(path, self.end, reason)));
                }
                Step::Bad {
                    position, reason, ..
                } => {
                    let error = LogError::corrupt(path, position, reason);
                    return Err((position == from.position, error));
                }
                Step::Batch { position, header } => {
                    check_continuity(path, position, &header, expected)
                        .map_err(|e| (position == from.position, e))?;
                    if at == index {
                        return Ok((position, header));
                    }
                    at += 1;
                    expected = header.next_offset();
                }
            }
        }
    }

    /// Entries from `index` on, to the segment's end or the budget, read
    /// with one pread (two if the first entry is larger than the budget),
    /// each checked (header, offset continuity, CRC-32C).
    fn read_from(&self, index: u64, budget: Budget) -> Result<Vec<StoredEntry>, LogError> {
        let (first, header) = self.locate(index)?;
        let path = &self.path;
        let available = (self.end - first) as usize;
        let mut want = budget.bytes.max(BATCH_HEADER_BYTES).min(available);
        let mut buf = read_buffers::take(want);
        self.file
            .read_exact_at(&mut buf[..want], first)
            .map_err(|e| LogError::io(path, e))?;
        let mut spans = Vec::new();
        let mut kept = 0usize;
        let mut expected = header.base_offset;
        while spans.len() < budget.entries && kept < available {
            let position = first + kept as u64;
            let rest = &buf[kept..want];
            if rest.len() < BATCH_HEADER_BYTES {
                if kept == 0 {
                    let reason = "segment ends inside a batch header";
                    return Err(LogError::corrupt(path, position, reason));
                }
                break;
            }
            let header = Accept::DataAndControl
                .parse(rest)
                .map_err(|e| LogError::corrupt(path, position, e.to_string()))?;
            check_continuity(path, position, &header, expected)?;
            let total = header.total_len();
            if total > rest.len() {
                if kept > 0 || !budget.at_least_one {
                    break;
                }
                if total > available {
                    let reason = "batch runs past the end of the segment";
                    return Err(LogError::corrupt(path, position, reason));
                }
                // The first entry is larger than the budget: read all of it.
                want = total;
                read_buffers::give_back(std::mem::replace(&mut buf, read_buffers::take(want)));
                self.file
                    .read_exact_at(&mut buf[..want], first)
                    .map_err(|e| LogError::io(path, e))?;
                continue;
            }
            scan::verify_served(path, position, &rest[..total], Accept::DataAndControl)?;
            spans.push((kept, total, header));
            kept += total;
            expected = header.next_offset();
        }
        let bytes = read_buffers::freeze(buf, kept);
        let mut out = Vec::with_capacity(spans.len());
        for (i, (at, len, header)) in spans.into_iter().enumerate() {
            out.push(StoredEntry {
                index: index + i as u64,
                term: term_of(path, first + at as u64, &header)?,
                base_offset: header.base_offset,
                batch: bytes.slice(at..at + len),
            });
        }
        Ok(out)
    }
}
