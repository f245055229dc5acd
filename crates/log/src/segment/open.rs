//! Opening an existing segment: recovery of its batches (a torn tail of
//! the active segment cut, sealed segments checked from their last index
//! entry) and of its indexes (trusted when they validate, else rebuilt).

use super::{offset_index_path, segment_path, time_index_path, Files, Segment};
use crate::entry_index::{EntryIndexBuilder, SegmentEntries};
use crate::file_header::{self, FILE_HEADER_BYTES, SEGMENT_MAGIC};
use crate::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::scan::{Accept, Scanner, Step};
use crate::LogError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

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
}
