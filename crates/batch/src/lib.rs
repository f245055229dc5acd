//! Record batches in Apache Kafka's RecordBatch v2 layout (magic 2): the unit
//! Spool stores on disk, carries on the wire and appends atomically.
//!
//! - [`BatchBuilder`] encodes records into a batch (offsets relative to 0).
//! - [`validate`] checks an untrusted batch completely (lengths, magic, CRC-32C,
//!   every record) and returns its [`BatchHeader`].
//! - [`BatchHeader`] reads the fixed 61-byte header; [`set_base_offset`] patches
//!   the offset a log assigns, which lies outside the CRC so no re-checksum is needed.
//! - [`records`] iterates the records of a validated batch without copying;
//!   [`split_batches`] walks a buffer of concatenated batches.
//! - [`control_batch`] builds a control batch (no records, an opaque body)
//!   for logs in entry mode; [`validate_control`] checks one,
//!   [`control_body`] reads its body. [`validate`] refuses them.
//!
//! This crate does no I/O. Compression is not supported yet: batches whose
//! attributes name a codec are refused with [`BatchError::Unsupported`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod builder;
mod control;
mod header;
mod record;
#[cfg(test)]
mod tests;
mod varint;

pub use builder::{BatchBuilder, NewRecord, RecordParts};
pub use control::{control_batch, control_body, validate_control};
pub use header::{set_base_offset, set_leader_epoch, BatchHeader, MAGIC_V2};
pub use record::{records, Header, Record, RecordIter, RecordPosition};

use spool_types::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_RECORDS_MAX};

/// Offsets of the header fields, as drawn in `docs/storage-format.md`.
pub mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    /// The CRC covers everything from here to the end of the batch.
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
    /// Bytes before `batchLength` counts: baseOffset and batchLength itself.
    pub const LENGTH_PREFIX: usize = 12;
    const _: () = assert!(RECORDS == spool_types::limits::BATCH_HEADER_BYTES);
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("batch length {len} out of range (header {BATCH_HEADER_BYTES} to max {BATCH_BYTES_MAX} bytes)")]
    BadLength { len: i64 },
    #[error("batch has magic {0}; only RecordBatch v2 (magic 2) is supported")]
    BadMagic(i8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch has {count} records; allowed 1 to {BATCH_RECORDS_MAX}")]
    BadRecordCount { count: i64 },
    #[error("record {index} is malformed: {why}")]
    BadRecord { index: usize, why: &'static str },
    #[error("record {index} is {len} bytes; the maximum is {max}")]
    RecordTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("batch is {len} bytes; the maximum is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unsupported batch feature: {0}")]
    Unsupported(&'static str),
}

impl BatchError {
    /// The stable error code this maps to on the wire.
    pub fn code(&self) -> spool_types::ErrorCode {
        use spool_types::ErrorCode;
        match self {
            BatchError::RecordTooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::TooLarge { .. } => ErrorCode::BatchTooLarge,
            BatchError::BadRecordCount { count } if *count > BATCH_RECORDS_MAX as i64 => {
                ErrorCode::BatchTooLarge
            }
            BatchError::Unsupported(_) => ErrorCode::UnsupportedBatch,
            _ => ErrorCode::CorruptBatch,
        }
    }
}

/// Fully validates one untrusted batch occupying exactly `buf`: framing,
/// magic, CRC-32C, and that the records parse and account for every byte.
/// Only after this may the bytes be appended to a log. Control batches
/// (which only a log in entry mode holds, see [`validate_control`]) are
/// refused.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_each(buf, |_| {})
}

/// [`validate`], also showing each record to `each` as it is checked, in
/// order, so a caller that needs something from every record (the broker:
/// message IDs) walks the batch once, not twice. On an error, records
/// shown before it were well-formed but the batch is not.
pub fn validate_each<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(&Record<'a>),
) -> Result<BatchHeader, BatchError> {
    if buf.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge {
            len: buf.len(),
            max: BATCH_BYTES_MAX,
        });
    }
    let header = BatchHeader::parse(buf)?;
    if header.total_len() != buf.len() {
        return Err(BatchError::BadLength {
            len: header.batch_length as i64,
        });
    }
    header.verify_crc(buf)?;
    header.check_supported()?;
    let mut parsed = 0usize;
    let mut max_delta = -1i64;
    for (index, record) in records(buf, &header).enumerate() {
        let record = record?;
        if record.offset_delta as i64 != index as i64 {
            return Err(BatchError::BadRecord {
                index,
                why: "offset deltas must be 0, 1, 2, …",
            });
        }
        max_delta = record.timestamp_delta.max(max_delta);
        each(&record);
        parsed += 1;
    }
    if parsed as i64 != header.record_count as i64 {
        return Err(BatchError::BadRecordCount {
            count: header.record_count as i64,
        });
    }
    if header.last_offset_delta as i64 != parsed as i64 - 1 {
        return Err(BatchError::BadRecord {
            index: parsed,
            why: "lastOffsetDelta does not match the record count",
        });
    }
    Ok(header)
}

/// Splits a buffer of concatenated batches into `(position, batch bytes)`
/// pairs, reading only the length fields (no CRC check). Stops at the first
/// incomplete batch; a malformed length yields an error.
pub fn split_batches(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], BatchError>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos + layout::LENGTH_PREFIX > buf.len() {
            return None;
        }
        let rest = &buf[pos..];
        match header::total_len_from_prefix(rest) {
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
            Ok(len) if len > rest.len() => None,
            Ok(len) => {
                pos += len;
                Some(Ok(&rest[..len]))
            }
        }
    })
}
