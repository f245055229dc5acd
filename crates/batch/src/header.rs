//! The fixed 61-byte RecordBatch v2 header.

use crate::layout::*;
use crate::BatchError;
use spool_types::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_RECORDS_MAX};

/// The only batch format Spool reads or writes.
pub const MAGIC_V2: i8 = 2;

/// Compression codec bits of `attributes`.
const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Transactional batches are a Kafka feature Spool does not implement.
const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Control batches carry no records: Spool writes them only into logs in
/// entry mode (a Raft log's blank and membership entries, `control.rs`);
/// clients may not send them.
pub(crate) const ATTR_CONTROL: i16 = 0x20;

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field; the whole batch is this plus 12.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}
fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}
fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads the whole-batch length from the first 12 bytes, checking it is sane.
pub(crate) fn total_len_from_prefix(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < LENGTH_PREFIX {
        return Err(BatchError::Truncated {
            need: LENGTH_PREFIX,
            have: buf.len(),
        });
    }
    let batch_length = be_i32(buf, BATCH_LENGTH) as i64;
    let total = batch_length + LENGTH_PREFIX as i64;
    if total < BATCH_HEADER_BYTES as i64 || total > BATCH_BYTES_MAX as i64 {
        return Err(BatchError::BadLength { len: batch_length });
    }
    Ok(total as usize)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which must hold at least the
    /// 61 header bytes). Checks length sanity and magic, not the CRC, and
    /// that the batch holds records (a control batch, which holds none, is
    /// refused: see [`BatchHeader::parse_with_control`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        Self::parse_fields(buf)?.check_records()
    }

    /// [`BatchHeader::parse`] that also accepts a control batch of the
    /// shape Spool writes ([`crate::control_batch`]): the control bit set,
    /// record count 0, `lastOffsetDelta` −1 (so it covers no offsets). For
    /// walking logs in entry mode, which hold such batches; anywhere else a
    /// control batch is corruption or an unsupported client batch.
    pub fn parse_with_control(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = Self::parse_fields(buf)?;
        if !header.is_control() {
            return header.check_records();
        }
        if header.record_count != 0 || header.last_offset_delta != -1 {
            return Err(BatchError::BadRecord {
                index: 0,
                why: "a control batch must have record count 0 and lastOffsetDelta -1",
            });
        }
        Ok(header)
    }

    /// Whether the control bit (attributes bit 5) is set.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// The fields of the header, with length and magic checked.
    fn parse_fields(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                need: BATCH_HEADER_BYTES,
                have: buf.len(),
            });
        }
        total_len_from_prefix(buf)?;
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length: be_i32(buf, BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH),
            magic,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            record_count: be_i32(buf, RECORD_COUNT),
        };
        Ok(header)
    }

    /// The checks of a batch that holds records.
    fn check_records(self) -> Result<BatchHeader, BatchError> {
        if self.record_count < 1 || self.record_count as usize > BATCH_RECORDS_MAX {
            return Err(BatchError::BadRecordCount {
                count: self.record_count as i64,
            });
        }
        if self.last_offset_delta < 0 {
            return Err(BatchError::BadRecord {
                index: 0,
                why: "negative lastOffsetDelta",
            });
        }
        Ok(self)
    }

    /// Size of the whole batch in bytes.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LENGTH_PREFIX
    }

    /// Offset of the last record in the batch (for a control batch, which
    /// covers no offsets, the offset before its base offset).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The offset after this batch (a control batch's own base offset).
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Checks the CRC-32C over `attributes..end` of `batch` (the whole batch).
    pub fn verify_crc(&self, batch: &[u8]) -> Result<(), BatchError> {
        let end = self.total_len();
        if batch.len() < end {
            return Err(BatchError::Truncated {
                need: end,
                have: batch.len(),
            });
        }
        let computed = crc32c::crc32c(&batch[ATTRIBUTES..end]);
        if computed != self.crc {
            return Err(BatchError::CrcMismatch {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }

    /// Refuses features Spool does not implement yet.
    pub fn check_supported(&self) -> Result<(), BatchError> {
        if self.attributes & ATTR_COMPRESSION_MASK != 0 {
            return Err(BatchError::Unsupported("compressed batches"));
        }
        if self.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
            return Err(BatchError::Unsupported("transactional or control batches"));
        }
        Ok(())
    }
}

/// Writes the log-assigned base offset into a batch. The field lies outside the
/// CRC, so the checksum stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch (outside the CRC, like the base offset).
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}
