//! The read path: whole stored batches by offset or timestamp, served
//! straight from the segment files without the log's lock.
//!
//! Indexes only say where to start walking; every batch returned is
//! CRC-checked and must continue its predecessor's offsets.
//!
//! In entry mode these reads serve client data: they stop at the committed
//! end as well ([`Log::set_committed_end`]), and control batches inside a
//! served range are returned as stored (they cover no offsets; readers skip
//! them by their control bit). A read never starts with one: a batch is
//! looked for by its last offset, which a control batch's lies below.

use super::{Inner, Log};
use crate::file_header::FILE_HEADER_BYTES;
use crate::read_buffers;
use crate::scan::{self, Accept, Scanner, Step};
use crate::LogError;
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Whole stored batches returned by a read, ready to send as they are.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// Zero or more complete, CRC-checked batches, concatenated. The first may
    /// begin before the requested offset: readers skip records below it.
    pub bytes: Bytes,
    /// The offset after the last returned batch (the next one to ask for).
    pub next_offset: i64,
    /// Offsets below this are readable (the high watermark).
    pub end_offset: i64,
    pub start_offset: i64,
}

impl Inner {
    /// Recomputes `start_position` after the start offset or first segment changed.
    pub(super) fn locate_start(&mut self) -> Result<(), LogError> {
        let seg = &self.segments[0];
        let start = self.start_offset;
        let from = seg.scan_anchor(start);
        let file = seg.reader()?;
        let found = locate(
            &file,
            &seg.path,
            from,
            seg.base_offset,
            seg.size,
            self.accept(),
            |h| h.last_offset() >= start,
        )?;
        self.start_position = found.map_or(seg.size, |(position, _)| position);
        Ok(())
    }
}

impl Log {
    /// Reads whole batches starting with the one that holds `offset`, up to
    /// about `max_bytes` (at least one batch is returned if any is readable,
    /// even if larger). Reads stop at the end of a segment.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        let (file, path, start_pos, base_offset, end_pos, end_offset, start_offset, accept) = {
            let inner = self.lock();
            let end_offset = inner.end_offset();
            let start_offset = inner.start_offset;
            if offset < start_offset || offset > inner.written_offset() {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start: start_offset,
                    end: end_offset,
                });
            }
            if offset >= end_offset {
                return Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: offset,
                    end_offset,
                    start_offset,
                });
            }
            // The segment holding `offset`: the last one starting at or below it,
            // or the next non-empty one if `offset` falls in a gap.
            let idx = inner
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let Some(seg) = inner.segments[idx..]
                .iter()
                .find(|s| s.next_offset > offset)
            else {
                return Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: offset,
                    end_offset,
                    start_offset,
                });
            };
            // Under the lock: retention cannot delete the segment meanwhile.
            (
                seg.reader()?,
                seg.path.clone(),
                seg.scan_anchor(offset),
                seg.base_offset,
                seg.size,
                end_offset,
                start_offset,
                inner.accept(),
            )
        };
        let first = locate(&file, &path, start_pos, base_offset, end_pos, accept, |h| {
            h.last_offset() >= offset
        })?;
        let Some(first) = first else {
            return Ok(ReadBatches {
                bytes: Bytes::new(),
                next_offset: offset,
                end_offset,
                start_offset,
            });
        };
        let range = ReadRange {
            first,
            end: end_pos,
            end_offset,
            max_bytes,
            accept,
        };
        let (bytes, next_offset) = read_range(&file, &path, range)?;
        let next_offset = if bytes.is_empty() {
            offset
        } else {
            next_offset
        };
        Ok(ReadBatches {
            bytes,
            next_offset,
            end_offset,
            start_offset,
        })
    }

    /// The offset of the first batch whose newest record is at or after
    /// `timestamp_ms`, or `None` if there is none yet.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<i64>, LogError> {
        let (file, path, start_pos, base_offset, end_pos, start_offset, end_offset, accept) =
            {
                let inner = self.lock();
                let end_offset = inner.end_offset();
                let Some(seg) = inner.segments.iter().find(|s| {
                    s.max_timestamp >= timestamp_ms && s.next_offset > inner.start_offset
                }) else {
                    return Ok(None);
                };
                (
                    seg.reader()?,
                    seg.path.clone(),
                    seg.time_scan_anchor(timestamp_ms),
                    seg.base_offset,
                    seg.size,
                    inner.start_offset,
                    end_offset,
                    inner.accept(),
                )
            };
        let mut found = None;
        locate(&file, &path, start_pos, base_offset, end_pos, accept, |h| {
            if h.max_timestamp >= timestamp_ms && h.base_offset < end_offset {
                found = Some(h.base_offset.max(start_offset));
                true
            } else {
                false
            }
        })?;
        Ok(found)
    }

    /// Reads from the first batch at or after `timestamp_ms`.
    pub fn read_from_timestamp(
        &self,
        timestamp_ms: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, LogError> {
        match self.offset_for_timestamp(timestamp_ms)? {
            Some(offset) => self.read(offset, max_bytes),
            None => {
                let stats = self.stats();
                Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: stats.end_offset,
                    end_offset: stats.end_offset,
                    start_offset: stats.start_offset,
                })
            }
        }
    }
}

/// Walks batch headers from `anchor` (a file position and the base offset of
/// the batch there, from [`Segment::scan_anchor`]) and returns the position
/// and base offset of the first batch for which `wanted` holds. Base offsets
/// lie outside the batch CRC, so each one must continue its predecessor's
/// offsets: a batch that does not is corrupt. Indexes are only hints: if the
/// batch at the anchor does not match it, the walk restarts from the
/// segment's first batch (whose offset the CRC-checked file header vouches for).
fn locate(
    file: &File,
    path: &Path,
    anchor: (u64, i64),
    base_offset: i64,
    end: u64,
    accept: Accept,
    mut wanted: impl FnMut(&spool_batch::BatchHeader) -> bool,
) -> Result<Option<(u64, i64)>, LogError> {
    let origin = (FILE_HEADER_BYTES as u64, base_offset);
    match walk(file, path, anchor, end, accept, &mut wanted) {
        Err((true, _)) if anchor != origin => {
            walk(file, path, origin, end, accept, &mut wanted).map_err(|(_, e)| e)
        }
        other => other.map_err(|(_, e)| e),
    }
}

/// [`locate`] from one starting point. An error says whether it concerns the
/// starting batch itself.
fn walk(
    file: &File,
    path: &Path,
    start: (u64, i64),
    end: u64,
    accept: Accept,
    wanted: &mut impl FnMut(&spool_batch::BatchHeader) -> bool,
) -> Result<Option<(u64, i64)>, (bool, LogError)> {
    let (start, mut expected) = start;
    if start > end {
        let reason = format!("scan start {start} lies past the end of the segment ({end})");
        return Err((true, LogError::corrupt(path, start, reason)));
    }
    let mut scanner = Scanner::new(file, path, start, end, false).accepting(accept);
    loop {
        match scanner.next_step().map_err(|e| (false, e))? {
            Step::End => return Ok(None),
            Step::Bad {
                position, reason, ..
            } => return Err((position == start, LogError::corrupt(path, position, reason))),
            Step::Batch { position, header } => {
                check_continuity(path, position, &header, expected)
                    .map_err(|e| (position == start, e))?;
                if wanted(&header) {
                    return Ok(Some((position, expected)));
                }
                expected = header.next_offset();
            }
        }
    }
}

pub(super) fn check_continuity(
    path: &Path,
    position: u64,
    header: &spool_batch::BatchHeader,
    expected: i64,
) -> Result<(), LogError> {
    if header.base_offset == expected {
        return Ok(());
    }
    Err(LogError::corrupt(
        path,
        position,
        format!(
            "batch base offset {} where {expected} was expected",
            header.base_offset
        ),
    ))
}

/// What [`read_range`] reads.
struct ReadRange {
    /// The position and base offset of the first batch.
    first: (u64, i64),
    /// The end of the segment's batches.
    end: u64,
    /// Batches at or beyond this offset are not served.
    end_offset: i64,
    max_bytes: usize,
    accept: Accept,
}

/// Reads whole batches from `first` into one buffer with a single pread,
/// verifying each batch's CRC and offset continuity, stopping at
/// `max_bytes` (after at least one batch), at `end`, or at the first batch
/// at or beyond `end_offset`.
fn read_range(file: &File, path: &Path, range: ReadRange) -> Result<(Bytes, i64), LogError> {
    let ReadRange {
        first,
        end,
        end_offset,
        max_bytes,
        accept,
    } = range;
    let (first, first_base) = first;
    let want = (max_bytes as u64)
        .min(end - first)
        .max(spool_types::limits::BATCH_HEADER_BYTES as u64)
        .min(end - first);
    // A pooled buffer, possibly longer than `want`: only `buf[..want]` is read.
    let mut want = want as usize;
    let mut buf = read_buffers::take(want);
    file.read_exact_at(&mut buf[..want], first)
        .map_err(|e| LogError::io(path, e))?;
    let mut kept = 0usize;
    let mut next_offset = first_base;
    loop {
        let rest = &buf[kept..want];
        if rest.len() < spool_types::limits::BATCH_HEADER_BYTES {
            if kept == 0 {
                return Err(LogError::corrupt(
                    path,
                    first,
                    "segment ends inside a batch header",
                ));
            }
            break;
        }
        let header = accept
            .parse(rest)
            .map_err(|e| LogError::corrupt(path, first + kept as u64, e.to_string()))?;
        check_continuity(path, first + kept as u64, &header, next_offset)?;
        if header.base_offset >= end_offset {
            break;
        }
        let total = header.total_len();
        if total > rest.len() {
            if kept > 0 {
                break;
            }
            // The first batch is bigger than max_bytes: read all of it.
            if first + total as u64 > end {
                return Err(LogError::corrupt(
                    path,
                    first,
                    "batch runs past the end of the segment",
                ));
            }
            want = total;
            read_buffers::give_back(std::mem::replace(&mut buf, read_buffers::take(want)));
            file.read_exact_at(&mut buf[..want], first)
                .map_err(|e| LogError::io(path, e))?;
            continue;
        }
        scan::verify_served(path, first + kept as u64, &rest[..total], accept)?;
        kept += total;
        next_offset = header.next_offset();
    }
    // The returned bytes may be held until a slow client has read them
    // (the server sends them without copying), and a byte budget counts
    // only their length: the buffer is at most twice that (its size class),
    // and goes back to the pool when the last holder drops it.
    Ok((read_buffers::freeze(buf, kept), next_offset))
}
