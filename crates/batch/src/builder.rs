//! Encoding records into a RecordBatch v2.

use crate::layout::*;
use crate::varint::{varlong_len, write_varint, write_varlong};
use crate::{BatchError, MAGIC_V2};
use bytes::BufMut;
use spool_types::limits::{
    BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_RECORDS_MAX, RECORD_BYTES_MAX,
};

/// A record to be encoded. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: i64,
}

/// A record by reference to its parts, for [`BatchBuilder::push_parts`].
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Option<Vec<u8>>)],
    pub timestamp_ms: i64,
}

impl NewRecord {
    /// An owned copy of a stored record, to be written again (a batch
    /// rebuilt without some of its records, a dead letter, a redrive), at
    /// `timestamp_ms`.
    pub fn copy_of(record: &crate::Record<'_>, timestamp_ms: i64) -> NewRecord {
        NewRecord {
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            timestamp_ms,
        }
    }

    /// The record's parts, borrowed.
    pub fn as_parts(&self) -> RecordParts<'_> {
        RecordParts {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }

    pub fn value(value: impl Into<Vec<u8>>, timestamp_ms: i64) -> NewRecord {
        NewRecord {
            value: Some(value.into()),
            timestamp_ms,
            ..NewRecord::default()
        }
    }
}

/// Builds one batch. Records are appended in order; [`BatchBuilder::finish`]
/// writes the header and CRC. The base offset is 0 until a log assigns one.
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: usize,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        Self::with_capacity(256)
    }

    /// A builder whose buffer starts with room for `bytes` (header
    /// included): a producer that knows about how big its batches get
    /// saves growing (and copying) the buffer while it fills.
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        Self::in_buffer(Vec::new(), bytes)
    }

    /// [`BatchBuilder::with_capacity`] reusing `buf` (its contents are
    /// dropped): a producer that recycles the buffers of acknowledged
    /// batches saves the page faults of a fresh large allocation per batch.
    pub fn in_buffer(mut buf: Vec<u8>, bytes: usize) -> BatchBuilder {
        buf.clear();
        buf.reserve(bytes.clamp(BATCH_HEADER_BYTES, BATCH_BYTES_MAX));
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Marks the batch with an idempotent producer's identity and first sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// [`BatchBuilder::producer`] on a builder kept by reference.
    pub fn set_producer(&mut self, id: i64, epoch: i16, base_sequence: i32) {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would occupy if finished now.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `record` would add to the batch.
    pub fn record_size(&self, record: &NewRecord) -> usize {
        self.record_size_of(&record.as_parts())
    }

    /// Bytes a record given by its parts would add to the batch.
    pub fn record_size_of(&self, record: &RecordParts<'_>) -> usize {
        let body = self.record_body_len(record);
        varlong_len(body as i64) + body
    }

    fn record_body_len(&self, r: &RecordParts<'_>) -> usize {
        let ts_delta = r.timestamp_ms - self.base_timestamp.unwrap_or(r.timestamp_ms);
        let nullable = |b: Option<&[u8]>| match b {
            None => varlong_len(-1),
            Some(b) => varlong_len(b.len() as i64) + b.len(),
        };
        let mut len = 1 + varlong_len(ts_delta) + varlong_len(self.count as i64);
        len += nullable(r.key) + nullable(r.value);
        len += varlong_len(r.headers.len() as i64);
        for (k, v) in r.headers {
            len += varlong_len(k.len() as i64) + k.len() + nullable(v.as_deref());
        }
        len
    }

    /// Appends a record, refusing one that would break a limit.
    pub fn push(&mut self, record: &NewRecord) -> Result<(), BatchError> {
        self.push_parts(&record.as_parts())
    }

    /// Appends a record given by borrowed parts (no copy of the caller's
    /// key and value before they are encoded), refusing one that would
    /// break a limit.
    pub fn push_parts(&mut self, record: &RecordParts<'_>) -> Result<(), BatchError> {
        let index = self.count;
        if index >= BATCH_RECORDS_MAX {
            return Err(BatchError::BadRecordCount {
                count: index as i64 + 1,
            });
        }
        let body = self.record_body_len(record);
        if body > RECORD_BYTES_MAX {
            return Err(BatchError::RecordTooLarge {
                index,
                len: body,
                max: RECORD_BYTES_MAX,
            });
        }
        let added = varlong_len(body as i64) + body;
        if self.buf.len() + added > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge {
                len: self.buf.len() + added,
                max: BATCH_BYTES_MAX,
            });
        }
        let base = *self.base_timestamp.get_or_insert(record.timestamp_ms);
        self.max_timestamp = self.max_timestamp.max(record.timestamp_ms);
        let out = &mut self.buf;
        write_varlong(out, body as i64);
        out.push(0); // record attributes: unused in v2
        write_varlong(out, record.timestamp_ms - base);
        write_varint(out, index as i32);
        write_nullable(out, record.key);
        write_nullable(out, record.value);
        write_varint(out, record.headers.len() as i32);
        for (k, v) in record.headers {
            write_nullable(out, Some(k.as_bytes()));
            write_nullable(out, v.as_deref());
        }
        self.count += 1;
        Ok(())
    }

    /// Writes the header and CRC and returns the encoded batch.
    /// An empty builder yields an error.
    pub fn finish(self) -> Result<Vec<u8>, BatchError> {
        if self.count == 0 {
            return Err(BatchError::BadRecordCount { count: 0 });
        }
        let mut buf = self.buf;
        let total = buf.len();
        let mut header = &mut buf[..BATCH_HEADER_BYTES];
        header.put_i64(0); // base offset: assigned by the log
        header.put_i32((total - LENGTH_PREFIX) as i32);
        header.put_i32(-1); // partition leader epoch: assigned by the log
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // CRC, filled below
        header.put_i16(0); // attributes: no compression, create time
        header.put_i32(self.count as i32 - 1);
        header.put_i64(self.base_timestamp.unwrap_or(-1));
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(self.count as i32);
        let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf)
    }
}

fn write_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}
