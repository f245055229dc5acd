//! A partition group's state machine: what is committed becomes readable.
//!
//! Applying an entry moves the log's committed end (the high watermark:
//! readers of the log see nothing above it) past the entry's records and
//! answers the proposer with their offsets. The records themselves are the
//! log; the state is small (the last applied entry, the membership, the
//! high watermark) and a snapshot is that state, saved as
//! `raft-snapshot`. (Shipping segment files with a snapshot, and the
//! producer table of idempotent producers, come with catch-up and
//! idempotence: docs/cluster.md.)
//!
//! A machine opened with an [`AppliedHook`] (the metadata group) also hands
//! every applied normal entry to the hook, whose answer goes back to the
//! proposer. Its state is the hook's, in memory, and rebuilt by replaying
//! the log from the start: such a machine neither builds nor installs
//! snapshots (they would hold the high watermark, not the hook's state), and
//! its group must never purge its log.

use super::entries;
use super::{AppliedHook, RetentionMark};
use crate::producers::{producer_of, ProducerTable, Written};
use crate::types::{
    log_entry_index, log_id, term_of, BatchPlaced, LogId, PartitionRaft, PartitionSnapshot,
    Snapshot, SnapshotMeta, StoredMembership,
};
use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use spool_log::{fsutil, Log};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const SNAPSHOT_FILE: &str = "raft-snapshot";

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The snapshot file: openraft's meta in our own shape, and the data.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    last_log: Option<(u64, u64)>,
    membership_log: Option<(u64, u64)>,
    membership: Vec<u8>,
    data: PartitionSnapshot,
}

type Meta = SnapshotMeta;
type PartitionSnapshotOf = Snapshot<PartitionSnapshot>;

fn pair(id: &Option<LogId>) -> Option<(u64, u64)> {
    id.as_ref().map(|id| (term_of(id), id.index()))
}

fn unpair(pair: Option<(u64, u64)>) -> Option<LogId> {
    pair.map(|(term, index)| log_id(term, index))
}

pub struct PartitionStateMachine {
    log: Arc<Log>,
    dir: PathBuf,
    applied: Option<LogId>,
    membership: StoredMembership,
    next_offset: i64,
    hook: Option<Arc<dyn AppliedHook>>,
    /// Idempotent producers' last batches, from the applied entries.
    producers: Arc<Mutex<ProducerTable>>,
    /// Where snapshots are made, with retention (see `retention.rs`).
    retention: Option<RetentionMark>,
}

/// Why a machine with a hook refuses snapshots (see the module comment).
const HOOK_HAS_NO_SNAPSHOTS: &str =
    "a group with an apply hook keeps no snapshots: its state is rebuilt from its whole log";

impl PartitionStateMachine {
    /// Opens the state of the group in `dir` (its log's directory): the
    /// saved snapshot if there is one; openraft re-applies the rest.
    pub fn open(log: Arc<Log>, dir: &Path) -> io::Result<PartitionStateMachine> {
        let mut machine = PartitionStateMachine::new(log, dir, None);
        if let Some((meta, data)) = machine.read_snapshot_file()? {
            machine.applied = meta.last_log_id;
            machine.membership = meta.last_membership.clone();
            machine.set_next_offset(data.next_offset);
        }
        Ok(machine)
    }

    /// Opens the state of a group whose applied entries go to `hook` too.
    /// A hook that keeps state ([`AppliedHook::keeps_state`]): openraft
    /// re-applies every committed entry from the first, in order, so the
    /// hook's state is rebuilt from nothing, and a snapshot file in `dir`
    /// is refused (the entries it covers would never reach the hook).
    /// Otherwise as [`PartitionStateMachine::open`].
    pub fn open_with_hook(
        log: Arc<Log>,
        dir: &Path,
        hook: Arc<dyn AppliedHook>,
    ) -> io::Result<PartitionStateMachine> {
        if !hook.keeps_state() {
            let mut machine = PartitionStateMachine::open(log, dir)?;
            machine.hook = Some(hook);
            return Ok(machine);
        }
        let machine = PartitionStateMachine::new(log, dir, Some(hook));
        if machine.read_snapshot_file()?.is_some() {
            return Err(io_error(format!(
                "{}: {HOOK_HAS_NO_SNAPSHOTS}",
                dir.join(SNAPSHOT_FILE).display()
            )));
        }
        Ok(machine)
    }

    fn new(log: Arc<Log>, dir: &Path, hook: Option<Arc<dyn AppliedHook>>) -> PartitionStateMachine {
        PartitionStateMachine {
            next_offset: log.stats().start_offset,
            log,
            dir: dir.to_path_buf(),
            applied: None,
            membership: StoredMembership::default(),
            hook,
            producers: Arc::default(),
            retention: None,
        }
    }

    /// Snapshots are made at `mark` (retention's cut) when it is set and
    /// applied, instead of at the last applied entry.
    pub fn with_retention(mut self, mark: RetentionMark) -> PartitionStateMachine {
        self.retention = Some(mark);
        self
    }

    fn hook_keeps_state(&self) -> bool {
        self.hook.as_ref().is_some_and(|h| h.keeps_state())
    }

    /// The producers table this machine keeps (the leader's proposer
    /// checks batches against it).
    pub fn producers(&self) -> Arc<Mutex<ProducerTable>> {
        self.producers.clone()
    }

    fn set_next_offset(&mut self, next_offset: i64) {
        self.next_offset = self.next_offset.max(next_offset);
        self.log.set_committed_end(self.next_offset);
    }

    fn read_snapshot_file(&self) -> io::Result<Option<(Meta, PartitionSnapshot)>> {
        let bytes = match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(format!("{SNAPSHOT_FILE}: {e}")))?;
        let membership = if file.membership.is_empty() {
            StoredMembership::default()
        } else {
            StoredMembership::new(
                unpair(file.membership_log),
                crate::raft_files::decode_membership(&file.membership)?,
            )
        };
        let meta = Meta {
            last_log_id: unpair(file.last_log),
            last_membership: membership,
        };
        Ok(Some((meta, file.data)))
    }

    fn snapshot_now(&self) -> (Meta, PartitionSnapshot) {
        let meta = Meta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        };
        let now = PartitionSnapshot {
            next_offset: self.next_offset,
        };
        // At retention's mark instead, when it is applied and the
        // membership did not change after it (the state there is then
        // the offset after it and the same membership).
        let mark = self.retention.as_ref().and_then(RetentionMark::get);
        match mark {
            Some(mark)
                if Some(mark.last) <= self.applied
                    && self.membership.log_id().as_ref() <= Some(&mark.last) =>
            {
                let at_mark = Meta {
                    last_log_id: Some(mark.last),
                    ..meta
                };
                let data = PartitionSnapshot {
                    next_offset: mark.next_offset,
                };
                (at_mark, data)
            }
            _ => (meta, now),
        }
    }

    fn apply_one(&mut self, entry: &crate::types::Entry) -> io::Result<BatchPlaced> {
        self.applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Normal(batch) => {
                let (base_offset, next_offset) = entries::offsets_of(&batch.0)?;
                self.set_next_offset(next_offset);
                if let Some((producer_id, first_seq, last_seq)) = producer_of(&batch.0) {
                    let written = Written {
                        first_seq,
                        last_seq,
                        base_offset,
                        last_offset: next_offset - 1,
                    };
                    self.producers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .applied(producer_id, written, entry.log_id.index());
                }
                let answer = match &self.hook {
                    Some(hook) => hook.applied(&entry.log_id, &batch.0)?,
                    None => None,
                };
                Ok(BatchPlaced {
                    base_offset,
                    next_offset,
                    answer,
                })
            }
            EntryPayload::Blank => Ok(self.nothing_placed()),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                Ok(self.nothing_placed())
            }
        }
    }

    fn nothing_placed(&self) -> BatchPlaced {
        BatchPlaced {
            base_offset: self.next_offset,
            next_offset: self.next_offset,
            answer: None,
        }
    }
}

fn write_snapshot_file(dir: &Path, meta: &Meta, data: PartitionSnapshot) -> io::Result<()> {
    let file = SnapshotFile {
        last_log: pair(&meta.last_log_id),
        membership_log: pair(meta.last_membership.log_id()),
        membership: match meta.last_membership.log_id() {
            Some(_) => crate::raft_files::encode_membership(meta.last_membership.membership()),
            None => Vec::new(),
        },
        data,
    };
    let bytes = serde_json::to_vec(&file).map_err(io_error)?;
    fsutil::write_atomic(&dir.join(SNAPSHOT_FILE), &bytes).map_err(io_error)
}

/// Builds a snapshot from the state at the moment it was asked for.
pub struct PartitionSnapshotBuilder {
    /// `None` once built.
    state: Option<(Meta, PartitionSnapshot)>,
    dir: PathBuf,
    hook_keeps_state: bool,
}

impl RaftSnapshotBuilder<PartitionRaft> for PartitionSnapshotBuilder {
    type SnapshotData = PartitionSnapshot;

    async fn build_snapshot(&mut self) -> Result<PartitionSnapshotOf, io::Error> {
        if self.hook_keeps_state {
            return Err(io_error(HOOK_HAS_NO_SNAPSHOTS));
        }
        let (meta, data) = self
            .state
            .take()
            .ok_or_else(|| io_error("snapshot builder used twice"))?;
        write_snapshot_file(&self.dir, &meta, data)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<PartitionRaft> for PartitionStateMachine {
    type SnapshotData = PartitionSnapshot;
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<PartitionRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let placed = self.apply_one(&entry)?;
            if let Some(responder) = responder {
                responder.send(placed);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PartitionSnapshotBuilder {
            state: Some(self.snapshot_now()),
            dir: self.dir.clone(),
            hook_keeps_state: self.hook_keeps_state(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        data: PartitionSnapshot,
    ) -> Result<(), io::Error> {
        if self.hook_keeps_state() {
            return Err(io_error(HOOK_HAS_NO_SNAPSHOTS));
        }
        // The log starts over after the snapshot's last entry, at its
        // offsets (the records before it are not shipped yet: see the
        // module documentation).
        if let Some(last) = meta.last_log_id {
            let next_entry = log_entry_index(last.index()) + 1;
            if self.log.entry_bounds().map_err(io_error)?.first_index <= next_entry {
                self.log
                    .reset_entries(next_entry, data.next_offset)
                    .map_err(io_error)?;
            }
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.next_offset = data.next_offset;
        self.log.set_committed_end(data.next_offset);
        write_snapshot_file(&self.dir, meta, data)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<PartitionSnapshotOf>, io::Error> {
        // A snapshot built by a builder was saved to the file; read it back
        // so the builder and the machine never disagree.
        let current = self.read_snapshot_file()?;
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: data,
        }))
    }
}
