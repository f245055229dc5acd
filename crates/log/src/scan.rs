//! Walking the batches of a segment file: the one place that turns file bytes
//! back into batch boundaries, used by recovery, index rebuilds and reads.

use crate::LogError;
use spool_batch::{BatchError, BatchHeader};
use spool_types::limits::BATCH_HEADER_BYTES;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read per refill while verifying whole batches (recovery, index
/// rebuilds): they need every byte, so large reads.
const VERIFY_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes read per refill while only walking batch headers (locating an
/// offset for a read). The walk starts at an index entry, at most
/// `index_interval_bytes` (4 KiB by default) before the wanted batch, so a
/// few KiB usually hold every header it needs. Reading a large chunk here
/// was most of a small read's cost: with 1 MiB batches each locate read,
/// zero-filled and faulted in a whole megabyte to parse one header.
const HEADER_CHUNK_BYTES: usize = 8 * 1024;

/// Which batches a log's segments may hold: a log in entry mode also holds
/// control batches (no records, covering no offsets); anywhere else one is
/// corruption, as it always was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    DataOnly,
    DataAndControl,
}

impl Accept {
    /// Parses a stored batch header under this rule.
    pub fn parse(self, bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        match self {
            Accept::DataOnly => BatchHeader::parse(bytes),
            Accept::DataAndControl => BatchHeader::parse_with_control(bytes),
        }
    }
}

/// What the scanner found at a position.
pub enum Step {
    /// A batch with a plausible header that lies wholly before the end.
    Batch { position: u64, header: BatchHeader },
    /// The end of the scanned range, exactly on a batch boundary.
    End,
    /// Bytes that are not a complete valid batch start here. `batch_end`
    /// is where the batch would end when its header was readable (its CRC
    /// failed): bytes beyond it mean damage inside the log, not a torn tail.
    Bad {
        position: u64,
        reason: String,
        batch_end: Option<u64>,
    },
}

/// Reads batch headers (and optionally verifies whole batches) forward from a
/// position, in large chunks.
pub struct Scanner<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    verify: bool,
    accept: Accept,
}

impl<'a> Scanner<'a> {
    /// Scans `[start, end)` of `file`. With `verify`, each batch's CRC is checked.
    pub fn new(file: &'a File, path: &'a Path, start: u64, end: u64, verify: bool) -> Self {
        Scanner {
            file,
            path,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: start,
            verify,
            accept: Accept::DataOnly,
        }
    }

    /// Which batches the scan accepts (by default, data batches only).
    pub fn accepting(mut self, accept: Accept) -> Self {
        self.accept = accept;
        self
    }

    /// Makes `[at, at + len)` available in the buffer.
    fn ensure(&mut self, at: u64, len: usize) -> Result<&[u8], LogError> {
        let have_from = at >= self.buf_start;
        let have_to = at + len as u64 <= self.buf_start + self.buf.len() as u64;
        if !(have_from && have_to) {
            let chunk = if self.verify {
                VERIFY_CHUNK_BYTES
            } else {
                HEADER_CHUNK_BYTES
            };
            let want = len.max(chunk).min((self.end - at) as usize).max(len);
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, at)
                .map_err(|e| LogError::io(self.path, e))?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }

    /// Advances to the next batch.
    pub fn next_step(&mut self) -> Result<Step, LogError> {
        let position = self.pos;
        if position == self.end {
            return Ok(Step::End);
        }
        if self.end - position < BATCH_HEADER_BYTES as u64 {
            return Ok(Step::Bad {
                position,
                reason: "incomplete batch header".into(),
                batch_end: None,
            });
        }
        let accept = self.accept;
        let header = match accept.parse(self.ensure(position, BATCH_HEADER_BYTES)?) {
            Ok(h) => h,
            Err(e) => {
                return Ok(Step::Bad {
                    position,
                    reason: e.to_string(),
                    batch_end: None,
                })
            }
        };
        let total = header.total_len() as u64;
        if self.end - position < total {
            return Ok(Step::Bad {
                position,
                reason: format!("batch of {total} bytes runs past the end of the file"),
                batch_end: None,
            });
        }
        if self.verify {
            let bytes = self.ensure(position, total as usize)?;
            if let Err(e) = header.verify_crc(bytes) {
                return Ok(Step::Bad {
                    position,
                    reason: e.to_string(),
                    batch_end: Some(position + total),
                });
            }
        }
        self.pos = position + total;
        Ok(Step::Batch { position, header })
    }
}

/// Checks the CRC of a batch read for serving, turning a failure into a
/// corruption error that names the file and position.
pub fn verify_served(
    path: &Path,
    position: u64,
    bytes: &[u8],
    accept: Accept,
) -> Result<BatchHeader, LogError> {
    let header = accept
        .parse(bytes)
        .map_err(|e| LogError::corrupt(path, position, e.to_string()))?;
    if header.total_len() > bytes.len() {
        let e = BatchError::Truncated {
            need: header.total_len(),
            have: bytes.len(),
        };
        return Err(LogError::corrupt(path, position, e.to_string()));
    }
    header
        .verify_crc(bytes)
        .map_err(|e| LogError::corrupt(path, position, e.to_string()))?;
    Ok(header)
}
