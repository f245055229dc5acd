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
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

pub use spool_types::headers::{CONTENT_TYPE_HEADER, REQUEST_ID_HEADER};
pub use spool_types::requests::{RequestStatus, WORKERS_SUBSCRIPTION};
/// How long records are kept (7 days) unless configured otherwise.
pub const REQUEST_TTL_MS_DEFAULT: i64 = 7 * 24 * 3600 * 1000;
/// How long a failing callback is retried (24 hours) unless configured otherwise.
pub const CALLBACK_RETRY_MS_DEFAULT: i64 = 24 * 3600 * 1000;
pub use spool_types::limits::RESULT_BYTES_MAX;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");

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
///
/// Writes are group-committed: concurrent callers' changes queue up, and one
/// of them (the leader) writes everything queued in one redb transaction
/// with one commit (one fsync), then wakes the others. A commit per submit
/// and per completion capped request records at a few hundred a second.
/// Queued changes are applied in the order they were queued, so a later
/// change to a record always wins.
pub struct RequestStore {
    db: Database,
    group: Mutex<Group>,
    committed: Condvar,
}

/// One queued change.
enum Op {
    Put { id: String, bytes: Vec<u8> },
    Remove { id: String },
}

/// The group commit's shared state. Changes join batch `open`; batches
/// are written one at a time, in order.
#[derive(Default)]
struct Group {
    queued: Vec<Op>,
    /// Whether any queued change must be durable before its caller returns.
    queued_durable: bool,
    /// The batch queued changes join.
    open: u64,
    /// Batches below this are written (or failed).
    done: u64,
    /// A leader is writing a batch.
    writing: bool,
    /// Recent failed batches and why (callers look theirs up).
    failures: VecDeque<(u64, BrokerError)>,
}

/// Failed batches remembered for their callers.
const FAILURES_KEPT: usize = 64;

/// redb's page cache for the request store. Its default (1 GiB) would let
/// resident memory grow with the store file for as long as the server runs;
/// records are small and read by key, so a small cache serves them.
pub const REQUEST_STORE_CACHE_BYTES: usize = 16 * 1024 * 1024;

fn lock(m: &Mutex<Group>) -> MutexGuard<'_, Group> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RequestStore {
    pub fn open(path: &Path) -> Result<RequestStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                BrokerError::new(ErrorCode::StorageError, format!("{}: {e}", dir.display()))
            })?;
        }
        let db = redb::Builder::new()
            .set_cache_size(REQUEST_STORE_CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(RECORDS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(RequestStore {
            db,
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
        })
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

    /// Writes records (group-committed with concurrent writers); `durable`
    /// returns only once they are fsync'd.
    pub fn put(&self, records: &[&RequestRecord], durable: bool) -> Result<()> {
        let mut ops = Vec::with_capacity(records.len());
        for r in records {
            let bytes = serde_json::to_vec(r)
                .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
            ops.push(Op::Put {
                id: r.id.clone(),
                bytes,
            });
        }
        self.commit(ops, durable)
    }

    /// Removes records (durably, group-committed).
    pub fn remove(&self, ids: &[String]) -> Result<()> {
        let ops = ids.iter().map(|id| Op::Remove { id: id.clone() }).collect();
        self.commit(ops, true)
    }

    /// Queues `ops` and returns once the batch holding them is written:
    /// either by this caller, as the leader, or by another leader.
    fn commit(&self, ops: Vec<Op>, durable: bool) -> Result<()> {
        let mut g = lock(&self.group);
        let batch = g.open;
        g.queued.extend(ops);
        g.queued_durable |= durable;
        loop {
            if g.done > batch {
                return match g.failures.iter().find(|(b, _)| *b == batch) {
                    Some((_, e)) => Err(e.clone()),
                    None => Ok(()),
                };
            }
            if !g.writing && g.open == batch {
                // Lead: take everything queued so far as batch `batch`.
                g.writing = true;
                g.open += 1;
                let ops = std::mem::take(&mut g.queued);
                let durable = std::mem::take(&mut g.queued_durable);
                drop(g);
                let result = self.write(&ops, durable);
                g = lock(&self.group);
                g.writing = false;
                g.done = batch + 1;
                if let Err(e) = &result {
                    g.failures.push_back((batch, e.clone()));
                    if g.failures.len() > FAILURES_KEPT {
                        g.failures.pop_front();
                    }
                }
                self.committed.notify_all();
                return result;
            }
            g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes one batch in one transaction.
    fn write(&self, ops: &[Op], durable: bool) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        if !durable {
            tx.set_durability(Durability::None).map_err(db_err)?;
        }
        {
            let mut table = tx.open_table(RECORDS).map_err(db_err)?;
            for op in ops {
                match op {
                    Op::Put { id, bytes } => {
                        table
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(db_err)?;
                    }
                    Op::Remove { id } => {
                        table.remove(id.as_str()).map_err(db_err)?;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: String, attempts: u32) -> RequestRecord {
        RequestRecord {
            id,
            queue: "q".into(),
            status: RequestStatus::Pending,
            attempts,
            created_ms: 1,
            updated_ms: 1,
            expires_ms: i64::MAX,
            result: None,
            error: None,
            callback_url: None,
            callback: None,
            receipt: None,
            lease_deadline_ms: None,
        }
    }

    #[test]
    fn concurrent_writers_share_commits_and_every_write_lands_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RequestStore::open(&dir.path().join("r.redb")).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        // Each thread rewrites its own record: the last write wins.
                        let r = record(format!("t{t}"), i);
                        store.put(&[&r], true).unwrap();
                        let other = record(format!("t{t}-{i}"), i);
                        store.put(&[&other], i % 2 == 0).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..16 {
            assert_eq!(store.get(&format!("t{t}")).unwrap().unwrap().attempts, 49);
            for i in 0..50 {
                assert!(store.get(&format!("t{t}-{i}")).unwrap().is_some());
            }
        }
        store.remove(&["t0".to_owned()]).unwrap();
        assert!(store.get("t0").unwrap().is_none());
        drop(store);
        // Durable across a reopen.
        let store = RequestStore::open(&dir.path().join("r.redb")).unwrap();
        assert_eq!(store.get("t5").unwrap().unwrap().attempts, 49);
    }
}
