//! Asynchronous requests and their records (ops 60–63).

use bytes::Bytes;

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

/// Hands in an asynchronous request: its payload goes on the request queue
/// `queue` (created on first use, with a `workers` queue subscription) and
/// a record tracks it. Answered at once with the request's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    pub queue: String,
    /// The bytes a worker receives, unchanged.
    pub payload: Bytes,
    /// The payload is JSON text (workers see `spool-content-type:
    /// application/json`).
    pub json: bool,
    /// Where the final record is POSTed, if anywhere.
    pub callback_url: Option<String>,
}

impl Body for SubmitRequest {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("submit_request.queue", &self.queue)?;
        w.bytes("submit_request.payload", &self.payload)?;
        w.bool(self.json);
        w.opt_string("submit_request.callback_url", self.callback_url.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SubmitRequest {
            queue: r.string("submit_request.queue")?,
            payload: r.bytes("submit_request.payload")?,
            json: r.bool("submit_request.json")?,
            callback_url: r.opt_string("submit_request.callback_url")?,
        })
    }
}

/// Reads a request record, optionally waiting for it to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub id: String,
    /// 0 answers at once; otherwise the answer waits until the record is
    /// final or this long has passed.
    pub wait_ms: u32,
}

impl Body for GetRequest {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("get_request.id", &self.id)?;
        w.u32(self.wait_ms);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(GetRequest {
            id: r.string("get_request.id")?,
            wait_ms: r.u32("get_request.wait_ms")?,
        })
    }
}

/// A worker finished a request: its result is stored and its message
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteRequest {
    pub id: String,
    /// The result as JSON text. A `text` field (u32 length), since results
    /// may be far larger than a `string`'s 64 KiB.
    pub result_json: String,
}

impl Body for CompleteRequest {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("complete_request.id", &self.id)?;
        w.text("complete_request.result_json", &self.result_json)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CompleteRequest {
            id: r.string("complete_request.id")?,
            result_json: r.text("complete_request.result_json")?,
        })
    }
}

/// A worker failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRequest {
    pub id: String,
    /// Why; a `text` field like [`CompleteRequest::result_json`].
    pub error: String,
    /// Try again (with the queue's backoff, up to its max deliveries)
    /// rather than fail for good.
    pub retry: bool,
}

impl Body for FailRequest {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("fail_request.id", &self.id)?;
        w.text("fail_request.error", &self.error)?;
        w.bool(self.retry);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FailRequest {
            id: r.string("fail_request.id")?,
            error: r.text("fail_request.error")?,
            retry: r.bool("fail_request.retry")?,
        })
    }
}
