//! Asynchronous request records as the broker runs them: submit, the
//! worker's lease (`running`), complete, fail with retries, callbacks due,
//! expiry.

use super::*;
use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use crate::queue::LeasedMessage;
use crate::requests::{
    unknown_request, CallbackState, CallbackStatus, RequestRecord, RequestStatus,
    CONTENT_TYPE_HEADER, REQUEST_ID_HEADER, RESULT_BYTES_MAX, WORKERS_SUBSCRIPTION,
};
use spool_types::ErrorCode;
use std::sync::atomic::Ordering;

/// How often finished request records are checked for expiry.
pub(super) const REQUEST_EXPIRY_SCAN_MS: i64 = 60_000;

impl Broker {
    /// Request messages handed to a worker: their records become `running`.
    /// A request queue's message whose record is already final is not handed
    /// out but acknowledged: a record is finished before its message is
    /// acknowledged, so a crash between the two brings such messages back.
    pub(super) fn mark_running(
        &self,
        topic: &str,
        name: &str,
        messages: Vec<LeasedMessage>,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let mut updated = Vec::new();
        let mut finished = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let Some(id) = m
                .headers
                .iter()
                .find(|(k, _)| k == REQUEST_ID_HEADER)
                .and_then(|(_, v)| v.as_ref())
            else {
                out.push(m);
                continue;
            };
            let Ok(id) = std::str::from_utf8(id) else {
                out.push(m);
                continue;
            };
            match self.requests.get(id)? {
                Some(r)
                    if r.status.is_final() && name == WORKERS_SUBSCRIPTION && r.queue == topic =>
                {
                    finished.push(m.receipt.clone());
                    continue;
                }
                // Final, but seen through another subscription: not ours to drop.
                Some(r) if r.status.is_final() => {}
                Some(mut r) => {
                    r.status = RequestStatus::Running;
                    r.attempts = m.deliveries;
                    r.receipt = Some(m.receipt.clone());
                    r.lease_deadline_ms = Some(m.lease_deadline_ms);
                    r.updated_ms = now_ms;
                    updated.push(r);
                }
                None => {}
            }
            out.push(m);
        }
        if !finished.is_empty() {
            self.ack(topic, name, &finished, now_ms)?;
        }
        if !updated.is_empty() {
            // Not waited for: after a crash the lease is gone anyway, and the
            // view turns an expired `running` back into `pending`.
            let refs: Vec<&RequestRecord> = updated.iter().collect();
            self.requests.put(&refs, false)?;
        }
        Ok(out)
    }

    /// Accepts a request: stores its record (durably) and puts its payload on
    /// the request queue `queue` (created with defaults on first use, with a
    /// `workers` queue subscription). Returns the pending record.
    pub fn submit_request(
        &self,
        queue: &str,
        payload: Vec<u8>,
        json: bool,
        callback_url: Option<String>,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        if queue.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
            return Err(BrokerError::new(
                ErrorCode::ReservedTopicName,
                format!("{queue:?}: names beginning \"spool.\" are reserved for system topics"),
            ));
        }
        if self.topic(queue).is_err() {
            match self.create_topic(queue, 1, TopicConfig::default(), now_ms) {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::TopicExists => {}
                Err(e) => return Err(e),
            }
        }
        self.ensure_queue(queue, WORKERS_SUBSCRIPTION, now_ms)?;
        let id = uuid::Uuid::now_v7().to_string();
        let record = RequestRecord {
            id: id.clone(),
            queue: queue.to_owned(),
            status: RequestStatus::Pending,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.request_ttl_ms.load(Ordering::Relaxed)),
            result: None,
            error: None,
            callback_url,
            callback: None,
            receipt: None,
            lease_deadline_ms: None,
        };
        self.requests.put(&[&record], true)?;
        let mut headers = vec![(REQUEST_ID_HEADER.to_owned(), Some(id.clone().into_bytes()))];
        if json {
            headers.push((
                CONTENT_TYPE_HEADER.to_owned(),
                Some(b"application/json".to_vec()),
            ));
        }
        let mut b = spool_batch::BatchBuilder::new();
        b.push(&spool_batch::NewRecord {
            key: None,
            value: Some(payload),
            headers,
            timestamp_ms: now_ms,
        })?;
        if let Err(e) = self.produce(queue, &Routing::Spread, &b.finish()?, now_ms) {
            // Nothing will ever work on it: take the record back.
            let _ = self.requests.remove(&[id]);
            return Err(e);
        }
        Ok(record)
    }

    /// The record as a client sees it now.
    pub fn get_request(&self, id: &str, now_ms: i64) -> Result<RequestRecord> {
        let r = self.requests.get(id)?.ok_or_else(|| unknown_request(id))?;
        Ok(self.live(r).view(now_ms))
    }

    /// Refreshes a running record's lease deadline from its queue, where
    /// extensions are recorded; a lease that is no longer current reads as
    /// expired.
    pub(super) fn live(&self, mut r: RequestRecord) -> RequestRecord {
        if r.status == RequestStatus::Running {
            let deadline = r.receipt.as_deref().and_then(|receipt| {
                self.queue(&r.queue, WORKERS_SUBSCRIPTION)
                    .ok()
                    .and_then(|q| q.lease_deadline(receipt))
            });
            r.lease_deadline_ms = Some(deadline.unwrap_or(0));
        }
        r
    }

    pub(super) fn open_request(&self, id: &str, now_ms: i64) -> Result<RequestRecord> {
        let r = self.live(self.requests.get(id)?.ok_or_else(|| unknown_request(id))?);
        if r.status.is_final() {
            let how = if r.status == RequestStatus::Succeeded {
                "succeeded"
            } else {
                "failed"
            };
            return Err(BrokerError::new(
                ErrorCode::RequestFinished,
                format!("request {id} already {how}; nothing changed"),
            ));
        }
        if r.view(now_ms).status != RequestStatus::Running {
            return Err(BrokerError::new(
                ErrorCode::LeaseExpired,
                format!("request {id} is not held by a worker (its lease expired or it was not received yet); nothing changed"),
            ));
        }
        Ok(r)
    }

    pub(super) fn finish_request(
        &self,
        mut r: RequestRecord,
        status: RequestStatus,
        result: Option<serde_json::Value>,
        error: Option<String>,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        r.status = status;
        r.expires_ms = now_ms.saturating_add(self.request_ttl_ms.load(Ordering::Relaxed));
        r.result = result;
        r.error = error;
        r.updated_ms = now_ms;
        r.receipt = None;
        r.lease_deadline_ms = None;
        if r.callback_url.is_some() {
            r.callback = Some(CallbackState {
                status: CallbackStatus::Pending,
                attempts: 0,
                next_attempt_ms: now_ms,
                first_attempt_ms: None,
                last_error: None,
            });
        }
        self.requests.put(&[&r], true)?;
        if r.callback.is_some() {
            lock(&self.callbacks_due).insert((now_ms, r.id.clone()));
        }
        if let Some(l) = self.listener() {
            l.request_finished(&r.id);
        }
        if status == RequestStatus::Failed {
            let event = serde_json::json!({
                "id": r.id, "queue": r.queue,
                "attempts": r.attempts, "error": r.error,
            });
            self.publish_event("request_failed", &event, now_ms)?;
        }
        Ok(r)
    }

    /// A worker finished the request: stores the result, then acknowledges
    /// its message. In this order a crash in between leaves a finished record
    /// whose message comes back and is dropped by [`Broker::receive`]; the
    /// other order could leave the message done and the record never final.
    pub fn complete_request(
        &self,
        id: &str,
        result: serde_json::Value,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        let size = result.to_string().len();
        if size > RESULT_BYTES_MAX {
            return Err(BrokerError::new(
                ErrorCode::MessageTooLarge,
                format!("result is {size} bytes; the maximum is {RESULT_BYTES_MAX}"),
            ));
        }
        let r = self.open_request(id, now_ms)?;
        let receipt = r.receipt.clone().unwrap_or_default();
        let queue = r.queue.clone();
        let done = self.finish_request(r, RequestStatus::Succeeded, Some(result), None, now_ms)?;
        self.settle_request_message(&queue, &receipt, now_ms)?;
        Ok(done)
    }

    /// Acknowledges a finished request's message. A lease that ran out in the
    /// meantime is fine: the message comes back and `receive` drops it.
    pub(super) fn settle_request_message(
        &self,
        queue: &str,
        receipt: &str,
        now_ms: i64,
    ) -> Result<()> {
        let results = self.ack(
            queue,
            WORKERS_SUBSCRIPTION,
            std::slice::from_ref(&receipt.to_owned()),
            now_ms,
        )?;
        for r in results {
            if let Err(e) = r {
                tracing::debug!(%queue, "finished request's message not acknowledged now: {e}");
            }
        }
        Ok(())
    }

    /// A worker failed the request: retried with the queue's backoff when
    /// `retry` (until max deliveries, then failed), otherwise failed for good.
    pub fn fail_request(
        &self,
        id: &str,
        error: &str,
        retry: bool,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        let error: String = error.chars().take(RESULT_BYTES_MAX / 4).collect();
        let mut r = self.open_request(id, now_ms)?;
        let receipt = r.receipt.clone().unwrap_or_default();
        if retry {
            // The record first, then the message: the nack makes the message
            // ready and wakes waiting workers at once, and the one that takes
            // it marks the record `running`; written after, `pending` would
            // overwrite that, and the new holder's answer would be refused
            // as not held. (A crash in between leaves a pending record whose
            // message comes back when its lease lapses.)
            r.status = RequestStatus::Pending;
            r.error = Some(error.clone());
            r.receipt = None;
            r.lease_deadline_ms = None;
            r.updated_ms = now_ms;
            self.requests.put(&[&r], true)?;
            self.nack(
                &r.queue,
                WORKERS_SUBSCRIPTION,
                std::slice::from_ref(&receipt),
                0,
                Some(&error),
                now_ms,
            )?
            .remove(0)?;
            return Ok(r);
        }
        let queue = r.queue.clone();
        let done = self.finish_request(r, RequestStatus::Failed, None, Some(error), now_ms)?;
        self.settle_request_message(&queue, &receipt, now_ms)?;
        Ok(done)
    }

    /// Finished requests whose callback is due now.
    pub fn due_callbacks(&self, now_ms: i64) -> Result<Vec<RequestRecord>> {
        let due: Vec<(i64, String)> = {
            let mut set = lock(&self.callbacks_due);
            let later = set.split_off(&(now_ms + 1, String::new()));
            std::mem::replace(&mut *set, later).into_iter().collect()
        };
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(r) = self.requests.get(&id)? {
                if r.callback
                    .as_ref()
                    .is_some_and(|c| c.status == CallbackStatus::Pending)
                {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Records a callback attempt. A failure is retried at `retry_at_ms`
    /// unless `give_up`, which marks the callback failed and writes a
    /// side-channel event.
    pub fn callback_outcome(
        &self,
        id: &str,
        outcome: std::result::Result<(), String>,
        retry_at_ms: i64,
        give_up: bool,
        now_ms: i64,
    ) -> Result<()> {
        let Some(mut r) = self.requests.get(id)? else {
            return Ok(());
        };
        let Some(c) = r.callback.as_mut() else {
            return Ok(());
        };
        c.attempts += 1;
        c.first_attempt_ms.get_or_insert(now_ms);
        let mut event = None;
        match outcome {
            Ok(()) => {
                c.status = CallbackStatus::Delivered;
                c.last_error = None;
            }
            Err(e) if give_up => {
                c.status = CallbackStatus::Failed;
                event = Some(serde_json::json!({
                    "id": r.id, "callback_url": r.callback_url,
                    "attempts": c.attempts, "error": e,
                }));
                c.last_error = Some(e);
            }
            Err(e) => {
                c.last_error = Some(e);
                c.next_attempt_ms = retry_at_ms;
                lock(&self.callbacks_due).insert((retry_at_ms, r.id.clone()));
            }
        }
        self.requests.put(&[&r], true)?;
        if let Some(event) = event {
            self.publish_event("callback_failed", &event, now_ms)?;
        }
        Ok(())
    }

    /// Sets how long finished request records are kept (from when they finish).
    pub fn set_request_ttl_ms(&self, ttl_ms: i64) {
        self.request_ttl_ms.store(ttl_ms.max(1), Ordering::Relaxed);
    }

    /// Counts of request records by status: pending, running, succeeded, failed.
    pub fn request_counts(&self) -> Result<[u64; 4]> {
        self.requests.counts()
    }

    /// Removes finished records past their expiry (checked once a minute).
    pub(super) fn expire_requests(&self, now_ms: i64) -> Result<()> {
        if now_ms - self.last_expiry_ms.load(Ordering::Relaxed) < REQUEST_EXPIRY_SCAN_MS {
            return Ok(());
        }
        self.last_expiry_ms.store(now_ms, Ordering::Relaxed);
        let expired: Vec<String> = self
            .requests
            .scan(|r| r.expires_ms <= now_ms && r.status.is_final())?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if !expired.is_empty() {
            self.requests.remove(&expired)?;
        }
        Ok(())
    }
}
