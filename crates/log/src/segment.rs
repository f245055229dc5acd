//! One segment: a `.log` file of batches (the only reader and writer of that
//! format) with its offset and time indexes (and in entry mode its entry
//! index). Opening an existing one, with its recovery, is `open`.

mod open;

pub use open::Opening;

use crate::entry_index::{self, SegmentEntries};
use crate::file_cache::{SealedFileCache, SegmentKey};
use crate::file_header::{self, FILE_HEADER_BYTES, SEGMENT_MAGIC};
use crate::index::{self, IndexFile, OffsetEntry, TimeEntry};
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
