//! Sparse offset and time indexes of one segment: their on-disk format (the
//! only reader and writer of `.index` and `.timeindex` files) and lookups.
//!
//! Offset index entry, 8 bytes: `relative offset u32 | position u32`.
//! Time index entry, 12 bytes: `max timestamp so far i64 | relative offset u32`.
//! Both files start with the common 24-byte file header. Index files are
//! hints: they are fsync'd only when their segment is sealed and are rebuilt
//! from the segment whenever they fail validation.

use crate::file_header::{self, FILE_HEADER_BYTES, OFFSET_INDEX_MAGIC, TIME_INDEX_MAGIC};
use crate::LogError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of the indexed batch, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest record timestamp in the segment up to and including this batch.
    pub max_timestamp: i64,
    /// Base offset of the batch that raised the maximum, relative to the segment.
    pub relative_offset: u32,
}

/// An index file being appended to, mirrored in memory. Lookups use the
/// entries in memory; the file is open only while it may change (the
/// active segment's), and opened again if a sealed one must change
/// (a suffix truncation).
#[derive(Debug)]
pub struct IndexFile<E> {
    path: PathBuf,
    file: Option<File>,
    pub entries: Vec<E>,
}

pub trait Entry: Copy {
    const BYTES: usize;
    const MAGIC: [u8; 8];
    fn encode(&self, out: &mut [u8]);
    fn decode(bytes: &[u8]) -> Self;
    /// The sort key that must strictly increase entry to entry.
    fn key(&self) -> (i64, i64);
}

impl Entry for OffsetEntry {
    const BYTES: usize = OFFSET_ENTRY_BYTES;
    const MAGIC: [u8; 8] = OFFSET_INDEX_MAGIC;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn key(&self) -> (i64, i64) {
        (self.relative_offset as i64, self.position as i64)
    }
}

impl Entry for TimeEntry {
    const BYTES: usize = TIME_ENTRY_BYTES;
    const MAGIC: [u8; 8] = TIME_INDEX_MAGIC;
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        TimeEntry {
            max_timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    fn key(&self) -> (i64, i64) {
        (self.max_timestamp, self.relative_offset as i64)
    }
}

impl<E: Entry> IndexFile<E> {
    /// Creates (or replaces) an index file holding exactly `entries`.
    pub fn create(path: &Path, base_offset: i64, entries: Vec<E>) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let mut bytes = vec![0u8; FILE_HEADER_BYTES + entries.len() * E::BYTES];
        bytes[..FILE_HEADER_BYTES].copy_from_slice(&file_header::encode(E::MAGIC, base_offset));
        for (i, e) in entries.iter().enumerate() {
            let at = FILE_HEADER_BYTES + i * E::BYTES;
            e.encode(&mut bytes[at..at + E::BYTES]);
        }
        file.write_all_at(&bytes, 0)
            .map_err(|e| LogError::io(path, e))?;
        Ok(IndexFile {
            path: path.to_owned(),
            file: Some(file),
            entries,
        })
    }

    /// Loads an existing index file, or explains why it cannot be trusted.
    /// The caller checks entries against the segment itself.
    pub fn load(path: &Path, base_offset: i64) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open: {e}"))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat: {e}"))?
            .len() as usize;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| format!("cannot read: {e}"))?;
        let recorded = file_header::decode(E::MAGIC, &bytes)?;
        if recorded != base_offset {
            return Err(format!(
                "header names base offset {recorded}, file name {base_offset}"
            ));
        }
        let body = &bytes[FILE_HEADER_BYTES..];
        if !body.len().is_multiple_of(E::BYTES) {
            return Err(format!(
                "{} bytes of entries is not a multiple of {}",
                body.len(),
                E::BYTES
            ));
        }
        let entries: Vec<E> = body.chunks_exact(E::BYTES).map(E::decode).collect();
        if entries.windows(2).any(|w| w[0].key() >= w[1].key()) {
            return Err("entries are not strictly increasing".into());
        }
        Ok(IndexFile {
            path: path.to_owned(),
            file: Some(file),
            entries,
        })
    }

    /// Closes the file (the entries stay in memory).
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Whether the file is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The file, opened again if it was closed.
    fn file(&mut self) -> Result<&File, LogError> {
        let file = match self.file.take() {
            Some(file) => file,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| LogError::io(&self.path, e))?,
        };
        Ok(self.file.insert(file))
    }

    pub fn push(&mut self, entry: E) -> Result<(), LogError> {
        let mut buf = [0u8; 16];
        entry.encode(&mut buf[..E::BYTES]);
        let at = (FILE_HEADER_BYTES + self.entries.len() * E::BYTES) as u64;
        self.file()?
            .write_all_at(&buf[..E::BYTES], at)
            .map_err(|e| LogError::io(&self.path, e))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Keeps only the first `count` entries, in memory and on disk.
    pub fn truncate(&mut self, count: usize) -> Result<(), LogError> {
        self.entries.truncate(count);
        let len = (FILE_HEADER_BYTES + count * E::BYTES) as u64;
        self.file()?
            .set_len(len)
            .map_err(|e| LogError::io(&self.path, e))
    }

    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file()?
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))
    }
}

/// The entry to start scanning from to find `relative_offset`: the last entry
/// whose offset is at or below it.
pub fn floor_offset(entries: &[OffsetEntry], relative_offset: u32) -> Option<OffsetEntry> {
    let idx = entries.partition_point(|e| e.relative_offset <= relative_offset);
    idx.checked_sub(1).map(|i| entries[i])
}

/// The relative offset to start scanning from to find the first batch whose
/// max timestamp is at least `timestamp`.
pub fn time_scan_start(entries: &[TimeEntry], timestamp: i64) -> u32 {
    let idx = entries.partition_point(|e| e.max_timestamp < timestamp);
    // Entry idx-1 is the last whose max is below the target; batches up to and
    // including it are all below, so start right at it (a cheap safe bound).
    idx.checked_sub(1)
        .map(|i| entries[i].relative_offset)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup() {
        let e = |r, p| OffsetEntry {
            relative_offset: r,
            position: p,
        };
        let entries = [e(0, 24), e(10, 4000), e(20, 8000)];
        assert_eq!(floor_offset(&entries, 0), Some(e(0, 24)));
        assert_eq!(floor_offset(&entries, 15), Some(e(10, 4000)));
        assert_eq!(floor_offset(&entries, 99), Some(e(20, 8000)));
        assert_eq!(floor_offset(&entries[1..], 5), None);
    }

    #[test]
    fn index_file_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::<OffsetEntry>::create(&path, 100, vec![]).unwrap();
        idx.push(OffsetEntry {
            relative_offset: 0,
            position: 24,
        })
        .unwrap();
        idx.push(OffsetEntry {
            relative_offset: 5,
            position: 5000,
        })
        .unwrap();
        let loaded = IndexFile::<OffsetEntry>::load(&path, 100).unwrap();
        assert_eq!(loaded.entries, idx.entries);
        assert!(IndexFile::<OffsetEntry>::load(&path, 99).is_err());
        // A torn entry is refused, so the caller rebuilds.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len((FILE_HEADER_BYTES + 12) as u64).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(&path, 100).is_err());
    }
}
