//! Queued records and the batches they are encoded into: a batch being
//! filled ([`Batch`]), one in flight ([`Sent`]), and how a refused batch is
//! split to be sent again in halves.

use super::delivery::Reply;
use crate::error::ClientError;
use bytes::Bytes;
use spool_batch::{BatchBuilder, NewRecord, RecordParts};
use spool_proto as p;
use std::time::Duration;
use tokio::time::Instant;

/// Where a batch goes: one partition, or the server picks one for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    Partition(u32),
    Spread,
}

/// A message's record, kept as the caller's buffers until it is encoded
/// into its batch (one copy, not two).
pub(super) struct QueuedRecord {
    pub(super) key: Option<Bytes>,
    pub(super) value: Bytes,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
    pub(super) timestamp_ms: i64,
}

impl QueuedRecord {
    pub(super) fn parts(&self) -> RecordParts<'_> {
        RecordParts {
            key: self.key.as_deref(),
            value: Some(&self.value),
            headers: &self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A message on its way to the worker: routed, checked and sized.
pub(super) struct Queued {
    pub(super) topic: String,
    pub(super) slot: Slot,
    pub(super) record: QueuedRecord,
    /// Encoded size of `record` first in a batch; later in a batch its
    /// offset and timestamp deltas take a few bytes more.
    pub(super) size: usize,
    pub(super) reply: Reply,
}

/// A batch being filled or waiting to go.
pub(super) struct Batch {
    pub(super) topic: String,
    pub(super) slot: Slot,
    pub(super) builder: BatchBuilder,
    pub(super) replies: Vec<Reply>,
    pub(super) deadline: Instant,
    /// The batch's number; the halves of a split batch keep it.
    pub(super) seq: u64,
    /// The exact bytes sent before, to send again: an idempotent
    /// producer's batch keeps its sequence numbers across retries (the
    /// builder is then empty).
    pub(super) resend: Option<Bytes>,
}

/// A sent batch's waiters and its answer.
pub(super) struct Sent {
    pub(super) topic: String,
    pub(super) slot: Slot,
    pub(super) seq: u64,
    /// When it was sent among all the producer's requests: a partition's
    /// requests are stored in this order (the halves of a split batch
    /// share its `seq`, and answers may come in any order).
    pub(super) sent_order: u64,
    pub(super) replies: Vec<Reply>,
    /// The encoded batch (shared with the request, not copied), kept to
    /// split it if the topic is full.
    pub(super) batch: Bytes,
}

/// A topic and slot: the key of at most one open batch, and the unit of
/// per-partition order and in-flight limits.
pub(super) type SlotKey = (String, Slot);

/// Encodes a queued message into `batch` and keeps its waiter (or answers
/// it with the error). Returns whether the batch is now full.
pub(super) fn push(batch: &mut Batch, q: Queued, max_records: usize, max_bytes: usize) -> bool {
    match batch.builder.push_parts(&q.record.parts()) {
        Ok(()) => batch.replies.push(q.reply),
        Err(e) => q
            .reply
            .send(Err(ClientError::local(e.code(), e.to_string()))),
    }
    batch.builder.len() >= max_records || batch.builder.size_bytes() >= max_bytes
}

/// Splits a sent batch into two batches of its records (first half, second
/// half), each with its messages' waiters. Gives the batch back if it cannot
/// be re-read.
pub(super) fn split(mut sent: Sent, linger: Duration) -> Result<(Batch, Batch), Sent> {
    let Some(records) = reread(&sent.batch) else {
        return Err(sent);
    };
    if records.len() != sent.replies.len() || records.len() < 2 {
        return Err(sent);
    }
    let mid = records.len() / 2;
    let build = |part: &[NewRecord]| -> Option<BatchBuilder> {
        let mut builder = BatchBuilder::new();
        for r in part {
            builder.push(r).ok()?;
        }
        Some(builder)
    };
    let (Some(first), Some(second)) = (build(&records[..mid]), build(&records[mid..])) else {
        return Err(sent);
    };
    let second_replies = sent.replies.split_off(mid);
    let deadline = Instant::now() + linger;
    let half = |builder, replies| Batch {
        topic: sent.topic.clone(),
        slot: sent.slot,
        builder,
        replies,
        deadline,
        seq: sent.seq,
        resend: None,
    };
    let first = half(first, std::mem::take(&mut sent.replies));
    let second = half(second, second_replies);
    Ok((first, second))
}

/// A sent batch made ready to go again whole, with its waiters (for a
/// batch held back while an earlier one of its partition is retried).
/// Gives the batch back if it cannot be re-read.
pub(super) fn unsent(sent: Sent, linger: Duration) -> Result<Batch, Sent> {
    let Some(records) = reread(&sent.batch) else {
        return Err(sent);
    };
    let mut builder = BatchBuilder::new();
    if records.len() != sent.replies.len() || records.iter().any(|r| builder.push(r).is_err()) {
        return Err(sent);
    }
    Ok(Batch {
        topic: sent.topic,
        slot: sent.slot,
        builder,
        replies: sent.replies,
        deadline: Instant::now() + linger,
        seq: sent.seq,
        resend: None,
    })
}

/// A sent batch to go again exactly as it was sent (same bytes, so the
/// same producer sequence numbers).
pub(super) fn resend(sent: Sent) -> Batch {
    Batch {
        topic: sent.topic,
        slot: sent.slot,
        builder: BatchBuilder::new(),
        replies: sent.replies,
        deadline: Instant::now(),
        seq: sent.seq,
        resend: Some(sent.batch),
    }
}

/// How many records a produce answer's offset range covers.
pub(super) fn answered(produced: &p::Produced) -> Option<u64> {
    produced
        .last_offset
        .checked_sub(produced.base_offset)
        .map(|d| d.saturating_add(1))
}

/// The records of one encoded batch, as they were queued.
fn reread(batch: &[u8]) -> Option<Vec<NewRecord>> {
    let header = spool_batch::validate(batch).ok()?;
    let mut records = Vec::new();
    for record in spool_batch::records(batch, &header) {
        let r = record.ok()?;
        let timestamp_ms = header.base_timestamp.saturating_add(r.timestamp_delta);
        records.push(NewRecord::copy_of(&r, timestamp_ms));
    }
    Some(records)
}
