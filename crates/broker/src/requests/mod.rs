//! Request records: the design note's asynchronous processing as a
//! first-class object. A request is a message on a request queue plus a record
//! keyed by a UUIDv7, kept in an embedded transactional store (redb: pure
//! Rust, one file, ACID commits with fsync) so records survive restart and
//! SIGKILL. The record moves `pending` → `running` (leased to a worker) →
//! `succeeded` | `failed`; a final record with a callback URL carries the
//! callback's delivery state, which the front end drives.

mod change;
mod store;

pub use change::RequestChange;
pub use store::{RequestStore, REQUEST_STORE_CACHE_BYTES};

use crate::error::BrokerError;
use serde::{Deserialize, Serialize};
use spool_types::ErrorCode;

pub use spool_types::headers::{CONTENT_TYPE_HEADER, REQUEST_ID_HEADER};
pub use spool_types::requests::{RequestStatus, WORKERS_SUBSCRIPTION};
/// How long records are kept (7 days) unless configured otherwise.
pub const REQUEST_TTL_MS_DEFAULT: i64 = 7 * 24 * 3600 * 1000;
/// How long a failing callback is retried (24 hours) unless configured otherwise.
pub const CALLBACK_RETRY_MS_DEFAULT: i64 = 24 * 3600 * 1000;
pub use spool_types::limits::RESULT_BYTES_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Pending,
    Delivered,
    Failed,
}

/// Delivery state of a request's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackState {
    pub status: CallbackStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub first_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// One request record, as stored and as shown to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub queue: String,
    pub status: RequestStatus,
    /// Deliveries to workers so far.
    pub attempts: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackState>,
    /// The current lease (internal: how completing acknowledges the message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_deadline_ms: Option<i64>,
}

impl RequestRecord {
    /// The record as clients see it at `now_ms`: a running request whose
    /// lease expired is pending again (its message is available to workers).
    pub fn view(&self, now_ms: i64) -> RequestRecord {
        let mut r = self.clone();
        if r.status == RequestStatus::Running && r.lease_deadline_ms.is_some_and(|d| d <= now_ms) {
            r.status = RequestStatus::Pending;
        }
        r
    }
}

fn db_err(e: impl Into<redb::Error>) -> BrokerError {
    BrokerError::new(
        ErrorCode::StorageError,
        format!("request store: {}", e.into()),
    )
}

pub fn unknown_request(id: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownRequest,
        format!("no request {id:?} (unknown, or expired and removed)"),
    )
}
