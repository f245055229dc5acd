//! The redb-backed store of request records: changes applied in one order,
//! group-committed.

use super::{db_err, RequestChange, RequestRecord};
use crate::error::{BrokerError, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use spool_types::ErrorCode;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");

/// The redb-backed store of request records.
///
/// A record changes only by [`RequestChange`]s given to [`RequestStore::apply`],
/// which applies them in one order — the order they were queued — each to
/// the record as the changes before it left it, inside the write
/// transaction. So a decision that depends on the record's state (is it
/// final, who holds it) is taken against its latest state, never a copy a
/// concurrent caller read earlier.
///
/// Writes are group-committed: concurrent callers' changes queue up, and one
/// of them (the leader) applies everything queued in one redb transaction
/// with one commit (one fsync), then wakes the others. A commit per submit
/// and per completion capped request records at a few hundred a second.
pub struct RequestStore {
    db: Database,
    group: Mutex<Group>,
    committed: Condvar,
}

/// What applying one change gave: the record it left (none: removed), or
/// why the change was refused.
pub type Outcome = std::result::Result<Option<RequestRecord>, BrokerError>;

/// The group commit's shared state. Changes join batch `open`; batches
/// are written one at a time, in order.
#[derive(Default)]
struct Group {
    /// Changes waiting for the next batch, each with its ticket.
    queued: Vec<(u64, RequestChange)>,
    /// The next ticket.
    next_ticket: u64,
    /// Outcomes of applied changes by ticket, until their callers take them.
    outcomes: std::collections::HashMap<u64, Outcome>,
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

/// The request store's file mode: owner read/write only, like the other
/// files holding secrets. Records carry request results and callback URLs
/// (which may hold tokens in their query strings).
pub const REQUEST_STORE_MODE: u32 = 0o600;

fn lock(m: &Mutex<Group>) -> MutexGuard<'_, Group> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens (or creates) the store's file as redb's own `create` would, but
/// created with [`REQUEST_STORE_MODE`] (so never readable by others, not
/// even before the first byte, whatever the umask) and an existing file
/// opened by others tightened to it, with a warning.
fn open_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(REQUEST_STORE_MODE)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(REQUEST_STORE_MODE))?;
        tracing::warn!(
            "{} was readable by others than its owner (mode {mode:o}); changed to {REQUEST_STORE_MODE:o}",
            path.display()
        );
    }
    Ok(file)
}

impl RequestStore {
    pub fn open(path: &Path) -> Result<RequestStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                BrokerError::new(ErrorCode::StorageError, format!("{}: {e}", dir.display()))
            })?;
        }
        let file = open_owner_only(path).map_err(|e| {
            let at = path.display();
            BrokerError::new(ErrorCode::StorageError, format!("request store: {at}: {e}"))
        })?;
        let backend = redb::backends::FileBackend::new(file).map_err(db_err)?;
        let db = redb::Builder::new()
            .set_cache_size(REQUEST_STORE_CACHE_BYTES)
            .create_with_backend(backend)
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
        decode(id, v.value())
    }

    /// Applies `changes` in order (group-committed with concurrent
    /// callers' changes); `durable` returns only once they are fsync'd.
    /// One outcome per change: a refused change leaves its record as it was
    /// and does not stop the others.
    pub fn apply(&self, changes: Vec<RequestChange>, durable: bool) -> Result<Vec<Outcome>> {
        let mut g = lock(&self.group);
        let batch = g.open;
        let first = g.next_ticket;
        g.next_ticket += changes.len() as u64;
        let tickets = first..g.next_ticket;
        g.queued.extend(tickets.clone().zip(changes));
        g.queued_durable |= durable;
        loop {
            if g.done > batch {
                if let Some((_, e)) = g.failures.iter().find(|(b, _)| *b == batch) {
                    return Err(e.clone());
                }
                return Ok(tickets
                    .map(|t| g.outcomes.remove(&t).unwrap_or(Ok(None)))
                    .collect());
            }
            if !g.writing && g.open == batch {
                self.lead(g, batch);
                g = lock(&self.group);
                continue;
            }
            g = self.committed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Applies one change (durably) and returns the record it left.
    pub fn apply_one(&self, change: RequestChange) -> Result<Option<RequestRecord>> {
        self.apply(vec![change], true)?.pop().unwrap_or(Ok(None))
    }

    /// Takes everything queued so far as batch `batch`, writes it, and
    /// publishes the outcomes (or the failure) for the callers.
    fn lead(&self, mut g: MutexGuard<'_, Group>, batch: u64) {
        g.writing = true;
        g.open += 1;
        let queued = std::mem::take(&mut g.queued);
        let durable = std::mem::take(&mut g.queued_durable);
        drop(g);
        let result = self.write(&queued, durable);
        let mut g = lock(&self.group);
        g.writing = false;
        g.done = batch + 1;
        match result {
            Ok(outcomes) => g
                .outcomes
                .extend(queued.iter().map(|(t, _)| *t).zip(outcomes)),
            Err(e) => {
                g.failures.push_back((batch, e));
                if g.failures.len() > FAILURES_KEPT {
                    g.failures.pop_front();
                }
            }
        }
        self.committed.notify_all();
    }

    /// Applies one batch in one transaction: each change to the record as
    /// the transaction holds it, so later changes see earlier ones.
    fn write(&self, queued: &[(u64, RequestChange)], durable: bool) -> Result<Vec<Outcome>> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        if !durable {
            tx.set_durability(Durability::None).map_err(db_err)?;
        }
        let mut outcomes = Vec::with_capacity(queued.len());
        {
            let mut table = tx.open_table(RECORDS).map_err(db_err)?;
            for (_, change) in queued {
                let id = change.id();
                let current = match table.get(id).map_err(db_err)? {
                    Some(v) => decode(id, v.value()),
                    None => Ok(None),
                };
                let outcome = current.and_then(|current| change.apply(current));
                match &outcome {
                    Ok(Some(r)) => {
                        let bytes = serde_json::to_vec(r)
                            .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
                        table.insert(id, bytes.as_slice()).map_err(db_err)?;
                    }
                    Ok(None) => {
                        table.remove(id).map_err(db_err)?;
                    }
                    Err(_) => {}
                }
                outcomes.push(outcome);
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(outcomes)
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

fn decode(id: &str, bytes: &[u8]) -> Result<Option<RequestRecord>> {
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| BrokerError::new(ErrorCode::CorruptData, format!("request {id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::RequestStatus;

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
                    let mine = format!("t{t}");
                    store
                        .apply_one(RequestChange::Submitted {
                            record: record(mine.clone(), 0),
                        })
                        .unwrap();
                    for i in 0..50u32 {
                        // Each thread changes its own record: the last change wins.
                        let leased = RequestChange::Leased {
                            id: mine.clone(),
                            attempts: i,
                            receipt: format!("r{i}"),
                            lease_deadline_ms: 1_000,
                            at_ms: 1,
                        };
                        store.apply(vec![leased], true).unwrap().remove(0).unwrap();
                        let other = RequestChange::Submitted {
                            record: record(format!("t{t}-{i}"), i),
                        };
                        store.apply(vec![other], i % 2 == 0).unwrap();
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
        store
            .apply_one(RequestChange::Withdrawn { id: "t0".into() })
            .unwrap();
        assert!(store.get("t0").unwrap().is_none());
        drop(store);
        // Durable across a reopen.
        let store = RequestStore::open(&dir.path().join("r.redb")).unwrap();
        assert_eq!(store.get("t5").unwrap().unwrap().attempts, 49);
    }

    fn mode_of(path: &Path) -> u32 {
        spool_log::fsutil::permission_bits(path).unwrap()
    }

    /// The file holds results and callback URLs: created owner-only, and a
    /// file left readable by an older version is tightened when opened.
    #[test]
    fn the_store_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        drop(RequestStore::open(&path).unwrap());
        assert_eq!(mode_of(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = RequestStore::open(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        // Still the same store.
        store
            .apply_one(RequestChange::Submitted {
                record: record("a".into(), 0),
            })
            .unwrap();
        drop(store);
        assert!(RequestStore::open(&path)
            .unwrap()
            .get("a")
            .unwrap()
            .is_some());
    }

    /// Changes in one batch are applied in order, each to the record the
    /// ones before it left, and a refused one does not stop the rest.
    #[test]
    fn a_batch_applies_each_change_to_the_record_as_the_changes_before_left_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RequestStore::open(&dir.path().join("r.redb")).unwrap();
        let finished = |receipt: &str| RequestChange::Finished {
            id: "a".into(),
            receipt: Some(receipt.into()),
            status: RequestStatus::Succeeded,
            result: None,
            error: None,
            expires_ms: 10,
            at_ms: 3,
        };
        let outcomes = store
            .apply(
                vec![
                    RequestChange::Submitted {
                        record: record("a".into(), 0),
                    },
                    RequestChange::Leased {
                        id: "a".into(),
                        attempts: 1,
                        receipt: "r1".into(),
                        lease_deadline_ms: 100,
                        at_ms: 2,
                    },
                    finished("someone-else"),
                    finished("r1"),
                ],
                true,
            )
            .unwrap();
        let codes: Vec<Option<ErrorCode>> = outcomes
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.code))
            .collect();
        assert_eq!(codes, vec![None, None, Some(ErrorCode::LeaseExpired), None]);
        let r = store.get("a").unwrap().unwrap();
        assert_eq!((r.status, r.attempts), (RequestStatus::Succeeded, 1));
    }
}
