//! The node-to-node wire format of Raft messages: bytes in, typed
//! messages out, no I/O (the transport frames and sends them).
//!
//! Every integer is big-endian. A message is
//! `kind u8 | group | body`; a group is `0` (the metadata group) or
//! `1 | topic (u16 length, UTF-8) | partition u32`. Entries carry their
//! batch as stored, sliced from the frame's buffer, never copied.
//! Decoding checks every length against what is left, so a hostile or torn
//! frame is an error, never a panic or a huge allocation.

use crate::raft_files::{decode_membership, encode_membership};
use crate::types::{
    log_id, term_of, BatchData, BatchPlaced, Entry, LogId, NodeId, PartitionRaft,
    PartitionSnapshot, Snapshot, SnapshotMeta, StoredMembership, Vote,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use openraft::vote::RaftLeaderId;
use openraft::EntryPayload;

/// Which Raft group a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupId {
    Meta,
    Partition { topic: String, partition: u32 },
}

#[derive(Debug)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<PartitionRaft>),
    Vote(VoteRequest<PartitionRaft>),
    /// Would the receiver vote for this candidate? (Nothing is persisted;
    /// answered with a `Vote` response.) Without it a pre-vote round
    /// would be granted by the network itself.
    PreVote(VoteRequest<PartitionRaft>),
    Snapshot {
        vote: Vote,
        snapshot: Snapshot<PartitionSnapshot>,
    },
    /// A proposal forwarded to the node that leads the group (a client or
    /// a node reached a follower): the leader writes it through Raft and
    /// answers once it is applied.
    Propose(Bytes),
    /// A node's heartbeat to another (sent as the metadata group's): the
    /// answer tells the sender the receiver is up and reachable. One per
    /// node pair stands for every partition group they share (`liveness`).
    Heartbeat,
    /// A client's read of a partition this node holds no replica of, sent
    /// to a node that does: its committed records from `offset`, at most
    /// `max_bytes` (the first batch whole), waiting up to `wait_ms` for
    /// some (a long poll). Answered with `Records` or `ReadFailed`.
    Read {
        offset: i64,
        max_bytes: u32,
        wait_ms: u32,
    },
    /// Which incarnation of node `0` the receiver's metadata records (sent
    /// by a node starting with a new data directory, before it takes part
    /// in any group: `docs/cluster.md`, "A wiped data directory").
    /// Answered with `Incarnation`.
    Incarnation(NodeId),
    /// A leader handing its leadership to the receiving member (a node
    /// shutting down: openraft's `transfer_leader`). Answered with
    /// `Transferred`, or `Refused` if the receiver would not take it.
    TransferLeader(TransferLeaderRequest<PartitionRaft>),
}

/// A replica's answer to a [`RaftRequest::Read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecords {
    pub start_offset: i64,
    pub end_offset: i64,
    /// The offset after the last record sent (the asked offset if none).
    pub next_offset: i64,
    /// Stored batches, as the log holds them.
    pub batches: Bytes,
}

#[derive(Debug)]
pub enum RaftResponse {
    AppendEntries(AppendEntriesResponse<PartitionRaft>),
    Vote(VoteResponse<PartitionRaft>),
    Snapshot(SnapshotResponse<PartitionRaft>),
    /// The receiver took a leadership transfer (it now runs an election
    /// that the voters grant despite the old leader's lease).
    Transferred,
    /// Where a forwarded proposal's records were placed, once applied.
    Proposed(BatchPlaced),
    /// The receiver does not lead the group; the leader, if it knows one.
    NotLeader(Option<NodeId>),
    /// The receiver could not handle it (no such group here, a stopped
    /// group); the sender treats it as a network error and retries.
    Refused(String),
    /// The answer to a node heartbeat: the groups that stopped on the
    /// answering node (a storage error is fatal to a Raft core): peers
    /// treat it as down for those groups and elect a new leader; and the
    /// answering node's generation (its Raft members are of that one: a
    /// leader of an older one on that node is gone).
    Alive {
        stopped: Vec<GroupId>,
        generation: u64,
    },
    /// A forwarded proposal was applied and its group's state declined it
    /// (a metadata command the state refuses, alike on every node): why.
    Declined(String),
    /// What a read found.
    Records(RemoteRecords),
    /// A read the replica refused, with the client error's wire code
    /// (`spool_types::ErrorCode`) and message: passed on to the client.
    ReadFailed {
        code: u16,
        message: String,
    },
    /// The incarnation and generation the receiver's metadata records for
    /// the asked node (`None`: it never joined, as far as the receiver has
    /// applied).
    Incarnation(Option<Recorded>),
}

/// What a node's metadata records of a node: the incarnation it joined
/// with and its generation (how many times its data was lost and it was
/// replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub incarnation: String,
    pub generation: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed cluster message: {0}")]
pub struct WireError(pub String);

fn malformed(what: &str) -> WireError {
    WireError(what.to_string())
}

const REQ_APPEND: u8 = 1;
const REQ_VOTE: u8 = 2;
const REQ_SNAPSHOT: u8 = 3;
const REQ_PROPOSE: u8 = 4;
const REQ_HEARTBEAT: u8 = 5;
const REQ_PRE_VOTE: u8 = 6;
const REQ_READ: u8 = 7;
const REQ_INCARNATION: u8 = 8;
const REQ_TRANSFER_LEADER: u8 = 9;
const RESP_APPEND: u8 = 11;
const RESP_VOTE: u8 = 12;
const RESP_SNAPSHOT: u8 = 13;
const RESP_REFUSED: u8 = 14;
const RESP_PROPOSED: u8 = 15;
const RESP_NOT_LEADER: u8 = 16;
const RESP_DECLINED: u8 = 17;
const RESP_ALIVE: u8 = 18;
const RESP_RECORDS: u8 = 19;
const RESP_READ_FAILED: u8 = 20;
const RESP_INCARNATION: u8 = 21;
const RESP_TRANSFERRED: u8 = 22;

const ENTRY_BLANK: u8 = 0;
const ENTRY_NORMAL: u8 = 1;
const ENTRY_MEMBERSHIP: u8 = 2;

const APPEND_SUCCESS: u8 = 0;
const APPEND_PARTIAL: u8 = 1;
const APPEND_CONFLICT: u8 = 2;
const APPEND_HIGHER_VOTE: u8 = 3;

/// The member a request that is not one of Raft's own messages is
/// addressed to: whichever replica the receiving node runs.
pub const ANY_MEMBER: u64 = 0;

/// Encodes `request` for `group`'s replica on the receiving node, addressed
/// to Raft member `to_member` ([`ANY_MEMBER`] for requests that are not
/// Raft's own messages): a replica that is another member refuses it.
pub fn encode_request(group: &GroupId, to_member: u64, request: &RaftRequest, out: &mut BytesMut) {
    match request {
        RaftRequest::AppendEntries(rpc) => {
            out.put_u8(REQ_APPEND);
            put_group(out, group);
            out.put_u64(to_member);
            put_vote(out, &rpc.vote);
            put_opt_log_id(out, rpc.prev_log_id.as_ref());
            put_opt_log_id(out, rpc.leader_commit.as_ref());
            out.put_u32(rpc.entries.len() as u32);
            for entry in &rpc.entries {
                put_entry(out, entry);
            }
        }
        RaftRequest::Vote(rpc) | RaftRequest::PreVote(rpc) => {
            let kind = match request {
                RaftRequest::PreVote(_) => REQ_PRE_VOTE,
                _ => REQ_VOTE,
            };
            out.put_u8(kind);
            put_group(out, group);
            out.put_u64(to_member);
            put_vote(out, &rpc.vote);
            put_opt_log_id(out, rpc.last_log_id.as_ref());
            out.put_u8(u8::from(rpc.leadership_transfer));
        }
        RaftRequest::Snapshot { vote, snapshot } => {
            out.put_u8(REQ_SNAPSHOT);
            put_group(out, group);
            out.put_u64(to_member);
            put_vote(out, vote);
            put_snapshot_meta(out, &snapshot.meta);
            out.put_i64(snapshot.snapshot.next_offset);
        }
        RaftRequest::Propose(data) => {
            out.put_u8(REQ_PROPOSE);
            put_group(out, group);
            out.put_u64(to_member);
            put_bytes(out, data);
        }
        RaftRequest::Heartbeat => {
            out.put_u8(REQ_HEARTBEAT);
            put_group(out, group);
            out.put_u64(to_member);
        }
        RaftRequest::Read {
            offset,
            max_bytes,
            wait_ms,
        } => {
            out.put_u8(REQ_READ);
            put_group(out, group);
            out.put_u64(to_member);
            out.put_i64(*offset);
            out.put_u32(*max_bytes);
            out.put_u32(*wait_ms);
        }
        RaftRequest::Incarnation(id) => {
            out.put_u8(REQ_INCARNATION);
            put_group(out, group);
            out.put_u64(to_member);
            out.put_u64(*id);
        }
        RaftRequest::TransferLeader(rpc) => {
            out.put_u8(REQ_TRANSFER_LEADER);
            put_group(out, group);
            out.put_u64(to_member);
            put_vote(out, rpc.from_leader());
            out.put_u64(*rpc.to_node_id());
            put_opt_log_id(out, rpc.last_log_id());
        }
    }
}

/// A request, the group it is for and the member it is addressed to.
pub fn decode_request(mut buf: Bytes) -> Result<(GroupId, u64, RaftRequest), WireError> {
    let kind = get_u8(&mut buf)?;
    let group = get_group(&mut buf)?;
    let to_member = get_u64(&mut buf)?;
    let request = match kind {
        REQ_APPEND => {
            let vote = get_vote(&mut buf)?;
            let prev_log_id = get_opt_log_id(&mut buf)?;
            let leader_commit = get_opt_log_id(&mut buf)?;
            let count = get_u32(&mut buf)? as usize;
            // Each entry takes at least 17 bytes: no allocation beyond the frame.
            if count > buf.remaining() / 17 + 1 {
                return Err(malformed("entry count beyond the frame"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(get_entry(&mut buf)?);
            }
            RaftRequest::AppendEntries(AppendEntriesRequest {
                vote,
                prev_log_id,
                leader_commit,
                entries,
            })
        }
        REQ_VOTE | REQ_PRE_VOTE => {
            let vote = get_vote(&mut buf)?;
            let last_log_id = get_opt_log_id(&mut buf)?;
            let mut rpc = VoteRequest::new(vote, last_log_id);
            rpc.leadership_transfer = get_u8(&mut buf)? != 0;
            if kind == REQ_PRE_VOTE {
                RaftRequest::PreVote(rpc)
            } else {
                RaftRequest::Vote(rpc)
            }
        }
        REQ_SNAPSHOT => {
            let vote = get_vote(&mut buf)?;
            let meta = get_snapshot_meta(&mut buf)?;
            let next_offset = get_i64(&mut buf)?;
            RaftRequest::Snapshot {
                vote,
                snapshot: Snapshot {
                    meta,
                    snapshot: PartitionSnapshot { next_offset },
                },
            }
        }
        REQ_PROPOSE => RaftRequest::Propose(get_bytes(&mut buf)?),
        REQ_HEARTBEAT => RaftRequest::Heartbeat,
        REQ_READ => RaftRequest::Read {
            offset: get_i64(&mut buf)?,
            max_bytes: get_u32(&mut buf)?,
            wait_ms: get_u32(&mut buf)?,
        },
        REQ_INCARNATION => RaftRequest::Incarnation(get_u64(&mut buf)?),
        REQ_TRANSFER_LEADER => {
            let from = get_vote(&mut buf)?;
            let to = get_u64(&mut buf)?;
            let last_log_id = get_opt_log_id(&mut buf)?;
            RaftRequest::TransferLeader(TransferLeaderRequest::new(from, to, last_log_id))
        }
        _ => return Err(malformed("unknown request kind")),
    };
    expect_end(&buf)?;
    Ok((group, to_member, request))
}

pub fn encode_response(response: &RaftResponse, out: &mut BytesMut) {
    match response {
        RaftResponse::AppendEntries(answer) => {
            out.put_u8(RESP_APPEND);
            match answer {
                AppendEntriesResponse::Success => out.put_u8(APPEND_SUCCESS),
                AppendEntriesResponse::PartialSuccess(matching) => {
                    out.put_u8(APPEND_PARTIAL);
                    put_opt_log_id(out, matching.as_ref());
                }
                AppendEntriesResponse::Conflict => out.put_u8(APPEND_CONFLICT),
                AppendEntriesResponse::HigherVote(vote) => {
                    out.put_u8(APPEND_HIGHER_VOTE);
                    put_vote(out, vote);
                }
            }
        }
        RaftResponse::Vote(answer) => {
            out.put_u8(RESP_VOTE);
            put_vote(out, &answer.vote);
            out.put_u8(u8::from(answer.vote_granted));
            put_opt_log_id(out, answer.last_log_id.as_ref());
        }
        RaftResponse::Snapshot(answer) => {
            out.put_u8(RESP_SNAPSHOT);
            put_vote(out, &answer.vote);
        }
        RaftResponse::Transferred => out.put_u8(RESP_TRANSFERRED),
        RaftResponse::Refused(reason) => {
            out.put_u8(RESP_REFUSED);
            put_bytes(out, reason.as_bytes());
        }
        RaftResponse::Declined(why) => {
            out.put_u8(RESP_DECLINED);
            put_bytes(out, why.as_bytes());
        }
        RaftResponse::Alive {
            stopped,
            generation,
        } => {
            out.put_u8(RESP_ALIVE);
            out.put_u64(*generation);
            out.put_u32(stopped.len() as u32);
            for group in stopped {
                put_group(out, group);
            }
        }
        RaftResponse::Proposed(placed) => {
            out.put_u8(RESP_PROPOSED);
            out.put_i64(placed.base_offset);
            out.put_i64(placed.next_offset);
        }
        RaftResponse::Records(records) => {
            out.put_u8(RESP_RECORDS);
            out.put_i64(records.start_offset);
            out.put_i64(records.end_offset);
            out.put_i64(records.next_offset);
            put_bytes(out, &records.batches);
        }
        RaftResponse::ReadFailed { code, message } => {
            out.put_u8(RESP_READ_FAILED);
            out.put_u16(*code);
            put_bytes(out, message.as_bytes());
        }
        RaftResponse::Incarnation(recorded) => {
            out.put_u8(RESP_INCARNATION);
            match recorded {
                None => out.put_u8(0),
                Some(recorded) => {
                    out.put_u8(1);
                    put_bytes(out, recorded.incarnation.as_bytes());
                    out.put_u64(recorded.generation);
                }
            }
        }
        RaftResponse::NotLeader(leader) => {
            out.put_u8(RESP_NOT_LEADER);
            match leader {
                None => out.put_u8(0),
                Some(id) => {
                    out.put_u8(1);
                    out.put_u64(*id);
                }
            }
        }
    }
}

pub fn decode_response(mut buf: Bytes) -> Result<RaftResponse, WireError> {
    let response = match get_u8(&mut buf)? {
        RESP_APPEND => RaftResponse::AppendEntries(match get_u8(&mut buf)? {
            APPEND_SUCCESS => AppendEntriesResponse::Success,
            APPEND_PARTIAL => AppendEntriesResponse::PartialSuccess(get_opt_log_id(&mut buf)?),
            APPEND_CONFLICT => AppendEntriesResponse::Conflict,
            APPEND_HIGHER_VOTE => AppendEntriesResponse::HigherVote(get_vote(&mut buf)?),
            _ => return Err(malformed("unknown append answer")),
        }),
        RESP_VOTE => {
            let vote = get_vote(&mut buf)?;
            let granted = get_u8(&mut buf)? != 0;
            let last = get_opt_log_id(&mut buf)?;
            RaftResponse::Vote(VoteResponse::new(vote, last, granted))
        }
        RESP_SNAPSHOT => RaftResponse::Snapshot(SnapshotResponse::new(get_vote(&mut buf)?)),
        RESP_TRANSFERRED => RaftResponse::Transferred,
        RESP_REFUSED => {
            let reason = get_bytes(&mut buf)?;
            RaftResponse::Refused(String::from_utf8_lossy(&reason).into_owned())
        }
        RESP_DECLINED => {
            let why = get_bytes(&mut buf)?;
            RaftResponse::Declined(String::from_utf8_lossy(&why).into_owned())
        }
        RESP_ALIVE => {
            let generation = get_u64(&mut buf)?;
            let count = get_u32(&mut buf)? as usize;
            // Each group is at least one byte: a count past what is left
            // is malformed, not an allocation.
            if count > buf.len() {
                return Err(malformed("stopped-group count past the message"));
            }
            let mut stopped = Vec::with_capacity(count);
            for _ in 0..count {
                stopped.push(get_group(&mut buf)?);
            }
            RaftResponse::Alive {
                stopped,
                generation,
            }
        }
        // A hook's answer stays on the leader (it is not data): a
        // forwarded proposal learns where it landed, and `Declined` if
        // the state refused it.
        RESP_PROPOSED => RaftResponse::Proposed(BatchPlaced {
            base_offset: get_i64(&mut buf)?,
            next_offset: get_i64(&mut buf)?,
            answer: None,
        }),
        RESP_RECORDS => RaftResponse::Records(RemoteRecords {
            start_offset: get_i64(&mut buf)?,
            end_offset: get_i64(&mut buf)?,
            next_offset: get_i64(&mut buf)?,
            batches: get_bytes(&mut buf)?,
        }),
        RESP_READ_FAILED => {
            let code = get_u16(&mut buf)?;
            let message = get_bytes(&mut buf)?;
            RaftResponse::ReadFailed {
                code,
                message: String::from_utf8_lossy(&message).into_owned(),
            }
        }
        RESP_INCARNATION => RaftResponse::Incarnation(match get_u8(&mut buf)? {
            0 => None,
            1 => Some(Recorded {
                incarnation: String::from_utf8_lossy(&get_bytes(&mut buf)?).into_owned(),
                generation: get_u64(&mut buf)?,
            }),
            _ => return Err(malformed("bad incarnation tag")),
        }),
        RESP_NOT_LEADER => RaftResponse::NotLeader(match get_u8(&mut buf)? {
            0 => None,
            1 => Some(get_u64(&mut buf)?),
            _ => return Err(malformed("bad leader tag")),
        }),
        _ => return Err(malformed("unknown response kind")),
    };
    expect_end(&buf)?;
    Ok(response)
}

fn expect_end(buf: &Bytes) -> Result<(), WireError> {
    if buf.has_remaining() {
        return Err(malformed("bytes after the message"));
    }
    Ok(())
}

fn put_group(out: &mut BytesMut, group: &GroupId) {
    match group {
        GroupId::Meta => out.put_u8(0),
        GroupId::Partition { topic, partition } => {
            out.put_u8(1);
            out.put_u16(topic.len() as u16);
            out.put_slice(topic.as_bytes());
            out.put_u32(*partition);
        }
    }
}

fn get_group(buf: &mut Bytes) -> Result<GroupId, WireError> {
    match get_u8(buf)? {
        0 => Ok(GroupId::Meta),
        1 => {
            let len = usize::from(get_u16(buf)?);
            let name = take(buf, len)?;
            let topic =
                String::from_utf8(name.to_vec()).map_err(|_| malformed("topic not UTF-8"))?;
            let partition = get_u32(buf)?;
            Ok(GroupId::Partition { topic, partition })
        }
        _ => Err(malformed("unknown group kind")),
    }
}

fn put_vote(out: &mut BytesMut, vote: &Vote) {
    out.put_u64(vote.leader_id.term());
    out.put_u64(*vote.leader_id.node_id());
    out.put_u8(u8::from(vote.committed));
}

fn get_vote(buf: &mut Bytes) -> Result<Vote, WireError> {
    let term = get_u64(buf)?;
    let node = get_u64(buf)?;
    let committed = get_u8(buf)? != 0;
    let mut vote = Vote::new(term, node);
    vote.committed = committed;
    Ok(vote)
}

fn put_opt_log_id(out: &mut BytesMut, id: Option<&LogId>) {
    match id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            out.put_u64(term_of(id));
            out.put_u64(id.index());
        }
    }
}

fn get_opt_log_id(buf: &mut Bytes) -> Result<Option<LogId>, WireError> {
    match get_u8(buf)? {
        0 => Ok(None),
        1 => {
            let term = get_u64(buf)?;
            let index = get_u64(buf)?;
            Ok(Some(log_id(term, index)))
        }
        _ => Err(malformed("bad log id tag")),
    }
}

fn put_entry(out: &mut BytesMut, entry: &Entry) {
    out.put_u64(term_of(&entry.log_id));
    out.put_u64(entry.log_id.index());
    match &entry.payload {
        EntryPayload::Blank => out.put_u8(ENTRY_BLANK),
        EntryPayload::Normal(BatchData(batch)) => {
            out.put_u8(ENTRY_NORMAL);
            put_bytes(out, batch);
        }
        EntryPayload::Membership(membership) => {
            out.put_u8(ENTRY_MEMBERSHIP);
            put_bytes(out, &encode_membership(membership));
        }
    }
}

fn get_entry(buf: &mut Bytes) -> Result<Entry, WireError> {
    let term = get_u64(buf)?;
    let index = get_u64(buf)?;
    let payload = match get_u8(buf)? {
        ENTRY_BLANK => EntryPayload::Blank,
        ENTRY_NORMAL => EntryPayload::Normal(BatchData(get_bytes(buf)?)),
        ENTRY_MEMBERSHIP => {
            let bytes = get_bytes(buf)?;
            EntryPayload::Membership(
                decode_membership(&bytes).map_err(|e| WireError(e.to_string()))?,
            )
        }
        _ => return Err(malformed("unknown entry kind")),
    };
    Ok(Entry {
        log_id: log_id(term, index),
        payload,
    })
}

fn put_snapshot_meta(out: &mut BytesMut, meta: &SnapshotMeta) {
    put_opt_log_id(out, meta.last_log_id.as_ref());
    put_opt_log_id(out, meta.last_membership.log_id().as_ref());
    match meta.last_membership.log_id() {
        Some(_) => put_bytes(out, &encode_membership(meta.last_membership.membership())),
        None => put_bytes(out, &[]),
    }
}

fn get_snapshot_meta(buf: &mut Bytes) -> Result<SnapshotMeta, WireError> {
    let last_log_id = get_opt_log_id(buf)?;
    let membership_log_id = get_opt_log_id(buf)?;
    let membership = get_bytes(buf)?;
    let last_membership = match membership_log_id {
        None => StoredMembership::default(),
        Some(_) => StoredMembership::new(
            membership_log_id,
            decode_membership(&membership).map_err(|e| WireError(e.to_string()))?,
        ),
    };
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
    })
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, WireError> {
    let len = get_u32(buf)? as usize;
    take(buf, len)
}

fn take(buf: &mut Bytes, len: usize) -> Result<Bytes, WireError> {
    if buf.remaining() < len {
        return Err(malformed("length beyond the frame"));
    }
    Ok(buf.split_to(len))
}

macro_rules! getter {
    ($name:ident, $ty:ty, $get:ident, $size:expr) => {
        fn $name(buf: &mut Bytes) -> Result<$ty, WireError> {
            if buf.remaining() < $size {
                return Err(malformed("message ends early"));
            }
            Ok(buf.$get())
        }
    };
}

getter!(get_u8, u8, get_u8, 1);
getter!(get_u16, u16, get_u16, 2);
getter!(get_u32, u32, get_u32, 4);
getter!(get_u64, u64, get_u64, 8);
getter!(get_i64, i64, get_i64, 8);

#[cfg(test)]
mod tests;
