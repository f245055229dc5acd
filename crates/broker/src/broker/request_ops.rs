//! Asynchronous request records as the broker runs them: submit, the
//! worker's lease (`running`), complete, fail with retries, callbacks due,
//! expiry.

use super::produce::Writer;
use super::*;
use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use crate::requests::{
    unknown_request, CallbackStatus, RequestChange, RequestRecord, RequestStatus, RequestStore,
    CONTENT_TYPE_HEADER, REQUEST_ID_HEADER, REQUEST_TTL_MS_DEFAULT, RESULT_BYTES_MAX,
    WORKERS_SUBSCRIPTION,
};
use crate::subscription::{BackoffSpec, LeasedMessage, SubscriptionSpec};
use spool_types::ErrorCode;
use std::sync::atomic::Ordering;

/// A request as submitted: the request queue, the payload (`json` when it
/// is JSON) and where its callback goes, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub queue: String,
    pub payload: Vec<u8>,
    pub json: bool,
    pub callback_url: Option<String>,
}

/// How often finished request records are checked for expiry.
pub(super) const REQUEST_EXPIRY_SCAN_MS: i64 = 60_000;

/// The request records and what the broker schedules around them: the
/// store (every change a [`RequestChange`]), callbacks due, expiry.
pub(super) struct Requests {
    store: RequestStore,
    /// Callbacks waiting to be attempted, by (due time, request id).
    callbacks_due: Mutex<BTreeSet<(i64, String)>>,
    /// When records were last checked for expiry.
    last_expiry_ms: AtomicI64,
    /// How long finished request records are kept.
    ttl_ms: AtomicI64,
}

impl Requests {
    /// Opens the store and schedules the callbacks still pending in it.
    pub(super) fn open(path: &Path) -> Result<Requests> {
        let store = RequestStore::open(path)?;
        let pending = store.scan(|r| {
            r.callback
                .as_ref()
                .is_some_and(|c| c.status == CallbackStatus::Pending)
        })?;
        let callbacks_due = pending
            .into_iter()
            .map(|r| (r.callback.map_or(0, |c| c.next_attempt_ms), r.id))
            .collect();
        Ok(Requests {
            store,
            callbacks_due: Mutex::new(callbacks_due),
            last_expiry_ms: AtomicI64::new(0),
            ttl_ms: AtomicI64::new(REQUEST_TTL_MS_DEFAULT),
        })
    }

    pub(super) fn get(&self, id: &str) -> Result<Option<RequestRecord>> {
        self.store.get(id)
    }

    pub(super) fn scan(
        &self,
        keep: impl FnMut(&RequestRecord) -> bool,
    ) -> Result<Vec<RequestRecord>> {
        self.store.scan(keep)
    }

    /// Applies one change durably; the record it left.
    pub(super) fn change(&self, change: RequestChange) -> Result<RequestRecord> {
        let id = change.id().to_owned();
        self.store
            .apply_one(change)?
            .ok_or_else(|| unknown_request(&id))
    }

    /// When a record finishing now expires.
    fn expires_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(self.ttl_ms.load(Ordering::Relaxed))
    }

    fn schedule_callback(&self, at_ms: i64, id: &str) {
        lock(&self.callbacks_due).insert((at_ms, id.to_owned()));
    }

    /// Takes the callbacks due by `now_ms` off the schedule.
    fn take_due(&self, now_ms: i64) -> Vec<(i64, String)> {
        let mut set = lock(&self.callbacks_due);
        let later = set.split_off(&(now_ms + 1, String::new()));
        std::mem::replace(&mut *set, later).into_iter().collect()
    }
}

impl Broker {
    /// Request messages handed to a worker: their records become `running`.
    /// A request queue's message whose record is already final is not handed
    /// out but acknowledged: a record is finished before its message is
    /// acknowledged, so a crash between the two brings such messages back.
    /// Only the request queue's own `workers` subscription leases records;
    /// another subscription on the same topic only reads the messages.
    pub(super) fn mark_running(
        &self,
        topic: &str,
        name: &str,
        messages: Vec<LeasedMessage>,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        if name != WORKERS_SUBSCRIPTION {
            return Ok(messages);
        }
        let mut leased = Vec::new();
        let mut finished = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let id = m
                .headers
                .iter()
                .find(|(k, _)| k == REQUEST_ID_HEADER)
                .and_then(|(_, v)| v.as_deref())
                .and_then(|v| std::str::from_utf8(v).ok());
            let Some(id) = id else {
                out.push(m);
                continue;
            };
            match self.requests.get(id)? {
                Some(r) if r.queue != topic => {}
                Some(r) if r.status.is_final() => {
                    finished.push(m.receipt.clone());
                    continue;
                }
                Some(_) => leased.push(RequestChange::Leased {
                    id: id.to_owned(),
                    attempts: m.deliveries,
                    receipt: m.receipt.clone(),
                    lease_deadline_ms: m.lease_deadline_ms,
                    at_ms: now_ms,
                }),
                None => {}
            }
            out.push(m);
        }
        if !finished.is_empty() {
            self.ack(topic, name, &finished, now_ms)?;
        }
        if !leased.is_empty() {
            // Not waited for: after a crash the lease is gone anyway, and the
            // view turns an expired `running` back into `pending`. A change
            // refused (finished in the meantime) leaves the record final;
            // its message is dropped when it comes back.
            self.requests.store.apply(leased, false)?;
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
        self.submit(queue, payload, json, callback_url, true, now_ms)
    }

    /// [`Broker::submit_request`] to a request queue that exists (its topic
    /// and its `workers` subscription): creates nothing, and answers
    /// `UNKNOWN_TOPIC` or `UNKNOWN_SUBSCRIPTION` for a queue that is not
    /// there.
    pub fn submit_request_existing(&self, r: NewRequest, now_ms: i64) -> Result<RequestRecord> {
        self.submit(&r.queue, r.payload, r.json, r.callback_url, false, now_ms)
    }

    fn submit(
        &self,
        queue: &str,
        payload: Vec<u8>,
        json: bool,
        callback_url: Option<String>,
        create: bool,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        if queue.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
            return Err(BrokerError::new(
                ErrorCode::ReservedTopicName,
                format!("{queue:?}: names beginning \"spool.\" are reserved for system topics"),
            ));
        }
        if create {
            if self.topic(queue).is_err() {
                match self.create_topic(queue, 1, TopicConfig::default(), now_ms) {
                    Ok(()) => {}
                    Err(e) if e.code == ErrorCode::TopicExists => {}
                    Err(e) => return Err(e),
                }
            }
            self.ensure_subscription_as(workers_spec(queue), now_ms)?;
        } else if !self.is_request_queue(queue) {
            return Err(missing_request_queue(self.topic(queue).is_ok(), queue));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let record = RequestRecord {
            id: id.clone(),
            queue: queue.to_owned(),
            status: RequestStatus::Pending,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            expires_ms: self.requests.expires_ms(now_ms),
            result: None,
            error: None,
            callback_url,
            callback: None,
            receipt: None,
            lease_deadline_ms: None,
        };
        let record = self.requests.change(RequestChange::Submitted { record })?;
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
        if let Err(e) = self.produce_as(
            Writer::Server,
            (queue, &Routing::Spread, &b.finish()?),
            now_ms,
        ) {
            // Nothing will ever work on it: take the record back.
            let _ = self
                .requests
                .store
                .apply_one(RequestChange::Withdrawn { id });
            return Err(e);
        }
        Ok(record)
    }

    /// Whether `queue` is a request queue: a topic with a `workers`
    /// subscription.
    pub fn is_request_queue(&self, queue: &str) -> bool {
        self.subscription(queue, WORKERS_SUBSCRIPTION).is_ok()
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
                self.subscription(&r.queue, WORKERS_SUBSCRIPTION)
                    .ok()
                    .and_then(|q| q.lease_deadline(receipt))
            });
            r.lease_deadline_ms = Some(deadline.unwrap_or(0));
        }
        r
    }

    /// The record a worker answers for, refused when it is final or its
    /// lease ran out (the store refuses again if that changes before the
    /// answer is applied).
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

    /// Gives a request its final status: by the worker holding `receipt`,
    /// or by the broker (`receipt` None). Then schedules its callback, wakes
    /// whoever waits for it and, when it failed, tells the side channel.
    pub(super) fn finish_request(
        &self,
        id: &str,
        receipt: Option<String>,
        status: RequestStatus,
        result: Option<serde_json::Value>,
        error: Option<String>,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        let r = self.requests.change(RequestChange::Finished {
            id: id.to_owned(),
            receipt,
            status,
            result,
            error,
            expires_ms: self.requests.expires_ms(now_ms),
            at_ms: now_ms,
        })?;
        if let Some(c) = &r.callback {
            self.requests.schedule_callback(c.next_attempt_ms, &r.id);
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
        let done = self.finish_request(
            id,
            Some(receipt.clone()),
            RequestStatus::Succeeded,
            Some(result),
            None,
            now_ms,
        )?;
        self.settle_request_message(&r.queue, &receipt, now_ms)?;
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
        let r = self.open_request(id, now_ms)?;
        let receipt = r.receipt.clone().unwrap_or_default();
        if retry {
            // The record first, then the message: the nack makes the message
            // ready and wakes waiting workers at once, and the one that takes
            // it marks the record `running`; applied after, `pending` would
            // overwrite that, and the new holder's answer would be refused
            // as not held. (A crash in between leaves a pending record whose
            // message comes back when its lease lapses.)
            let pending = self.requests.change(RequestChange::Retried {
                id: id.to_owned(),
                receipt: receipt.clone(),
                error: error.clone(),
                at_ms: now_ms,
            })?;
            self.nack(
                &r.queue,
                WORKERS_SUBSCRIPTION,
                std::slice::from_ref(&receipt),
                0,
                Some(&error),
                now_ms,
            )?
            .remove(0)?;
            return Ok(pending);
        }
        let done = self.finish_request(
            id,
            Some(receipt.clone()),
            RequestStatus::Failed,
            None,
            Some(error),
            now_ms,
        )?;
        self.settle_request_message(&r.queue, &receipt, now_ms)?;
        Ok(done)
    }

    /// Finished requests whose callback is due now.
    pub fn due_callbacks(&self, now_ms: i64) -> Result<Vec<RequestRecord>> {
        let mut out = Vec::new();
        for (_, id) in self.requests.take_due(now_ms) {
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
        let error = outcome.err();
        let change = RequestChange::CallbackAttempted {
            id: id.to_owned(),
            error: error.clone(),
            retry_at_ms,
            give_up,
            at_ms: now_ms,
        };
        let r = match self.requests.store.apply_one(change) {
            Ok(Some(r)) => r,
            // The record expired and went meanwhile: nothing to record.
            Ok(None) => return Ok(()),
            Err(e) if e.code == ErrorCode::UnknownRequest => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(c) = &r.callback else {
            return Ok(());
        };
        match (c.status, error) {
            (CallbackStatus::Pending, Some(_)) => {
                self.requests.schedule_callback(c.next_attempt_ms, id);
            }
            (CallbackStatus::Failed, Some(e)) if give_up => {
                let event = serde_json::json!({
                    "id": r.id, "callback_url": r.callback_url,
                    "attempts": c.attempts, "error": e,
                });
                self.publish_event("callback_failed", &event, now_ms)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets how long finished request records are kept (from when they finish).
    pub fn set_request_ttl_ms(&self, ttl_ms: i64) {
        self.requests.ttl_ms.store(ttl_ms.max(1), Ordering::Relaxed);
    }

    /// Counts of request records by status: pending, running, succeeded, failed.
    pub fn request_counts(&self) -> Result<[u64; 4]> {
        self.requests.store.counts()
    }

    /// Removes finished records past their expiry (checked once a minute).
    pub(super) fn expire_requests(&self, now_ms: i64) -> Result<()> {
        let last_ms = self.requests.last_expiry_ms.load(Ordering::Relaxed);
        if now_ms - last_ms < REQUEST_EXPIRY_SCAN_MS {
            return Ok(());
        }
        self.requests
            .last_expiry_ms
            .store(now_ms, Ordering::Relaxed);
        let expired: Vec<RequestChange> = self
            .requests
            .scan(|r| r.expires_ms <= now_ms && r.status.is_final())?
            .into_iter()
            .map(|r| RequestChange::Expired {
                id: r.id,
                at_ms: now_ms,
            })
            .collect();
        if !expired.is_empty() {
            self.requests.store.apply(expired, true)?;
        }
        Ok(())
    }
}

/// The answer to a request for a queue that is not there: `UNKNOWN_TOPIC`,
/// or `UNKNOWN_SUBSCRIPTION` for a topic without the `workers`
/// subscription (`topic_exists`).
fn missing_request_queue(topic_exists: bool, queue: &str) -> BrokerError {
    if topic_exists {
        BrokerError::new(
            ErrorCode::UnknownSubscription,
            format!(
                "topic {queue:?} is not a request queue: it has no {WORKERS_SUBSCRIPTION:?} \
                 subscription"
            ),
        )
    } else {
        BrokerError::new(
            ErrorCode::UnknownTopic,
            format!("request queue {queue:?} does not exist"),
        )
    }
}

/// First retry delay of a request queue's `workers` subscription as it is
/// created: a failed request is tried again after 1 s, 2 s, 4 s, 8 s (with
/// the default 5 deliveries, over about 15 s), not five times within
/// milliseconds against the same failing dependency.
pub const WORKERS_BACKOFF_INITIAL_MS: u64 = 1_000;

/// Longest retry delay of a `workers` subscription as it is created.
pub const WORKERS_BACKOFF_MAX_MS: u64 = 60_000;

/// The settings a request queue's `workers` subscription is created with:
/// the defaults, with an exponential backoff.
pub fn workers_spec(queue: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        backoff: BackoffSpec::Exponential {
            initial_ms: WORKERS_BACKOFF_INITIAL_MS,
            max_ms: WORKERS_BACKOFF_MAX_MS,
        },
        ..SubscriptionSpec::new(queue, WORKERS_SUBSCRIPTION)
    }
}
