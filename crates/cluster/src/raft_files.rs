//! What a Raft group keeps beside its log, in the group's directory:
//!
//! - `raft-state`: the vote and the last purged log id, JSON, replaced
//!   atomically and fdatasync'd before `save_vote`/`purge` return (a vote
//!   forgotten after a crash could be cast twice in one term);
//! - `raft-committed`: the last committed log id known here, overwritten in
//!   place without an fdatasync (it only saves re-applying after a restart;
//!   a stale or torn copy is ignored or clamped, never trusted beyond the
//!   log — see [`RaftFiles::read_committed`]).

use crate::types::{log_id, term_of, LogId, Membership, NodeAddr, NodeId, Vote};
use openraft::vote::RaftLeaderId;
use serde::{Deserialize, Serialize};
use spool_log::fsutil;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "raft-state";
pub const COMMITTED_FILE: &str = "raft-committed";
/// `term u64 | index u64 | crc32c u32` of those 16 bytes.
const COMMITTED_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredLogId {
    term: u64,
    index: u64,
}

impl From<&LogId> for StoredLogId {
    fn from(id: &LogId) -> StoredLogId {
        StoredLogId {
            term: term_of(id),
            index: id.index(),
        }
    }
}

impl StoredLogId {
    fn to_log_id(self) -> LogId {
        log_id(self.term, self.index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredVote {
    term: u64,
    voted_for: NodeId,
    committed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    vote: Option<StoredVote>,
    purged: Option<StoredLogId>,
}

/// The files of one group. Not shared: the log store owns it, and openraft
/// serialises its calls.
#[derive(Debug)]
pub struct RaftFiles {
    dir: PathBuf,
    state: State,
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RaftFiles {
    pub fn open(dir: &Path) -> io::Result<RaftFiles> {
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_error(format!("{}: not a Raft state file: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e),
        };
        Ok(RaftFiles {
            dir: dir.to_path_buf(),
            state,
        })
    }

    fn save(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.state).map_err(io_error)?;
        fsutil::write_atomic(&self.dir.join(STATE_FILE), &bytes).map_err(io_error)
    }

    pub fn vote(&self) -> Option<Vote> {
        self.state.vote.map(|v| {
            let mut vote = Vote::new(v.term, v.voted_for);
            vote.committed = v.committed;
            vote
        })
    }

    /// Durable when it returns.
    pub fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.state.vote = Some(StoredVote {
            term: vote.leader_id.term(),
            voted_for: *vote.leader_id.node_id(),
            committed: vote.committed,
        });
        self.save()
    }

    pub fn purged(&self) -> Option<LogId> {
        self.state.purged.map(StoredLogId::to_log_id)
    }

    /// Durable when it returns.
    pub fn save_purged(&mut self, purged: &LogId) -> io::Result<()> {
        self.state.purged = Some(purged.into());
        self.save()
    }

    /// Overwrites the committed log id in place; no fdatasync.
    pub fn save_committed(&self, committed: Option<&LogId>) -> io::Result<()> {
        let path = self.dir.join(COMMITTED_FILE);
        let Some(committed) = committed else {
            return fsutil::remove_if_exists(&path).map_err(io_error);
        };
        let mut bytes = [0u8; COMMITTED_BYTES];
        bytes[0..8].copy_from_slice(&term_of(committed).to_be_bytes());
        bytes[8..16].copy_from_slice(&committed.index().to_be_bytes());
        let crc = crc32c_of(&bytes[0..16]);
        bytes[16..20].copy_from_slice(&crc.to_be_bytes());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.write_all_at(&bytes, 0)
    }

    /// The committed log id saved last, if the file is whole. The caller
    /// clamps it to its log: it was saved without an fdatasync, so after a
    /// power loss it may name an entry the log lost (an entry below it in
    /// the log is still committed: a committed index only ever covered a
    /// prefix this log shared with the leader, and a log loses only its tail).
    pub fn read_committed(&self) -> io::Result<Option<LogId>> {
        let bytes = match std::fs::read(self.dir.join(COMMITTED_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if bytes.len() != COMMITTED_BYTES {
            return Ok(None);
        }
        let crc = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        if crc != crc32c_of(&bytes[0..16]) {
            return Ok(None);
        }
        let term = u64::from_be_bytes(bytes[0..8].try_into().map_err(io_error)?);
        let index = u64::from_be_bytes(bytes[8..16].try_into().map_err(io_error)?);
        Ok(Some(log_id(term, index)))
    }
}

fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A membership as stored in a membership entry's control batch: our own
/// JSON shape, so the bytes on disk do not depend on openraft's serde.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMembership {
    /// One set of voters, or two during a joint change.
    configs: Vec<BTreeSet<NodeId>>,
    nodes: BTreeMap<NodeId, NodeAddr>,
}

pub fn encode_membership(membership: &Membership) -> Vec<u8> {
    let stored = StoredMembership {
        configs: membership.get_joint_config().clone(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect(),
    };
    // A map of plain data: serialising it cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

pub fn decode_membership(bytes: &[u8]) -> io::Result<Membership> {
    let stored: StoredMembership =
        serde_json::from_slice(bytes).map_err(|e| io_error(format!("membership entry: {e}")))?;
    Membership::new(stored.configs, stored.nodes)
        .map_err(|e| io_error(format!("membership entry: {e}")))
}
