//! Dead letters and the side channel `spool.errors`: messages past their
//! delivery limit copied to the dead-letter topic, redrive back.

use super::produce::Writer;
use super::*;
use crate::error::{BrokerError, Result};
use crate::records::{record_at, walk_records, RecordAt, Walk};
use crate::requests::{RequestStatus, REQUEST_ID_HEADER};
use crate::subscription::state::DeadLetter;
use crate::subscription::{Subscription, SubscriptionSpec};
use spool_types::ErrorCode;

/// Where a dead letter's copy went (partition, offset), or why it could not go.
type CopyOutcome = (Option<(u32, i64)>, Option<String>);

impl Broker {
    /// Appends one JSON event to the side channel (`spool.errors`), durably.
    /// Every event carries `time` (RFC 3339, UTC), `time_ms` and `kind`,
    /// plus the fields given.
    pub fn publish_event(&self, kind: &str, fields: &serde_json::Value, now_ms: i64) -> Result<()> {
        let mut event =
            serde_json::json!({"time": rfc3339_utc(now_ms), "time_ms": now_ms, "kind": kind});
        if let (Some(e), Some(f)) = (event.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                e.insert(k.clone(), v.clone());
            }
        }
        let mut b = spool_batch::BatchBuilder::new();
        let value = serde_json::to_vec(&event)
            .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
        b.push(&spool_batch::NewRecord {
            key: Some(kind.as_bytes().to_vec()),
            value: Some(value),
            headers: vec![],
            timestamp_ms: now_ms,
        })?;
        let batch = b.finish()?;
        self.produce_as(
            Writer::Server,
            (EVENTS_TOPIC, &Routing::Partition(0), &batch),
            now_ms,
        )?;
        Ok(())
    }

    /// Copies failed-too-often messages to their dead-letter topic (with
    /// headers naming the source) and writes a side-channel event for each.
    pub(super) fn process_dead_letters(&self, q: &Subscription, now_ms: i64) -> Result<()> {
        let spec = q.spec();
        let Ok(topic) = self.topic(&spec.topic) else {
            // Deleted since this tick listed its subscriptions: the
            // subscription goes with it, nothing to keep.
            return Ok(());
        };
        let durability = topic.config().durability.to_log();
        let dead = q.housekeeping(durability, now_ms)?;
        if dead.is_empty() {
            return Ok(());
        }
        for (partition, letter) in dead {
            self.dead_letter(q, &spec, &topic, partition, &letter, now_ms)?;
        }
        Ok(())
    }

    /// Dead-letters one message: its copy to the dead-letter topic, its
    /// request record (if any) failed, its lease marked done, an event.
    /// Once the copy is stored the lease is marked done whatever fails
    /// after it, so no tick copies a message twice; what failed is logged
    /// and returned. (A crash between the copy and the mark still copies
    /// it again: dead-letter copies are at least once.)
    fn dead_letter(
        &self,
        q: &Subscription,
        spec: &SubscriptionSpec,
        topic: &Topic,
        partition: u32,
        letter: &DeadLetter,
        now_ms: i64,
    ) -> Result<()> {
        let log = &topic.partitions[partition as usize];
        let found = record_at(log, letter.offset, |at| {
            let request_id = at
                .record
                .header(REQUEST_ID_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned);
            (request_id, dead_letter_copy(spec, partition, letter, &at))
        })?;
        let (request_id, copy) = found.map_or((None, None), |(id, c)| (id, Some(c)));
        let (dlq_offset, copy_error) = match (&spec.dead_letter_topic, copy) {
            (Some(dlq), Some(record)) if self.topic(dlq).is_ok() => {
                self.store_dead_letter_copy(dlq, &record, now_ms)?
            }
            _ => (None, None),
        };
        let mut failed_after = None;
        // The record first, then the message (as in complete_request): a
        // crash in between dead-letters the message again, and the record
        // is final already.
        if let Some(id) = request_id.as_deref() {
            if let Err(e) = self.fail_dead_lettered_request(id, letter, now_ms) {
                tracing::error!(
                    request = id,
                    "dead-lettered request's record not failed: {e}"
                );
                failed_after.get_or_insert(e);
            }
        }
        q.dead_lettered(partition, letter.offset, now_ms)?;
        tracing::warn!(topic = %spec.topic, subscription = %spec.name, partition, offset = letter.offset, deliveries = letter.deliveries, "message dead-lettered");
        let event = serde_json::json!({
            "topic": spec.topic,
            "subscription": spec.name,
            "partition": partition,
            "offset": letter.offset,
            "deliveries": letter.deliveries,
            "error": letter.last_error,
            "dead_letter_topic": spec.dead_letter_topic,
            "dead_letter_partition": dlq_offset.map(|d| d.0),
            "dead_letter_offset": dlq_offset.map(|d| d.1),
            "copy_error": copy_error,
        });
        if let Err(e) = self.publish_event("dead_letter", &event, now_ms) {
            tracing::error!(topic = %spec.topic, subscription = %spec.name, partition, offset = letter.offset, "dead_letter event not written: {e}");
            failed_after.get_or_insert(e);
        }
        failed_after.map_or(Ok(()), Err)
    }

    /// Stores a dead letter's copy: where it went, or why it could not go
    /// (a copy that cannot be stored, e.g. too large with the extra
    /// headers, must not wedge the subscription: it is reported instead).
    /// A full dead-letter topic or disk is an error: nothing was stored,
    /// and the next tick tries again.
    fn store_dead_letter_copy(
        &self,
        dlq: &str,
        record: &spool_batch::NewRecord,
        now_ms: i64,
    ) -> Result<CopyOutcome> {
        let routing = record.key.clone().map_or(Routing::Spread, Routing::Key);
        let mut b = spool_batch::BatchBuilder::new();
        let copied = b
            .push(record)
            .map_err(BrokerError::from)
            .and_then(|()| b.finish().map_err(BrokerError::from))
            .and_then(|batch| self.produce_as(Writer::Server, (dlq, &routing, &batch), now_ms));
        match copied {
            Ok(produced) => Ok((Some((produced.partition, produced.base_offset)), None)),
            Err(e) if e.code == ErrorCode::QueueFull || e.code == ErrorCode::StorageFull => Err(e),
            Err(e) => Ok((None, Some(e.to_string()))),
        }
    }

    /// Fails the request record of a dead-lettered message, unless its
    /// worker finished it meanwhile (that answer stands).
    fn fail_dead_lettered_request(&self, id: &str, letter: &DeadLetter, now_ms: i64) -> Result<()> {
        let Some(r) = self.requests.get(id)? else {
            return Ok(());
        };
        if r.status.is_final() {
            return Ok(());
        }
        let error = letter
            .last_error
            .clone()
            .unwrap_or_else(|| "failed too many times".into());
        let failed = RequestStatus::Failed;
        match self.finish_request(id, None, failed, None, Some(error), now_ms) {
            Err(e) if e.code == ErrorCode::RequestFinished => Ok(()),
            done => done.map(drop),
        }
    }

    /// Moves dead letters of `topic`/`name` back to their source topic: every
    /// copy in the subscription's dead-letter topic not yet redriven is
    /// republished (without the dead-letter headers). Returns how many.
    pub fn redrive(&self, topic: &str, name: &str, now_ms: i64) -> Result<u64> {
        let spec = self.subscription(topic, name)?.spec();
        let Some(dlq) = spec.dead_letter_topic.clone() else {
            return Err(BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("subscription {name:?} on {topic:?} has no dead-letter topic"),
            ));
        };
        let dlq_topic = self.topic(&dlq)?;
        // Redrive progress is kept like a consumer group's committed offsets.
        let cursor = format!("spool.redrive.{topic}.{name}");
        let mut moved = 0u64;
        for (p, log) in dlq_topic.partitions.iter().enumerate() {
            let tp = (dlq.clone(), p as u32);
            let start = self
                .groups
                .committed(&cursor, &tp)
                .unwrap_or(0)
                .max(log.stats().start_offset);
            let offset = walk_records(log, start, 1 << 20, |at| {
                let r = &at.record;
                let ours = r.header(DLQ_TOPIC_HEADER) == Some(topic.as_bytes())
                    && r.header(DLQ_SUBSCRIPTION_HEADER) == Some(name.as_bytes());
                if !ours {
                    return Ok(Walk::Continue);
                }
                let mut copy = spool_batch::NewRecord::copy_of(r, now_ms);
                copy.headers
                    .retain(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX));
                let mut b = spool_batch::BatchBuilder::new();
                b.push(&copy)?;
                let routing = r.key.map_or(Routing::Spread, |k| Routing::Key(k.to_vec()));
                self.produce_as(Writer::Server, (topic, &routing, &b.finish()?), now_ms)?;
                moved += 1;
                Ok(Walk::Continue)
            })?;
            if offset > start {
                self.groups.commit(&cursor, &[(tp, offset)], now_ms)?;
            }
        }
        Ok(moved)
    }
}

/// The copy of a dead letter that goes to the dead-letter topic: the
/// message with headers naming where it came from and why (replacing any
/// from an earlier trip through a dead-letter topic).
fn dead_letter_copy(
    spec: &SubscriptionSpec,
    partition: u32,
    letter: &DeadLetter,
    at: &RecordAt<'_>,
) -> spool_batch::NewRecord {
    let mut copy = spool_batch::NewRecord::copy_of(&at.record, at.timestamp_ms);
    copy.headers
        .retain(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX));
    let mut add = |k: &str, v: String| copy.headers.push((k.to_owned(), Some(v.into_bytes())));
    add(DLQ_TOPIC_HEADER, spec.topic.clone());
    add(DLQ_SUBSCRIPTION_HEADER, spec.name.clone());
    add(DLQ_PARTITION_HEADER, partition.to_string());
    add(DLQ_OFFSET_HEADER, letter.offset.to_string());
    add(DLQ_DELIVERIES_HEADER, letter.deliveries.to_string());
    add(
        DLQ_ERROR_HEADER,
        letter.last_error.clone().unwrap_or_default(),
    );
    copy
}
