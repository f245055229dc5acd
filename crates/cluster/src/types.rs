//! The openraft type configuration of a partition group, and the
//! translation between openraft's log positions and the entry-mode log's.

use bytes::Bytes;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A node's number in the cluster (`--node-id`). Never reused for a node
/// that starts with an empty data directory (docs/cluster.md: incarnations).
pub type NodeId = u64;

/// Node ids are below this: a Raft member id keeps the node id in its low
/// 48 bits and the node's generation above them ([`member_id`]).
pub const NODE_ID_END: NodeId = 1 << MEMBER_NODE_BITS;

/// Bits of a member id that hold the node id.
const MEMBER_NODE_BITS: u32 = 48;

/// A Raft group member's id (openraft's `NodeId`): node `node` in its
/// `generation`. Generation 0 is a node's first data directory, so its
/// member id is its node id; a node that lost its data and was replaced
/// comes back in the next generation as a new member, and its old self's
/// votes and acknowledgements stay counted only under the old id
/// (docs/cluster.md, "A wiped data directory").
pub fn member_id(node: NodeId, generation: u64) -> u64 {
    debug_assert!(node < NODE_ID_END, "node ids are checked at the edge");
    node | (generation << MEMBER_NODE_BITS)
}

/// Generations are below this: they fill the 16 bits above a member id's
/// node id.
pub const GENERATION_END: u64 = 1 << (64 - MEMBER_NODE_BITS);

/// The node a member id belongs to.
pub fn node_of(member: u64) -> NodeId {
    member & (NODE_ID_END - 1)
}

/// The generation of a member id.
pub fn generation_of(member: u64) -> u64 {
    member >> MEMBER_NODE_BITS
}

/// Where a node is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeAddr {
    /// The binary protocol listener clients use (`--listen`).
    pub client_addr: String,
    /// The node-to-node listener (`--cluster-listen`).
    pub cluster_addr: String,
}

/// What a produce proposes: one record batch, exactly as the producer
/// encoded it (validated by the leader before it is proposed). Read back
/// from the log it is the stored batch (its `baseOffset` and
/// `partitionLeaderEpoch` written by the log).
#[derive(Clone, PartialEq, Eq)]
pub struct BatchData(pub Bytes);

impl fmt::Debug for BatchData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchData({} bytes)", self.0.len())
    }
}

impl fmt::Display for BatchData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.0.len())
    }
}

/// Where an applied entry's records are: `base_offset..next_offset` (empty
/// for blank and membership entries), and what the group's apply hook
/// answered for it.
#[derive(Debug, Clone, Default)]
pub struct BatchPlaced {
    pub base_offset: i64,
    pub next_offset: i64,
    /// The answer of the group's [`AppliedHook`](crate::partition::AppliedHook)
    /// for this entry (the metadata group: the command's outcome, applied
    /// or refused). Always `None` in partition groups, which have no hook.
    pub answer: Option<AppliedAnswer>,
}

/// A hook's answer to the proposer of an entry. Opaque to the partition
/// machinery: the hook's own module knows its type and downcasts it, so
/// this crate's groups need no type parameter per kind of hook.
#[derive(Clone)]
pub struct AppliedAnswer(Arc<dyn Any + Send + Sync>);

impl AppliedAnswer {
    pub fn new<T: Any + Send + Sync>(answer: T) -> AppliedAnswer {
        AppliedAnswer(Arc::new(answer))
    }

    /// The answer, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for AppliedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppliedAnswer(..)")
    }
}

/// What a snapshot carries: the state after its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionSnapshot {
    /// The offset after the last committed record.
    pub next_offset: i64,
}

/// Bytes of entries one replication request carries at most (openraft
/// counts entries, not bytes: 300 entries of 1 MiB batches would be one
/// 300 MiB message).
pub const REPLICATION_BYTES_MAX: usize = 8 << 20;

openraft::declare_raft_types!(
    /// A partition's Raft group: entries are record batches; standard Raft
    /// leader ids (one leader per term), so an entry's log id is (term,
    /// index) and its term fits the batch's `partitionLeaderEpoch`.
    pub PartitionRaft:
        D = BatchData,
        R = BatchPlaced,
        NodeId = NodeId,
        Node = NodeAddr,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

/// A log id of standard Raft: the term (of the leader that proposed the
/// entry) and the index.
pub type CommittedLeaderId = openraft::vote::leader_id_std::CommittedLeaderId<u64>;
pub type LogId = openraft::LogId<CommittedLeaderId>;
pub type Entry = <PartitionRaft as openraft::RaftTypeConfig>::Entry;
pub type Vote = <PartitionRaft as openraft::RaftTypeConfig>::Vote;
pub type Membership = openraft::Membership<NodeId, NodeAddr>;
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, NodeId, NodeAddr>;
pub type Snapshot<Data> = openraft::Snapshot<CommittedLeaderId, NodeId, NodeAddr, Data>;

/// openraft numbers entries from 0 (`initialize` writes index 0); the
/// entry-mode log numbers them from 1.
pub fn log_entry_index(raft_index: u64) -> u64 {
    raft_index + 1
}

/// The inverse of [`log_entry_index`].
pub fn raft_index(log_entry_index: u64) -> u64 {
    log_entry_index - 1
}

pub fn log_id(term: u64, raft_index: u64) -> LogId {
    openraft::LogId::new_term_index(term, raft_index)
}

/// The term of a log id.
pub fn term_of(log_id: &LogId) -> u64 {
    **log_id.committed_leader_id()
}
