//! The entry index of one segment of a log in entry mode (the only reader
//! and writer of `.entryindex` files), and what the segment knows of its
//! entries: the index of its first entry and how many it holds.
//!
//! In entry mode every stored batch is one entry, numbered 1, 2, 3, … in
//! log order. The file is the common 24-byte header (magic `SPOOLEIX`)
//! whose base field holds the segment's first entry index, then 8-byte
//! entries `relative entry index u32 | position u32`, pushed by the offset
//! index's rule (the first batch, then one every `index_interval_bytes`).
//! Like the other indexes it is a hint: fdatasync'd when its segment is
//! sealed, rebuilt from the segment when it fails validation.

use crate::file_header::{self, ENTRY_INDEX_MAGIC, FILE_HEADER_BYTES};
use crate::index::{Entry, IndexFile};
use crate::scan::{Accept, Scanner, Step};
use crate::LogError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ENTRY_POSITION_BYTES: usize = 8;

pub fn entry_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.entryindex"))
}

/// One entry of a `.entryindex` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPosition {
    /// Entry index of the indexed batch minus the segment's first entry index.
    pub relative_index: u32,
    /// Byte position of that batch in the segment file.
    pub position: u32,
}

impl Entry for EntryPosition {
    const BYTES: usize = ENTRY_POSITION_BYTES;
    const MAGIC: [u8; 8] = ENTRY_INDEX_MAGIC;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_index.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        EntryPosition {
            relative_index: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn key(&self) -> (i64, i64) {
        (self.relative_index as i64, self.position as i64)
    }
}

/// The first entry index a segment's `.entryindex` header records, if the
/// file exists and its header is intact. Recovery trusts it for the first
/// segment (whose predecessor, which would vouch for it, is gone).
pub fn recorded_first_index(dir: &Path, base_offset: i64) -> Option<u64> {
    let path = entry_index_path(dir, base_offset);
    let mut head = [0u8; FILE_HEADER_BYTES];
    File::open(path).ok()?.read_exact_at(&mut head, 0).ok()?;
    let first = file_header::decode(ENTRY_INDEX_MAGIC, &head).ok()?;
    u64::try_from(first).ok().filter(|&i| i >= 1)
}

/// A segment's entries, in entry mode.
#[derive(Debug)]
pub struct SegmentEntries {
    /// Index of the segment's first entry (of its next one while it holds none).
    pub first_index: u64,
    /// Entries (batches) the segment holds.
    pub count: u64,
    pub index: IndexFile<EntryPosition>,
    /// Bytes of batches appended since the last index entry.
    bytes_since_index: u64,
}

impl SegmentEntries {
    /// An empty entry index for a new segment.
    pub fn create(dir: &Path, base_offset: i64, first_index: u64) -> Result<Self, LogError> {
        EntryIndexBuilder::new().finish(dir, base_offset, first_index)
    }

    /// Loads and checks the entry index of a sealed segment whose offset
    /// index was trusted, counting the entries after its last index entry
    /// (batch headers only: the offset index's walk checks the tail's CRCs).
    /// `None` means the file disagrees with the segment and must be rebuilt.
    pub fn load_sealed(
        dir: &Path,
        base_offset: i64,
        first_index: u64,
        file: &File,
        path: &Path,
        file_len: u64,
    ) -> Result<Option<Self>, LogError> {
        let index_path = entry_index_path(dir, base_offset);
        let Ok(index) = IndexFile::<EntryPosition>::load(&index_path, header_value(first_index)?)
        else {
            return Ok(None);
        };
        let (Some(first), Some(last)) = (index.entries.first(), index.entries.last().copied())
        else {
            return Ok(None);
        };
        if first.relative_index != 0 || first.position as usize != FILE_HEADER_BYTES {
            return Ok(None);
        }
        if last.position as u64 >= file_len {
            return Ok(None);
        }
        let mut scanner = Scanner::new(file, path, last.position as u64, file_len, false)
            .accepting(Accept::DataAndControl);
        let mut count = last.relative_index as u64;
        loop {
            match scanner.next_step()? {
                Step::End => break,
                Step::Bad { position, .. } if position == last.position as u64 => return Ok(None),
                Step::Bad {
                    position, reason, ..
                } => return Err(LogError::corrupt(path, position, reason)),
                Step::Batch { .. } => count += 1,
            }
        }
        Ok(Some(SegmentEntries {
            first_index,
            count,
            index,
            bytes_since_index: 0,
        }))
    }

    /// The index the segment's next entry gets.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.count
    }

    /// Accounts for one batch of `len` bytes appended at `position`. An
    /// index entry that cannot be written is skipped (indexes are hints)
    /// and retried with the next batch.
    pub fn note_written(&mut self, position: u64, len: u64, interval: u32) {
        if self.index.entries.is_empty() || self.bytes_since_index >= interval as u64 {
            let entry = EntryPosition {
                relative_index: self.count as u32,
                position: position as u32,
            };
            if self.index.push(entry).is_ok() {
                self.bytes_since_index = 0;
            }
        }
        self.bytes_since_index += len;
        self.count += 1;
    }

    /// Where to start walking for entry `index` (inside this segment): the
    /// file position of the indexed batch at or below it, and its index.
    pub fn anchor(&self, index: u64) -> (u64, u64) {
        let rel = index.saturating_sub(self.first_index).min(u32::MAX as u64) as u32;
        let at = self
            .index
            .entries
            .partition_point(|e| e.relative_index <= rel);
        at.checked_sub(1).map(|i| self.index.entries[i]).map_or(
            (FILE_HEADER_BYTES as u64, self.first_index),
            |e| {
                (
                    e.position as u64,
                    self.first_index + e.relative_index as u64,
                )
            },
        )
    }

    /// How many entries lie before `position` (a batch boundary of the
    /// segment `file`): a walk over batch headers from the index entry at
    /// or below it, or from the first batch if that entry proves wrong.
    pub fn count_before(&self, file: &File, path: &Path, position: u64) -> Result<u64, LogError> {
        let at = self
            .index
            .entries
            .partition_point(|e| e.position as u64 <= position);
        let origin = (FILE_HEADER_BYTES as u64, 0);
        let anchor = at.checked_sub(1).map_or(origin, |i| {
            let e = self.index.entries[i];
            (e.position as u64, e.relative_index as u64)
        });
        match count_batches(file, path, anchor, position) {
            Err(_) if anchor != origin => count_batches(file, path, origin, position),
            other => other,
        }
    }

    /// Keeps the first `count` entries, whose batches end before `position`,
    /// dropping index entries at or past it (fdatasync'd, as a truncated
    /// segment's other indexes are).
    pub fn truncate_to(&mut self, position: u64, count: u64) -> Result<(), LogError> {
        let keep = self
            .index
            .entries
            .partition_point(|e| (e.position as u64) < position);
        self.index.truncate(keep)?;
        self.count = count;
        self.bytes_since_index = 0;
        self.index.sync()
    }
}

/// `anchor.1` plus the batches from file position `anchor.0` up to `end`,
/// which must be a batch boundary.
fn count_batches(file: &File, path: &Path, anchor: (u64, u64), end: u64) -> Result<u64, LogError> {
    let (start, mut count) = anchor;
    if start > end {
        let reason = format!("index entry at byte {start} lies past byte {end}");
        return Err(LogError::corrupt(path, start, reason));
    }
    let mut scanner = Scanner::new(file, path, start, end, false).accepting(Accept::DataAndControl);
    loop {
        match scanner.next_step()? {
            Step::End => return Ok(count),
            Step::Bad {
                position, reason, ..
            } => return Err(LogError::corrupt(path, position, reason)),
            Step::Batch { .. } => count += 1,
        }
    }
}

/// The `.entryindex` header's base field is an `i64`.
fn header_value(first_index: u64) -> Result<i64, LogError> {
    i64::try_from(first_index)
        .map_err(|_| LogError::InvalidConfig(format!("entry index {first_index} is too large")))
}

/// Builds a segment's entry index while recovery walks its batches.
#[derive(Debug, Default)]
pub struct EntryIndexBuilder {
    entries: Vec<EntryPosition>,
    count: u64,
    bytes_since_index: u64,
}

impl EntryIndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more batch of `len` bytes at `position`, in file order.
    pub fn see(&mut self, position: u64, len: u64, interval: u32) {
        if self.entries.is_empty() || self.bytes_since_index >= interval as u64 {
            self.entries.push(EntryPosition {
                relative_index: self.count as u32,
                position: position as u32,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.count += 1;
    }

    /// Writes the index file (replacing any) with `first_index` in its header.
    pub fn finish(
        self,
        dir: &Path,
        base_offset: i64,
        first_index: u64,
    ) -> Result<SegmentEntries, LogError> {
        let path = entry_index_path(dir, base_offset);
        let index = IndexFile::create(&path, header_value(first_index)?, self.entries)?;
        Ok(SegmentEntries {
            first_index,
            count: self.count,
            index,
            bytes_since_index: self.bytes_since_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_floor_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = SegmentEntries::create(dir.path(), 0, 10).unwrap();
        assert_eq!(entries.anchor(10), (24, 10));
        entries.note_written(24, 100, 150);
        entries.note_written(124, 100, 150);
        entries.note_written(224, 100, 150);
        assert_eq!(entries.next_index(), 13);
        assert_eq!(entries.anchor(10), (24, 10));
        assert_eq!(entries.anchor(11), (24, 10));
        assert_eq!(entries.anchor(12), (224, 12));
        assert_eq!(recorded_first_index(dir.path(), 0), Some(10));
        let loaded = IndexFile::<EntryPosition>::load(&entry_index_path(dir.path(), 0), 10);
        assert_eq!(loaded.unwrap().entries, entries.index.entries);
    }
}
