//! One segment: a `.log` file of batches (the only reader and writer of that
//! format) with its offset and time indexes.

use crate::entry_index::{self, EntryIndexBuilder, SegmentEntries};
use crate::file_cache::{SealedFileCache, SegmentKey};
use crate::file_header::{self, FILE_HEADER_BYTES, SEGMENT_MAGIC};
use crate::index::{self, IndexFile, OffsetEntry, TimeEntry};
use crate::scan::{Accept, Scanner, Step};
use crate::{fsutil, LogError};
use spool_batch::BatchHeader;
use spool_types::limits::BATCH_HEADER_BYTES;
use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
pub fn offset_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// Parses a segment file name back to its base offset.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Descriptors the active segment of a log holds: its `.log`, `.index` and
/// `.timeindex`. A sealed segment holds none: its `.log` is opened when read,
/// through the [`SealedFileCache`].
pub const SEGMENT_FILES: usize = 3;
/// [`SEGMENT_FILES`] of a log in entry mode: its `.entryindex` too.
pub const SEGMENT_FILES_ENTRY_MODE: usize = SEGMENT_FILES + 1;

/// Where a segment's files are opened from: the log it belongs to and the
/// cache of sealed segments' files.
#[derive(Debug, Clone)]
pub struct Files {
    pub cache: Arc<SealedFileCache>,
    pub log_id: u64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    /// The `.log` file, open (read-write) while the segment is active and
    /// shared with readers, who pread outside the log's lock; `None` once
    /// sealed (see [`Segment::reader`]).
    file: Option<Arc<File>>,
    files: Files,
    /// Bytes in the file that hold whole, accepted batches (header included).
    pub size: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    /// Largest record timestamp in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// When the first batch was appended (this process's clock), for rolling by age.
    pub first_append_ms: Option<i64>,
    pub offset_index: IndexFile<OffsetEntry>,
    pub time_index: IndexFile<TimeEntry>,
    bytes_since_index: u64,
    /// The segment's entries, in entry mode (`None` in a plain log).
    pub entries: Option<SegmentEntries>,
}

/// How to open an existing segment.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// The last segment of its log: scanned completely, its tail cut if torn.
    pub active: bool,
    pub index_interval: u32,
    /// `LogConfig::strict_recovery`.
    pub strict: bool,
    /// In entry mode, the index of the segment's first entry.
    pub first_index: Option<u64>,
}

impl Opening {
    fn accept(&self) -> Accept {
        match self.first_index {
            Some(_) => Accept::DataAndControl,
            None => Accept::DataOnly,
        }
    }
}

/// What opening a segment had to repair.
#[derive(Debug, Default)]
pub struct SegmentRepair {
    pub rebuilt_index: bool,
    /// (position, bytes dropped, reason) when a torn or corrupt tail was cut.
    pub truncated: Option<(u64, u64, String)>,
}

impl Segment {
    /// Creates an empty segment whose header is durable (the caller syncs
    /// the directory); in entry mode (`first_index`) with an entry index.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        first_index: Option<u64>,
        files: &Files,
    ) -> Result<Segment, LogError> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        file.write_all_at(&file_header::encode(SEGMENT_MAGIC, base_offset), 0)
            .map_err(|e| LogError::io(&path, e))?;
        file.sync_data().map_err(|e| LogError::io(&path, e))?;
        let offset_index =
            IndexFile::create(&offset_index_path(dir, base_offset), base_offset, vec![])?;
        let time_index =
            IndexFile::create(&time_index_path(dir, base_offset), base_offset, vec![])?;
        let entries = first_index
            .map(|first| SegmentEntries::create(dir, base_offset, first))
            .transpose()?;
        Ok(Segment {
            base_offset,
            path,
            file: Some(Arc::new(file)),
            files: files.clone(),
            size: FILE_HEADER_BYTES as u64,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            offset_index,
            time_index,
            bytes_since_index: 0,
            entries,
        })
    }

    /// Opens an existing segment.
    ///
    /// `active` segments (the last of a log) are scanned completely with CRC
    /// checks; a torn or corrupt tail is cut off and the indexes are rebuilt.
    /// Sealed segments were fsync'd before their successor existed, so their
    /// indexes are trusted if they validate, and only the tail after the last
    /// index entry is walked; damage there is reported, never cut.
    ///
    /// With `strict`, an active segment is not cut at a batch that fails its
    /// CRC while more bytes follow it (damage inside the log, which a torn
    /// write cannot cause for a log written one fdatasync'd batch at a
    /// time): the open fails instead, naming the file and position.
    ///
    /// A sealed segment's files are closed again before this returns.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        how: Opening,
        files: &Files,
    ) -> Result<(Segment, SegmentRepair), LogError> {
        let (mut seg, repair) = Self::open_and_check(dir, base_offset, how, files)?;
        if !how.active {
            seg.close_files();
        }
        Ok((seg, repair))
    }

    fn open_and_check(
        dir: &Path,
        base_offset: i64,
        how: Opening,
        files: &Files,
    ) -> Result<(Segment, SegmentRepair), LogError> {
        let Opening {
            active,
            index_interval,
            strict,
            first_index,
        } = how;
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut head = vec![0u8; FILE_HEADER_BYTES.min(file_len as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| LogError::io(&path, e))?;
        match file_header::decode(SEGMENT_MAGIC, &head) {
            Ok(b) if b == base_offset => {}
            Ok(b) => {
                return Err(LogError::corrupt(
                    &path,
                    12,
                    format!("header names base offset {b}"),
                ))
            }
            Err(reason) => return Err(LogError::corrupt(&path, 0, reason)),
        }
        let mut repair = SegmentRepair::default();
        let oi_path = offset_index_path(dir, base_offset);
        let ti_path = time_index_path(dir, base_offset);
        let loaded = if active {
            None
        } else {
            match (
                IndexFile::<OffsetEntry>::load(&oi_path, base_offset),
                IndexFile::<TimeEntry>::load(&ti_path, base_offset),
            ) {
                (Ok(oi), Ok(ti)) => Some((oi, ti)),
                _ => None,
            }
        };
        let file = Arc::new(file);
        if let Some(indexes) = loaded {
            let found = Self::open_with_index(
                &path,
                &file,
                base_offset,
                file_len,
                indexes,
                how.accept(),
                files,
            )?;
            if let Some(seg) = found {
                if let Some(seg) = seg.with_sealed_entries(dir, first_index, file_len)? {
                    return Ok((seg, repair));
                }
            }
        }
        // Rebuild: walk every batch, verifying CRCs.
        repair.rebuilt_index = true;
        let mut offsets = Vec::new();
        let mut times: Vec<TimeEntry> = Vec::new();
        let mut expected = base_offset;
        let mut max_ts = -1i64;
        let mut since_index = 0u64;
        let mut entries = EntryIndexBuilder::new();
        let mut scanner = Scanner::new(&file, &path, FILE_HEADER_BYTES as u64, file_len, true)
            .accepting(how.accept());
        let valid_end = loop {
            match scanner.next_step()? {
                Step::End => break file_len,
                Step::Bad {
                    position,
                    reason,
                    batch_end,
                } => {
                    if !active {
                        return Err(LogError::corrupt(&path, position, reason));
                    }
                    if let Some(end) = batch_end.filter(|end| strict && *end < file_len) {
                        return Err(LogError::corrupt(
                            &path,
                            position,
                            format!(
                                "{reason}, with {} byte(s) of the log after it: damage inside \
                                 the log, not a torn write, so it is not cut",
                                file_len - end
                            ),
                        ));
                    }
                    repair.truncated = Some((position, file_len - position, reason));
                    break position;
                }
                Step::Batch { position, header } => {
                    if header.base_offset != expected {
                        let reason = format!(
                            "batch base offset {} where {expected} was expected",
                            header.base_offset
                        );
                        if !active {
                            return Err(LogError::corrupt(&path, position, reason));
                        }
                        repair.truncated = Some((position, file_len - position, reason));
                        break position;
                    }
                    let rel = (header.base_offset - base_offset) as u32;
                    if offsets.is_empty() || since_index >= index_interval as u64 {
                        offsets.push(OffsetEntry {
                            relative_offset: rel,
                            position: position as u32,
                        });
                        since_index = 0;
                    }
                    since_index += header.total_len() as u64;
                    entries.see(position, header.total_len() as u64, index_interval);
                    if header.max_timestamp > max_ts {
                        max_ts = header.max_timestamp;
                        if times.last().is_none_or(|t| t.max_timestamp < max_ts) {
                            times.push(TimeEntry {
                                max_timestamp: max_ts,
                                relative_offset: rel,
                            });
                        }
                    }
                    expected = header.next_offset();
                }
            }
        };
        if valid_end < file_len {
            file.set_len(valid_end)
                .map_err(|e| LogError::io(&path, e))?;
            file.sync_all().map_err(|e| LogError::io(&path, e))?;
        }
        let mut offset_index = IndexFile::create(&oi_path, base_offset, offsets)?;
        let mut time_index = IndexFile::create(&ti_path, base_offset, times)?;
        let mut entries = first_index
            .map(|first| entries.finish(dir, base_offset, first))
            .transpose()?;
        if !active {
            offset_index.sync()?;
            time_index.sync()?;
            if let Some(entries) = &mut entries {
                entries.index.sync()?;
            }
        }
        Ok((
            Segment {
                base_offset,
                path,
                file: Some(file),
                files: files.clone(),
                size: valid_end,
                next_offset: expected,
                max_timestamp: max_ts,
                first_append_ms: None,
                offset_index,
                time_index,
                bytes_since_index: since_index,
                entries,
            },
            repair,
        ))
    }

    /// A sealed segment opened on its trusted offset and time indexes, in
    /// entry mode given its entries from a trusted entry index too. `None`:
    /// the entry index disagrees with the segment; rebuild every index.
    fn with_sealed_entries(
        mut self,
        dir: &Path,
        first_index: Option<u64>,
        file_len: u64,
    ) -> Result<Option<Segment>, LogError> {
        let Some(first_index) = first_index else {
            return Ok(Some(self));
        };
        let file = self.reader()?;
        let loaded = SegmentEntries::load_sealed(
            dir,
            self.base_offset,
            first_index,
            &file,
            &self.path,
            file_len,
        )?;
        Ok(loaded.map(|entries| {
            self.entries = Some(entries);
            self
        }))
    }

    /// Trusts validated index files of a sealed segment; walks only the batches
    /// after the last offset-index entry. `None` means the index disagrees with
    /// the data and must be rebuilt.
    fn open_with_index(
        path: &Path,
        file: &Arc<File>,
        base_offset: i64,
        file_len: u64,
        (oi, ti): (IndexFile<OffsetEntry>, IndexFile<TimeEntry>),
        accept: Accept,
        files: &Files,
    ) -> Result<Option<Segment>, LogError> {
        let Some(last) = oi.entries.last().copied() else {
            return Ok(None);
        };
        if oi.entries[0].position as usize != FILE_HEADER_BYTES
            || oi.entries[0].relative_offset != 0
        {
            return Ok(None);
        }
        if last.position as u64 >= file_len {
            return Ok(None);
        }
        // The tail is CRC-checked: its offsets decide where the next segment
        // may start, and a damaged lastOffsetDelta would otherwise be blamed
        // on the successor.
        let mut scanner =
            Scanner::new(file, path, last.position as u64, file_len, true).accepting(accept);
        let mut expected = base_offset + last.relative_offset as i64;
        let mut max_ts = ti.entries.last().map(|t| t.max_timestamp).unwrap_or(-1);
        loop {
            match scanner.next_step()? {
                Step::End => break,
                // The index points at something that is not a batch.
                Step::Bad { position, .. } if position == last.position as u64 => return Ok(None),
                Step::Bad {
                    position, reason, ..
                } => return Err(LogError::corrupt(path, position, reason)),
                Step::Batch { position, header } => {
                    if header.base_offset != expected {
                        if position == last.position as u64 {
                            return Ok(None); // the index points at the wrong batch
                        }
                        let reason = format!(
                            "batch base offset {} where {expected} was expected",
                            header.base_offset
                        );
                        return Err(LogError::corrupt(path, position, reason));
                    }
                    max_ts = max_ts.max(header.max_timestamp);
                    expected = header.next_offset();
                }
            }
        }
        Ok(Some(Segment {
            base_offset,
            path: path.to_owned(),
            file: Some(Arc::clone(file)),
            files: files.clone(),
            size: file_len,
            next_offset: expected,
            max_timestamp: max_ts,
            first_append_ms: None,
            offset_index: oi,
            time_index: ti,
            bytes_since_index: 0,
            entries: None,
        }))
    }

    /// Writes one batch at the end, with the base offset and leader epoch of
    /// `header` in the copy of its header that is written (a plain log's
    /// `header` carries the batch's own epoch; in entry mode, the entry's
    /// term). On failure the file is cut back, so the segment is unchanged.
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let position = self.size;
        let file = self.writer()?;
        write_batch_at_end(&file, &self.path, batch, header, position)?;
        self.note_written(position, header, index_interval, now_ms);
        Ok(())
    }

    /// Accounts for one batch whose bytes are already in the file at
    /// `position` (the current end): sizes, offsets, timestamps and index
    /// entries.
    ///
    /// An index entry that cannot be written (e.g. a full disk) is skipped,
    /// not reported: the batch is in the file, and indexes are hints that
    /// readers verify and recovery rebuilds. The next batch retries the entry
    /// because `bytes_since_index` keeps growing.
    fn note_written(
        &mut self,
        position: u64,
        header: &BatchHeader,
        index_interval: u32,
        now_ms: i64,
    ) {
        debug_assert_eq!(position, self.size, "batches are accounted in file order");
        let len = header.total_len() as u64;
        let rel = (header.base_offset - self.base_offset) as u32;
        let max_ts = self.max_timestamp.max(header.max_timestamp);
        if self.offset_index.entries.is_empty() || self.bytes_since_index >= index_interval as u64 {
            let entry = OffsetEntry {
                relative_offset: rel,
                position: position as u32,
            };
            if self.offset_index.push(entry).is_ok() {
                self.bytes_since_index = 0;
                let last_ts = self
                    .time_index
                    .entries
                    .last()
                    .map_or(-1, |t| t.max_timestamp);
                if max_ts > last_ts {
                    let _ = self.time_index.push(TimeEntry {
                        max_timestamp: max_ts,
                        relative_offset: rel,
                    });
                }
            }
        }
        self.bytes_since_index += len;
        if let Some(entries) = &mut self.entries {
            entries.note_written(position, len, index_interval);
        }
        self.size += len;
        self.next_offset = header.next_offset();
        self.max_timestamp = max_ts;
        self.first_append_ms.get_or_insert(now_ms);
    }

    /// Makes the segment and its indexes durable before a successor is created.
    pub fn seal(&mut self) -> Result<(), LogError> {
        if self.max_timestamp
            > self
                .time_index
                .entries
                .last()
                .map_or(-1, |t| t.max_timestamp)
        {
            // Record the final maximum so retention by age needs no scan after reopen.
            let rel = self
                .offset_index
                .entries
                .last()
                .map_or(0, |e| e.relative_offset);
            let rel = rel.max(
                self.time_index
                    .entries
                    .last()
                    .map_or(0, |t| t.relative_offset),
            );
            let entry = TimeEntry {
                max_timestamp: self.max_timestamp,
                relative_offset: rel,
            };
            if self.time_index.entries.last().is_none_or(|t| {
                (t.max_timestamp, t.relative_offset as i64)
                    < (entry.max_timestamp, entry.relative_offset as i64)
            }) {
                self.time_index.push(entry)?;
            }
        }
        self.writer()?
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))?;
        self.offset_index.sync()?;
        self.time_index.sync()?;
        match &mut self.entries {
            Some(entries) => entries.index.sync(),
            None => Ok(()),
        }
    }

    /// The `.log` file for reading: the active segment's own, or a sealed
    /// one's from the cache (opened if it is not there). Called under the
    /// log's lock, so the segment cannot be deleted meanwhile.
    pub fn reader(&self) -> Result<Arc<File>, LogError> {
        match &self.file {
            Some(file) => Ok(Arc::clone(file)),
            None => self.files.cache.get_or_open(self.key(), &self.path),
        }
    }

    /// The `.log` file for writing, opened (read-write) if it was closed.
    fn writer(&mut self) -> Result<Arc<File>, LogError> {
        let file = match self.file.take() {
            Some(file) => file,
            None => Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&self.path)
                    .map_err(|e| LogError::io(&self.path, e))?,
            ),
        };
        Ok(Arc::clone(self.file.insert(file)))
    }

    /// Closes the segment's files once it is sealed: reads open its `.log`
    /// through the cache, lookups use the indexes in memory.
    pub fn close_files(&mut self) {
        self.file = None;
        self.offset_index.close();
        self.time_index.close();
        if let Some(entries) = &mut self.entries {
            entries.index.close();
        }
    }

    /// Makes a sealed segment the active one again (a suffix truncation
    /// cut everything after it): its `.log` open for writing, its cached
    /// file forgotten.
    pub fn reactivate(&mut self) -> Result<(), LogError> {
        self.files.cache.remove(self.key());
        self.writer().map(drop)
    }

    /// Descriptors the segment holds itself (not counting the cache's).
    pub fn open_files(&self) -> usize {
        usize::from(self.file.is_some())
            + usize::from(self.offset_index.is_open())
            + usize::from(self.time_index.is_open())
            + usize::from(self.entries.as_ref().is_some_and(|e| e.index.is_open()))
    }

    fn key(&self) -> SegmentKey {
        (self.files.log_id, self.base_offset)
    }

    /// The file position to start scanning from for `offset`.
    pub fn scan_start(&self, offset: i64) -> u64 {
        self.scan_anchor(offset).0
    }

    /// Where to start scanning for `offset`: the file position of the indexed
    /// batch at or below it, and that batch's base offset. Batches from there
    /// on must continue the offsets without a gap: base offsets lie outside
    /// the batch CRC, so this continuity is what vouches for them on reads.
    pub fn scan_anchor(&self, offset: i64) -> (u64, i64) {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        index::floor_offset(&self.offset_index.entries, rel).map_or(
            (FILE_HEADER_BYTES as u64, self.base_offset),
            |e| {
                (
                    e.position as u64,
                    self.base_offset + e.relative_offset as i64,
                )
            },
        )
    }

    /// [`Segment::scan_anchor`] for the first batch whose max timestamp is at
    /// least `timestamp`.
    pub fn time_scan_anchor(&self, timestamp: i64) -> (u64, i64) {
        let rel = index::time_scan_start(&self.time_index.entries, timestamp);
        self.scan_anchor(self.base_offset + rel as i64)
    }

    /// Cuts the segment so it ends just before the batch at `position`
    /// (whose base offset is `offset`), dropping index entries past it.
    pub fn truncate_to(&mut self, position: u64, offset: i64) -> Result<(), LogError> {
        let file = self.writer()?;
        // Counted before the cut, while the batches are still there.
        let entries_kept = match &self.entries {
            Some(entries) => Some(entries.count_before(&file, &self.path, position)?),
            None => None,
        };
        file.set_len(position)
            .map_err(|e| LogError::io(&self.path, e))?;
        file.sync_all().map_err(|e| LogError::io(&self.path, e))?;
        let keep = self
            .offset_index
            .entries
            .partition_point(|e| (e.position as u64) < position);
        self.offset_index.truncate(keep)?;
        let rel = (offset - self.base_offset) as u32;
        let keep_t = self
            .time_index
            .entries
            .partition_point(|t| t.relative_offset < rel);
        self.time_index.truncate(keep_t)?;
        self.size = position;
        self.next_offset = offset;
        self.max_timestamp = self
            .time_index
            .entries
            .last()
            .map_or(-1, |t| t.max_timestamp);
        // The true max of the kept batches may be higher than the last entry;
        // a rescan would be exact, but the entry is a safe lower bound for lookups.
        self.bytes_since_index = 0;
        self.offset_index.sync()?;
        self.time_index.sync()?;
        match (&mut self.entries, entries_kept) {
            (Some(entries), Some(kept)) => entries.truncate_to(position, kept),
            _ => Ok(()),
        }
    }

    /// Removes the segment's files (readers holding the file keep their handle).
    pub fn delete_files(&self, dir: &Path) -> Result<(), LogError> {
        remove_segment_files(dir, self.base_offset, self.entries.is_some())
    }
}

impl Drop for Segment {
    /// A segment deleted, or its log closed: its cached file, if any, goes
    /// too (a read holding it keeps its handle).
    fn drop(&mut self) {
        self.files.cache.remove(self.key());
    }
}

/// A segment's files, its `.log` first: removed in this order, a crash
/// part way leaves at worst orphan indexes, which recovery removes.
pub fn segment_file_paths(dir: &Path, base_offset: i64, entry_mode: bool) -> Vec<PathBuf> {
    let mut paths = vec![
        segment_path(dir, base_offset),
        offset_index_path(dir, base_offset),
        time_index_path(dir, base_offset),
    ];
    if entry_mode {
        paths.push(entry_index::entry_index_path(dir, base_offset));
    }
    paths
}

/// Removes a segment's files ([`segment_file_paths`]).
pub fn remove_segment_files(
    dir: &Path,
    base_offset: i64,
    entry_mode: bool,
) -> Result<(), LogError> {
    for p in segment_file_paths(dir, base_offset, entry_mode) {
        fsutil::remove_if_exists(&p)?;
    }
    Ok(())
}

/// Writes one batch at the end of a segment with the base offset and
/// leader epoch of `header` in its header (the epoch is the batch's own in
/// a plain log, so there only the base offset changes), leaving the
/// caller's bytes as they are: the header goes out from a patched copy on
/// the stack and the records straight from `batch`, in one `pwritev`. A produced batch is thus written from the buffer it was
/// received in (copying 1 MiB batches into a fresh buffer to patch 8 bytes
/// cost ~8 % of the server's CPU in a 1 KiB publish, BENCHMARKS.md,
/// seventh session). On failure the file is cut back to `position`, so it
/// ends on a batch boundary again.
pub fn write_batch_at_end(
    file: &File,
    path: &Path,
    batch: &[u8],
    header: &BatchHeader,
    position: u64,
) -> Result<(), LogError> {
    let split = BATCH_HEADER_BYTES.min(batch.len());
    let mut head = [0u8; BATCH_HEADER_BYTES];
    let head = &mut head[..split];
    head.copy_from_slice(&batch[..split]);
    spool_batch::set_base_offset(head, header.base_offset);
    spool_batch::set_leader_epoch(head, header.partition_leader_epoch);
    write_parts_at_end(file, path, head, &batch[split..], position)
}

/// `first` then `second` at `position`, retrying short and interrupted
/// writes as `write_all_at` does.
fn write_two_at(
    file: &File,
    mut first: &[u8],
    mut second: &[u8],
    mut position: u64,
) -> std::io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let parts = [IoSlice::new(first), IoSlice::new(second)];
        let written = match rustix::io::pwritev(file, &parts, position) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        position += written as u64;
        let from_first = written.min(first.len());
        first = &first[from_first..];
        second = &second[written - from_first..];
    }
    Ok(())
}

/// `first` then `second` at `position`; on failure the file is cut back to
/// `position`, so no partial batch is left after the last good one.
fn write_parts_at_end(
    file: &File,
    path: &Path,
    first: &[u8],
    second: &[u8],
    position: u64,
) -> Result<(), LogError> {
    write_two_at(file, first, second, position).map_err(|e| {
        let _ = file.set_len(position);
        LogError::io(path, e)
    })
}
