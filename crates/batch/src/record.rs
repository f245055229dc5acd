//! Zero-copy decoding of the records inside a batch.

use crate::varint::{read_varint, read_varlong};
use crate::{BatchError, BatchHeader};
use spool_types::limits::{RECORD_BYTES_MAX, RECORD_HEADERS_MAX};

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// One record, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<Header<'a>>,
}

impl Record<'_> {
    /// The value of the first header with this key, if any.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
    }
}

/// Iterates the records of `batch` (whole batch bytes, header first).
pub fn records<'a>(batch: &'a [u8], header: &BatchHeader) -> RecordIter<'a> {
    let end = header.total_len().min(batch.len());
    RecordIter {
        buf: &batch[..end],
        pos: crate::layout::RECORDS,
        index: 0,
        remaining: header.record_count.max(0) as usize,
        failed: false,
    }
}

/// Where a [`RecordIter`] stands in its batch: how many records it has
/// passed and the byte position of the next one. Lets a reader that comes
/// back to the same stored batch resume there instead of passing over every
/// record before it again (see [`RecordIter::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    index: usize,
    pos: usize,
}

impl RecordPosition {
    /// Records passed: the next record's offset is `base_offset + index`.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// Iterator over the records of one batch.
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
    remaining: usize,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.pos != self.buf.len() {
                self.failed = true;
                return Some(Err(BatchError::BadRecord {
                    index: self.index,
                    why: "bytes left over after the last record",
                }));
            }
            return None;
        }
        let result = self.decode_one();
        self.remaining -= 1;
        self.index += 1;
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> RecordIter<'a> {
    /// Where this iterator stands (see [`RecordPosition`]).
    pub fn position(&self) -> RecordPosition {
        RecordPosition {
            index: self.index,
            pos: self.pos,
        }
    }

    /// Iterates `batch` from `at`, a [`RecordIter::position`] taken on the
    /// same batch bytes. `None` if `at` cannot be a position in this batch
    /// (before the first record, past the end, more records than it has).
    /// A position taken on other bytes is not reliably detected — it fails
    /// only when the lengths read there do not add up — so callers keep a
    /// position together with the bytes it was taken on.
    pub fn resume(batch: &'a [u8], header: &BatchHeader, at: RecordPosition) -> Option<Self> {
        let mut iter = records(batch, header);
        if at.pos < iter.pos || at.pos > iter.buf.len() || at.index > iter.remaining {
            return None;
        }
        iter.remaining -= at.index;
        iter.index = at.index;
        iter.pos = at.pos;
        Some(iter)
    }

    /// Passes over the next `n` records reading only their lengths, for a
    /// reader that wants records further into a (validated) batch: record
    /// `i` of a batch has offset `base_offset + i`. Fails like `next` on a
    /// malformed length, and if the batch has fewer than `n` records left.
    pub fn skip_records(&mut self, n: usize) -> Result<(), BatchError> {
        for _ in 0..n {
            let index = self.index;
            let bad = |why: &'static str| BatchError::BadRecord { index, why };
            if self.failed || self.remaining == 0 {
                self.failed = true;
                return Err(bad("fewer records than skipped"));
            }
            let end = read_varint(self.buf, &mut self.pos)
                .ok()
                .and_then(|length| usize::try_from(length).ok())
                .filter(|&length| length <= RECORD_BYTES_MAX)
                .and_then(|length| self.pos.checked_add(length))
                .filter(|&end| end <= self.buf.len());
            let Some(end) = end else {
                self.failed = true;
                return Err(bad("bad record length"));
            };
            self.pos = end;
            self.remaining -= 1;
            self.index += 1;
        }
        Ok(())
    }

    fn decode_one(&mut self) -> Result<Record<'a>, BatchError> {
        let index = self.index;
        let bad = |why: &'static str| BatchError::BadRecord { index, why };
        let length = read_varint(self.buf, &mut self.pos).map_err(|_| bad("bad length"))?;
        if length < 0 {
            return Err(bad("negative length"));
        }
        let length = length as usize;
        if length > RECORD_BYTES_MAX {
            return Err(BatchError::RecordTooLarge {
                index,
                len: length,
                max: RECORD_BYTES_MAX,
            });
        }
        let end = self
            .pos
            .checked_add(length)
            .ok_or_else(|| bad("length overflows"))?;
        if end > self.buf.len() {
            return Err(bad("record runs past the end of the batch"));
        }
        let body = &self.buf[..end];
        let mut pos = self.pos;
        let _attributes = *body.get(pos).ok_or_else(|| bad("missing attributes"))?;
        pos += 1;
        let timestamp_delta =
            read_varlong(body, &mut pos).map_err(|_| bad("bad timestamp delta"))?;
        let offset_delta = read_varint(body, &mut pos).map_err(|_| bad("bad offset delta"))?;
        let key = read_nullable(body, &mut pos).map_err(|_| bad("bad key"))?;
        let value = read_nullable(body, &mut pos).map_err(|_| bad("bad value"))?;
        let header_count = read_varint(body, &mut pos).map_err(|_| bad("bad header count"))?;
        if header_count < 0 || header_count as usize > RECORD_HEADERS_MAX {
            return Err(bad("too many headers"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key = read_nullable(body, &mut pos)
                .map_err(|_| bad("bad header key"))?
                .ok_or_else(|| bad("null header key"))?;
            let key = std::str::from_utf8(key).map_err(|_| bad("header key is not UTF-8"))?;
            let value = read_nullable(body, &mut pos).map_err(|_| bad("bad header value"))?;
            headers.push(Header { key, value });
        }
        if pos != end {
            return Err(bad("record length does not match its fields"));
        }
        self.pos = end;
        Ok(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        })
    }
}

fn read_nullable<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, ()> {
    let len = read_varint(buf, pos).map_err(|_| ())?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(());
    }
    let end = pos.checked_add(len as usize).ok_or(())?;
    if end > buf.len() {
        return Err(());
    }
    let out = &buf[*pos..end];
    *pos = end;
    Ok(Some(out))
}
