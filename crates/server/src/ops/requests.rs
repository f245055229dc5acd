//! Asynchronous requests: submit, read (optionally waiting until final),
//! complete and fail.

use super::Ops;
use crate::auth::{Caller, Need, RecordAccess};
use spool_broker::requests::RequestRecord;
use spool_broker::BrokerError;
use spool_types::limits::FETCH_WAIT_MS_MAX;
use spool_types::{ErrorCode, NameError, TopicName};
use std::time::Duration;
use tokio::time::Instant;

/// A request as submitted.
pub struct Submission {
    pub queue: String,
    pub payload: Vec<u8>,
    /// The payload is JSON (workers are told so).
    pub json: bool,
    pub callback_url: Option<String>,
}

impl Ops {
    /// Accepts a request: its record is stored durably and its payload put
    /// on the request queue. Answers the pending record.
    ///
    /// Submitting needs produce on the queue; a queue that does not exist
    /// yet (a topic and its `workers` subscription, descriptors held for
    /// good) is created only for an admin (or with authentication off): a
    /// produce grant on a pattern must not let its holder create queues
    /// without end.
    pub async fn submit_request(
        &self,
        caller: &Caller,
        s: Submission,
    ) -> Result<RequestRecord, BrokerError> {
        caller.check(Need::Produce(&s.queue))?;
        self.check_submission(&s)?;
        if caller.may(Need::Admin) {
            return self
                .on_broker(move |b, now| {
                    b.submit_request(&s.queue, s.payload, s.json, s.callback_url, now)
                })
                .await;
        }
        let queue = s.queue.clone();
        let submitted = self
            .on_broker(move |b, now| {
                let request = spool_broker::NewRequest {
                    queue: s.queue,
                    payload: s.payload,
                    json: s.json,
                    callback_url: s.callback_url,
                };
                b.submit_request_existing(request, now)
            })
            .await;
        submitted.map_err(|e| match e.code {
            ErrorCode::UnknownTopic | ErrorCode::UnknownSubscription => BrokerError::new(
                ErrorCode::Forbidden,
                format!(
                    "{}, and token {:?} may not create it: creating a request queue needs an \
                     admin token (an admin's first request creates it, as do `spool topic create \
                     {queue}` and `spool subscription create {queue} workers`)",
                    e.message,
                    caller.name().unwrap_or_default()
                ),
            ),
            _ => e,
        })
    }

    fn check_submission(&self, s: &Submission) -> Result<(), BrokerError> {
        // A user-facing name: `spool.` topics are the server's own, and a
        // request must never land in one just because it already exists.
        if let Err(e) = TopicName::new(&s.queue) {
            let code = match e {
                NameError::Reserved => ErrorCode::ReservedTopicName,
                _ => ErrorCode::InvalidTopicName,
            };
            return Err(BrokerError::new(
                code,
                format!("request queue {:?}: {e}", s.queue),
            ));
        }
        if let Some(url) = &s.callback_url {
            self.allow
                .check(url)
                .map_err(|e| BrokerError::invalid(format!("callback_url: {e}")))?;
        }
        if s.json {
            // Workers are told the payload is JSON: hold the submitter to it.
            serde_json::from_slice::<serde::de::IgnoredAny>(&s.payload).map_err(|e| {
                BrokerError::invalid(format!(
                    "the payload is marked JSON but does not parse: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The record now, or — with `wait_ms` — once it is final, the wait is
    /// over or the server shuts down. The broker announces finished records,
    /// so the wait reads the record only when it may have changed. A caller
    /// whose token is revoked meanwhile is refused at once.
    pub async fn get_request(
        &self,
        caller: &Caller,
        id: &str,
        wait_ms: u64,
    ) -> Result<RequestRecord, BrokerError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
        loop {
            // A revoked caller is refused without reading the record again.
            caller.check(Need::Any)?;
            // Registered before the read, so a finish in between is seen.
            let wait = self.notifier.request(id);
            let notified = wait.notify().notified();
            let record = self.record(id).await?;
            caller.check(RecordAccess::Read.need(&record.queue))?;
            if record.status.is_final() || Instant::now() >= deadline || self.stopping() {
                return Ok(record);
            }
            let woken = tokio::time::timeout_at(deadline, notified);
            self.wait_unless_ended(caller, woken).await;
        }
    }

    /// Request `id` as a client sees it now.
    async fn record(&self, id: &str) -> Result<RequestRecord, BrokerError> {
        let id = id.to_owned();
        self.on_broker(move |b, now| b.get_request(&id, now)).await
    }

    /// Checks `caller` may act on request `id` as `access` says (its queue
    /// is looked up).
    async fn check_record(
        &self,
        caller: &Caller,
        id: &str,
        access: RecordAccess,
    ) -> Result<(), BrokerError> {
        if matches!(caller, Caller::Open) {
            return Ok(());
        }
        let record = self.record(id).await?;
        caller.check(access.need(&record.queue))
    }

    /// A worker's result: the record succeeds and its message is settled.
    pub async fn complete_request(
        &self,
        caller: &Caller,
        id: String,
        result: serde_json::Value,
    ) -> Result<RequestRecord, BrokerError> {
        self.check_record(caller, &id, RecordAccess::Settle).await?;
        self.on_broker(move |b, now| b.complete_request(&id, result, now))
            .await
    }

    /// A worker's failure: retried with the queue's backoff when `retry`
    /// (the broker wakes waiting workers), otherwise failed for good.
    pub async fn fail_request(
        &self,
        caller: &Caller,
        id: String,
        error: String,
        retry: bool,
    ) -> Result<RequestRecord, BrokerError> {
        self.check_record(caller, &id, RecordAccess::Settle).await?;
        self.on_broker(move |b, now| b.fail_request(&id, &error, retry, now))
            .await
    }
}
