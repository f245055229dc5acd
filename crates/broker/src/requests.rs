//! Request records: the design note's asynchronous processing as a
//! first-class object. A request is a message on a request queue plus a record
//! keyed by a UUIDv7, kept in an embedded transactional store (redb: pure
//! Rust, one file, ACID commits with fsync) so records survive restart and
//! SIGKILL. The record moves `pending` → `running` (leased to a worker) →
//! `succeeded` | `failed`; a final record with a callback URL carries the
//! callback's delivery state, which the front end drives.

use crate::error::{BrokerError, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use spool_types::ErrorCode;
use std::path::Path;

/// Record header naming the request a queue message belongs to.
pub const REQUEST_ID_HEADER: &str = "spool-request-id";
/// Record header set when the payload is JSON (submitted over HTTP).
pub const CONTENT_TYPE_HEADER: &str = "spool-content-type";
/// The queue subscription request workers take work from.
pub const WORKERS_SUBSCRIPTION: &str = "workers";
/// How long records are kept (7 days) unless configured otherwise.
pub const REQUEST_TTL_MS_DEFAULT: i64 = 7 * 24 * 3600 * 1000;
/// How long a failing callback is retried (24 hours) unless configured otherwise.
pub const CALLBACK_RETRY_MS_DEFAULT: i64 = 24 * 3600 * 1000;
/// Largest result or error stored on a record (1 MiB).
pub const RESULT_BYTES_MAX: usize = 1024 * 1024;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RequestStatus {
    pub fn is_final(self) -> bool {
        matches!(self, RequestStatus::Succeeded | RequestStatus::Failed)
    }
}

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

/// The redb-backed store of request records.
pub struct RequestStore {
    db: Database,
}

impl RequestStore {
    pub fn open(path: &Path) -> Result<RequestStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                BrokerError::new(ErrorCode::StorageError, format!("{}: {e}", dir.display()))
            })?;
        }
        let db = Database::create(path).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(RECORDS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(RequestStore { db })
    }

    pub fn get(&self, id: &str) -> Result<Option<RequestRecord>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(RECORDS).map_err(db_err)?;
        let Some(v) = table.get(id).map_err(db_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| BrokerError::new(ErrorCode::CorruptData, format!("request {id}: {e}")))
    }

    /// Writes records in one transaction; `durable` waits for fsync.
    pub fn put(&self, records: &[&RequestRecord], durable: bool) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        if !durable {
            tx.set_durability(Durability::None).map_err(db_err)?;
        }
        {
            let mut table = tx.open_table(RECORDS).map_err(db_err)?;
            for r in records {
                let bytes = serde_json::to_vec(r)
                    .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
                table
                    .insert(r.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    pub fn remove(&self, ids: &[String]) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(RECORDS).map_err(db_err)?;
            for id in ids {
                table.remove(id.as_str()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Every record matching `keep` (a full scan; used by housekeeping).
    pub fn scan(&self, mut keep: impl FnMut(&RequestRecord) -> bool) -> Result<Vec<RequestRecord>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(RECORDS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (_, v) = entry.map_err(db_err)?;
            if let Ok(r) = serde_json::from_slice::<RequestRecord>(v.value()) {
                if keep(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Counts of records by status, for metrics and tests.
    pub fn counts(&self) -> Result<[u64; 4]> {
        let mut c = [0u64; 4];
        self.scan(|r| {
            c[r.status as usize] += 1;
            false
        })?;
        Ok(c)
    }
}
