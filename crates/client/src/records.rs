//! Turning fetched or pushed record batches into [`ConsumedRecord`]s.

use crate::error::ClientError;
use bytes::Bytes;
use spool_batch::{records, split_batches, validate, validate_control, BatchHeader};
use spool_types::ErrorCode;

/// One message as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// The records of some concatenated batches.
#[derive(Debug, Default)]
pub struct DecodedBatches {
    /// Records at or above the asked offset, in offset order.
    pub records: Vec<ConsumedRecord>,
    /// The offset after the last whole batch decoded, if there was one: the
    /// position to read from next.
    pub next_offset: Option<u64>,
    /// The sum of the batches' record counts (what a push delivery costs in
    /// message credit), including records skipped below the asked offset.
    pub batch_records: u64,
}

fn corrupt(topic: &str, partition: u32, why: impl std::fmt::Display) -> ClientError {
    ClientError::local(
        ErrorCode::CorruptData,
        format!("a batch from {topic}/{partition} failed to decode: {why}"),
    )
}

/// The offset after the last whole batch of some concatenated batches, read
/// from their headers alone (nothing is checked or decoded): where a reader
/// may send its next fetch from before it decodes these. `None` if there is
/// no whole batch. [`decode_records`] gives the same `next_offset` when
/// every batch is intact.
pub fn next_offset_after(batches: &[u8]) -> Option<u64> {
    split_batches(batches)
        .map_while(|b| b.ok().and_then(|b| BatchHeader::parse_with_control(b).ok()))
        .last()
        .and_then(|h| u64::try_from(h.next_offset()).ok())
}

/// Decodes whole RecordBatches (as returned by Fetch or pushed by Deliver)
/// and returns the records with offset `>= from_offset`: a fetch returns
/// whole batches, so the first may start before the offset asked for.
///
/// Every batch is fully checked (lengths, CRC, record structure) first; a
/// corrupt one is a `CORRUPT_DATA` error. A trailing incomplete batch is
/// ignored. Keys, values and headers are slices of `batches`, not copies.
pub fn decode_records(
    topic: &str,
    partition: u32,
    batches: &Bytes,
    from_offset: u64,
) -> Result<DecodedBatches, ClientError> {
    let mut out = DecodedBatches::default();
    for batch in split_batches(batches) {
        let batch = batch.map_err(|e| corrupt(topic, partition, e))?;
        let peek =
            BatchHeader::parse_with_control(batch).map_err(|e| corrupt(topic, partition, e))?;
        if peek.is_control() {
            // A replicated log's Raft bookkeeping (a new leader's first
            // entry, a membership change): no records, no offsets. Checked
            // whole like any batch, then skipped, as Kafka's clients skip
            // control batches.
            let header = validate_control(batch).map_err(|e| corrupt(topic, partition, e))?;
            let next = u64::try_from(header.next_offset())
                .map_err(|_| corrupt(topic, partition, "negative offset"))?;
            out.next_offset = Some(out.next_offset.map_or(next, |n: u64| n.max(next)));
            continue;
        }
        let header = validate(batch).map_err(|e| corrupt(topic, partition, e))?;
        let base = u64::try_from(header.base_offset)
            .map_err(|_| corrupt(topic, partition, "negative base offset"))?;
        for record in records(batch, &header) {
            let record = record.map_err(|e| corrupt(topic, partition, e))?;
            let delta = u64::try_from(record.offset_delta)
                .map_err(|_| corrupt(topic, partition, "negative offset delta"))?;
            let offset = base.saturating_add(delta);
            if offset < from_offset {
                continue;
            }
            let slice = |b: Option<&[u8]>| b.map(|b| batches.slice_ref(b));
            out.records.push(ConsumedRecord {
                topic: topic.to_owned(),
                partition,
                offset,
                key: slice(record.key),
                value: slice(record.value),
                headers: record
                    .headers
                    .iter()
                    .map(|h| (h.key.to_owned(), slice(h.value)))
                    .collect(),
                timestamp: header.base_timestamp.saturating_add(record.timestamp_delta),
            });
        }
        out.batch_records += u64::try_from(header.record_count).unwrap_or(0);
        let next = u64::try_from(header.next_offset())
            .map_err(|_| corrupt(topic, partition, "negative offset"))?;
        out.next_offset = Some(out.next_offset.map_or(next, |n: u64| n.max(next)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_batch::{set_base_offset, BatchBuilder, NewRecord};

    fn batch(base: i64, values: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(&NewRecord::value(v.as_bytes(), 1_000))
                .expect("push");
        }
        let mut bytes = b.finish().expect("finish");
        set_base_offset(&mut bytes, base);
        bytes
    }

    #[test]
    fn skips_records_below_the_asked_offset() {
        let mut all = batch(10, &["a", "b", "c"]);
        all.extend(batch(13, &["d"]));
        let all = Bytes::from(all);
        let d = decode_records("t", 0, &all, 11).expect("decode");
        let got: Vec<(u64, &[u8])> = d
            .records
            .iter()
            .map(|r| (r.offset, r.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(got, [(11, &b"b"[..]), (12, b"c"), (13, b"d")]);
        assert_eq!(d.next_offset, Some(14));
        assert_eq!(d.batch_records, 4);
        assert_eq!(d.records[0].timestamp, 1_000);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let mut bytes = batch(0, &["hello"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = decode_records("t", 0, &Bytes::from(bytes), 0).expect_err("corrupt");
        assert_eq!(err.code(), Some(ErrorCode::CorruptData));
        // Garbage and truncation never panic.
        for n in 0..80 {
            let junk = Bytes::from(vec![0xA5u8; n]);
            let _ = decode_records("t", 0, &junk, 0);
        }
    }
}
