//! Control batches: a batch with the control bit set and no records, whose
//! bytes after the 61-byte header are an opaque body. Spool writes them only
//! into logs in entry mode, as the Raft entries that carry no client data
//! (a new leader's blank entry, a membership change). They cover no offsets
//! (record count 0, `lastOffsetDelta` −1), so client offsets stay dense.
//! [`crate::validate`], which checks client input, refuses them.

use crate::header::ATTR_CONTROL;
use crate::layout::*;
use crate::{BatchError, BatchHeader, MAGIC_V2};
use bytes::BufMut;
use spool_types::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};

/// Encodes a control batch holding `body` (CRC-32C over attributes..end, as
/// for any batch). Its base offset is 0 and its leader epoch −1 until a log
/// writes its own into the copy it stores; its timestamps are `timestamp_ms`.
pub fn control_batch(body: &[u8], timestamp_ms: i64) -> Result<Vec<u8>, BatchError> {
    let total = BATCH_HEADER_BYTES + body.len();
    if total > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge {
            len: total,
            max: BATCH_BYTES_MAX,
        });
    }
    let mut buf = Vec::with_capacity(total);
    buf.put_i64(0); // base offset: assigned by the log
    buf.put_i32((total - LENGTH_PREFIX) as i32);
    buf.put_i32(-1); // partition leader epoch: the log writes the entry's term
    buf.put_i8(MAGIC_V2);
    buf.put_u32(0); // CRC, filled below
    buf.put_i16(ATTR_CONTROL);
    buf.put_i32(-1); // lastOffsetDelta: covers no offsets
    buf.put_i64(timestamp_ms);
    buf.put_i64(timestamp_ms);
    buf.put_i64(-1); // producer id
    buf.put_i16(-1); // producer epoch
    buf.put_i32(-1); // base sequence
    buf.put_i32(0); // record count
    buf.extend_from_slice(body);
    let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// Fully checks one control batch occupying exactly `buf`: framing, magic,
/// the control shape (no records, `lastOffsetDelta` −1), no compression or
/// transactional bit, and the CRC-32C. The body is not interpreted.
pub fn validate_control(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge {
            len: buf.len(),
            max: BATCH_BYTES_MAX,
        });
    }
    let header = BatchHeader::parse_with_control(buf)?;
    if !header.is_control() {
        return Err(BatchError::BadRecord {
            index: 0,
            why: "not a control batch",
        });
    }
    if header.total_len() != buf.len() {
        return Err(BatchError::BadLength {
            len: header.batch_length as i64,
        });
    }
    if header.attributes & !ATTR_CONTROL != 0 {
        return Err(BatchError::Unsupported(
            "control batches with other attribute bits",
        ));
    }
    header.verify_crc(buf)?;
    Ok(header)
}

/// The body of a control batch: the bytes after its header, up to the end
/// the header gives (not records: [`crate::records`] is for data batches). `None` if `header` is not a control batch's or `batch`
/// is shorter than the header says.
pub fn control_body<'a>(batch: &'a [u8], header: &BatchHeader) -> Option<&'a [u8]> {
    if !header.is_control() {
        return None;
    }
    batch.get(BATCH_HEADER_BYTES..header.total_len())
}
