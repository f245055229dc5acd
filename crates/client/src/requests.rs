//! Asynchronous requests (request records): hand in work and get an ID at
//! once ([`Client::submit_request`]), learn the outcome later
//! ([`Client::get_request`], optionally waiting), and — as a worker —
//! finish it ([`Client::complete_request`], [`Client::fail_request`]).
//!
//! Records are JSON objects (`id`, `queue`, `status`, `attempts`, …,
//! `result` or `error`), returned as [`serde_json::Value`] so fields added
//! by newer servers come through.

use crate::client::{unexpected, Client};
use crate::error::ClientError;
use crate::subscriptions::duration_ms;
use bytes::Bytes;
use serde_json::Value;
use spool_proto::{self as p, Request, ResponseBody};
use std::time::Duration;

pub use spool_types::headers::{CONTENT_TYPE_HEADER, REQUEST_ID_HEADER};
pub use spool_types::requests::{RequestStatus, WORKERS_SUBSCRIPTION};

/// The record JSON the server sent, parsed.
fn record(json: &str) -> Result<Value, ClientError> {
    serde_json::from_str(json).map_err(|e| {
        ClientError::Protocol(format!("the server sent a record that is not JSON: {e}"))
    })
}

impl Client {
    /// Submits a request to the request queue `queue` (created on first
    /// use if the token is an admin's or authentication is off; otherwise
    /// `FORBIDDEN`): a worker receives `payload` unchanged. `json` marks the
    /// payload as JSON text (the server checks that it parses). With
    /// `callback_url` the server POSTs the final record there; its host
    /// must be on the server's outbound allow-list. Returns the request ID.
    pub async fn submit_request(
        &self,
        queue: &str,
        payload: impl Into<Bytes>,
        json: bool,
        callback_url: Option<&str>,
    ) -> Result<String, ClientError> {
        let request = Request::SubmitRequest(p::SubmitRequest {
            queue: queue.to_owned(),
            payload: payload.into(),
            json,
            callback_url: callback_url.map(str::to_owned),
        });
        match self.call(request).await? {
            ResponseBody::RequestAccepted { id } => Ok(id),
            other => Err(unexpected(&other, p::Op::SubmitRequest)),
        }
    }

    /// A request's record. With a non-zero `wait` the answer comes once
    /// the request has finished or `wait` (at most 5 minutes) has passed,
    /// whichever is first.
    pub async fn get_request(&self, id: &str, wait: Duration) -> Result<Value, ClientError> {
        let request = Request::GetRequest(p::GetRequest {
            id: id.to_owned(),
            wait_ms: duration_ms(wait),
        });
        match self.call(request).await? {
            ResponseBody::RequestRecord { json } => record(&json),
            other => Err(unexpected(&other, p::Op::GetRequest)),
        }
    }

    /// Completes a request this worker holds: stores `result` and
    /// acknowledges the request's message. Returns the final record.
    pub async fn complete_request(&self, id: &str, result: &Value) -> Result<Value, ClientError> {
        let request = Request::CompleteRequest(p::CompleteRequest {
            id: id.to_owned(),
            result_json: result.to_string(),
        });
        match self.call(request).await? {
            ResponseBody::RequestCompleted { json } => record(&json),
            other => Err(unexpected(&other, p::Op::CompleteRequest)),
        }
    }

    /// Fails a request this worker holds. With `retry` it is delivered
    /// again (after the queue's backoff, until its max deliveries), else
    /// it fails for good. Returns the record.
    pub async fn fail_request(
        &self,
        id: &str,
        error: &str,
        retry: bool,
    ) -> Result<Value, ClientError> {
        let request = Request::FailRequest(p::FailRequest {
            id: id.to_owned(),
            error: error.to_owned(),
            retry,
        });
        match self.call(request).await? {
            ResponseBody::RequestFailed { json } => record(&json),
            other => Err(unexpected(&other, p::Op::FailRequest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_from_the_record() {
        let r: Value = serde_json::json!({"id": "x", "status": "succeeded"});
        assert_eq!(RequestStatus::of(&r), Some(RequestStatus::Succeeded));
        assert!(RequestStatus::Succeeded.is_final());
        assert!(!RequestStatus::Running.is_final());
        assert_eq!(RequestStatus::of(&serde_json::json!({"status": 3})), None);
        assert!(record("{not json").is_err());
    }
}
