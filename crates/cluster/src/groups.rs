//! The Raft groups a node hosts, by [`GroupId`]: where incoming Raft
//! messages are delivered.

use crate::partition::{PartitionStateMachine, RetentionPass};
use crate::proposer::{ProposalAnswer, ProposalError, Proposer};
use crate::transport::Inbound;
use crate::types::{NodeId, PartitionRaft};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::RwLock;

/// A partition's Raft group as this node runs it.
pub type PartitionGroup = openraft::Raft<PartitionRaft, PartitionStateMachine>;

/// One group as this node hosts it.
struct Hosted {
    raft: PartitionGroup,
    /// The ordered proposal queue (partition groups): forwarded proposals
    /// join it in the order they arrived.
    proposer: Option<Proposer>,
    /// Its replicas in order of preference for leading (the placement's:
    /// the preferred leader first); empty for the metadata group.
    preference: Vec<NodeId>,
    /// Its log's retention (partition groups).
    retention: Option<RetentionPass>,
}

/// A partition group's parts besides its Raft core.
pub struct PartitionParts {
    pub proposer: Proposer,
    pub preference: Vec<NodeId>,
    pub retention: RetentionPass,
}

/// Serves other nodes' reads of partitions hosted here (the server's
/// operations layer: committed records only, with its long poll). The
/// answer is `Records` or `ReadFailed`.
pub trait ReadsHere: Send + Sync + 'static {
    fn read(
        &self,
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        wait_ms: u64,
    ) -> BoxFuture<'static, RaftResponse>;
}

/// The generation a node reports before it knows its own.
pub const JOINING: u64 = u64::MAX;

pub struct Groups {
    hosted: RwLock<HashMap<GroupId, Hosted>>,
    reads: std::sync::OnceLock<std::sync::Arc<dyn ReadsHere>>,
    /// The metadata this node has applied, for peers asking which
    /// incarnation of a node it records.
    known_nodes: std::sync::OnceLock<std::sync::Arc<crate::meta::MetaHook>>,
    /// This node's generation, told to peers with each heartbeat answer
    /// (set once the node knows it, before any group runs; until then
    /// [`JOINING`], which matches no member: a node back from a lost
    /// disk is not taken for its old self while it joins).
    generation: std::sync::atomic::AtomicU64,
    /// Groups whose leadership another node handed to this one (it was
    /// stopping), not yet looked at: why this node leads them.
    handed_over: std::sync::Mutex<std::collections::HashSet<GroupId>>,
}

impl Default for Groups {
    fn default() -> Groups {
        Groups {
            hosted: RwLock::default(),
            reads: std::sync::OnceLock::new(),
            known_nodes: std::sync::OnceLock::new(),
            generation: std::sync::atomic::AtomicU64::new(JOINING),
            handed_over: std::sync::Mutex::default(),
        }
    }
}

impl Groups {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Hosted>> {
        self.hosted.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, Hosted>> {
        self.hosted.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where reads from other nodes go; set once, when the server's
    /// operations layer exists (until then they are refused).
    pub fn serve_reads(&self, reads: std::sync::Arc<dyn ReadsHere>) {
        let _ = self.reads.set(reads);
    }

    /// Where peers' questions about recorded incarnations are answered
    /// from; set once its metadata is replayed (until then they are
    /// refused, not answered "none recorded").
    pub fn answer_incarnations_from(&self, meta: std::sync::Arc<crate::meta::MetaHook>) {
        let _ = self.known_nodes.set(meta);
    }

    /// The incarnation and generation of node `id` the applied metadata
    /// records.
    fn recorded_incarnation(&self, id: NodeId) -> Option<crate::wire::Recorded> {
        let meta = self.known_nodes.get()?;
        let state = meta.read();
        state.node(id).map(|n| crate::wire::Recorded {
            incarnation: n.incarnation.clone(),
            generation: n.generation,
        })
    }

    /// Whether another node handed `group`'s leadership to this one since
    /// the last call (and forgets it).
    pub fn take_handover(&self, group: &GroupId) -> bool {
        self.handed_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group)
    }

    /// Sets the generation heartbeat answers report.
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .store(generation, std::sync::atomic::Ordering::Relaxed);
    }

    /// A group with nothing but its Raft core (the metadata group).
    pub fn insert(&self, id: GroupId, raft: PartitionGroup) {
        let hosted = Hosted {
            raft,
            proposer: None,
            preference: Vec::new(),
            retention: None,
        };
        self.write().insert(id, hosted);
    }

    pub fn insert_partition(&self, id: GroupId, raft: PartitionGroup, parts: PartitionParts) {
        let hosted = Hosted {
            raft,
            proposer: Some(parts.proposer),
            preference: parts.preference,
            retention: Some(parts.retention),
        };
        self.write().insert(id, hosted);
    }

    /// The groups whose Raft core stopped here (a fatal storage error, a
    /// shutdown), which this node can neither lead nor follow in.
    pub fn stopped(&self) -> Vec<GroupId> {
        self.read()
            .iter()
            .filter(|(_, h)| is_stopped(&h.raft))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether this node hosts `id` and its Raft core stopped here.
    pub fn stopped_here(&self, id: &GroupId) -> bool {
        self.read().get(id).is_some_and(|h| is_stopped(&h.raft))
    }

    /// The groups whose Raft core stopped on a storage error (a full
    /// disk), with the error: not shut down, and worth reopening once the
    /// cause is gone (see the server's reconciliation).
    pub fn stopped_on_storage_error(&self) -> Vec<(GroupId, String)> {
        self.read()
            .iter()
            .filter_map(|(id, h)| storage_error(&h.raft).map(|e| (id.clone(), e)))
            .collect()
    }

    /// Every partition group (not the metadata group) with its preference.
    pub fn partitions(&self) -> Vec<(GroupId, PartitionGroup, Vec<NodeId>)> {
        self.read()
            .iter()
            .filter(|(id, _)| **id != GroupId::Meta)
            .map(|(id, h)| (id.clone(), h.raft.clone(), h.preference.clone()))
            .collect()
    }

    /// Every running group with a retention pass, and the pass.
    pub fn retention_passes(&self) -> Vec<(GroupId, PartitionGroup, RetentionPass)> {
        self.read()
            .iter()
            .filter(|(_, h)| !is_stopped(&h.raft))
            .filter_map(|(id, h)| {
                let pass = h.retention.clone()?;
                Some((id.clone(), h.raft.clone(), pass))
            })
            .collect()
    }

    pub fn proposer(&self, id: &GroupId) -> Option<Proposer> {
        self.read().get(id).and_then(|h| h.proposer.clone())
    }

    pub fn remove(&self, id: &GroupId) -> Option<PartitionGroup> {
        self.write().remove(id).map(|h| h.raft)
    }

    /// Every group, for shutting them down.
    pub fn all(&self) -> Vec<PartitionGroup> {
        self.read().values().map(|h| h.raft.clone()).collect()
    }

    pub fn get(&self, id: &GroupId) -> Option<PartitionGroup> {
        self.read().get(id).map(|h| h.raft.clone())
    }
}

/// Whether the group's Raft core stopped (a fatal storage error, a
/// shutdown).
pub(crate) fn is_stopped(raft: &PartitionGroup) -> bool {
    use openraft::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().running_state.is_err()
}

/// The storage error that stopped the group's Raft core, if that is what
/// stopped it.
fn storage_error(raft: &PartitionGroup) -> Option<String> {
    use openraft::async_runtime::WatchReceiver;
    match &raft.metrics().borrow_watched().running_state {
        Err(openraft::error::Fatal::StorageError(e)) => Some(e.to_string()),
        _ => None,
    }
}

impl Inbound for Groups {
    fn handle(
        &self,
        group: GroupId,
        to_member: u64,
        request: RaftRequest,
    ) -> BoxFuture<'static, RaftResponse> {
        if let RaftRequest::Heartbeat = request {
            let stopped = self.stopped();
            let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
            return Box::pin(async move {
                RaftResponse::Alive {
                    stopped,
                    generation,
                }
            });
        }
        if let RaftRequest::Incarnation(id) = request {
            // Answered before any group exists (a starting node asks it),
            // but only from metadata replayed up to its commit point.
            let answer = match self.known_nodes.get() {
                Some(_) => RaftResponse::Incarnation(self.recorded_incarnation(id)),
                None => RaftResponse::Refused("this node's metadata is not loaded yet".into()),
            };
            return Box::pin(async move { answer });
        }
        let Some(raft) = self.get(&group) else {
            // Not created here yet (its topic is still being created) or
            // already deleted: the sender retries.
            let reason = format!("no group {group:?} on this node");
            return Box::pin(async move { RaftResponse::Refused(reason) });
        };
        if let (
            RaftRequest::Read {
                offset,
                max_bytes,
                wait_ms,
            },
            GroupId::Partition { topic, partition },
        ) = (&request, &group)
        {
            // Committed records stay readable on a stopped replica.
            return match self.reads.get() {
                Some(reads) => reads.read(
                    topic.clone(),
                    *partition,
                    *offset,
                    *max_bytes as usize,
                    u64::from(*wait_ms),
                ),
                None => Box::pin(async { RaftResponse::Refused("not serving reads yet".into()) }),
            };
        }
        if is_stopped(&raft) {
            // Answered here: openraft would log every message to a stopped
            // core as an error (a full disk would fill the log with them).
            // A proposal is told nothing was stored, as by a follower.
            let answer = match request {
                RaftRequest::Propose(_) => RaftResponse::NotLeader(None),
                _ => RaftResponse::Refused("the group stopped".into()),
            };
            return Box::pin(async move { answer });
        }
        if let Some(refusal) = wrong_member(&raft, to_member, &request) {
            return Box::pin(async move { refusal });
        }
        if let RaftRequest::TransferLeader(rpc) = &request {
            // Sent to every voter (each resets its lease); only the target
            // takes over.
            use openraft::async_runtime::WatchReceiver;
            if *rpc.to_node_id() == raft.metrics().borrow_watched().id {
                self.handed_over
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(group.clone());
            }
        }
        if let RaftRequest::Propose(data) = request {
            return match self.proposer(&group) {
                // Queued now, before the future runs: in arrival order.
                Some(proposer) => {
                    let answer = proposer.propose_forwarded(data);
                    Box::pin(async move { forwarded_answer(answer.await) })
                }
                None => Box::pin(async move { propose_here(&raft, data).await }),
            };
        }
        Box::pin(async move {
            match request {
                RaftRequest::AppendEntries(rpc) => match raft.append_entries(rpc).await {
                    Ok(answer) => RaftResponse::AppendEntries(answer),
                    Err(e) => RaftResponse::Refused(e.to_string()),
                },
                RaftRequest::Vote(rpc) => vote_answer(raft.vote(rpc).await),
                RaftRequest::PreVote(rpc) => vote_answer(raft.pre_vote(rpc).await),
                RaftRequest::Propose(data) => propose_here(&raft, data).await,
                // Answered above, before the group is looked up.
                RaftRequest::Heartbeat => RaftResponse::Alive {
                    stopped: Vec::new(),
                    generation: 0,
                },
                // Answered above (a read of the metadata group is refused).
                RaftRequest::Read { .. } => RaftResponse::Refused("not a partition".into()),
                RaftRequest::Incarnation(_) => RaftResponse::Incarnation(None),
                RaftRequest::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
                    Ok(Ok(())) => RaftResponse::Transferred,
                    Ok(Err(refused)) => RaftResponse::Refused(refused.to_string()),
                    Err(e) => RaftResponse::Refused(e.to_string()),
                },
                RaftRequest::Snapshot { vote, snapshot } => {
                    match raft.install_full_snapshot(vote, snapshot).await {
                        Ok(answer) => RaftResponse::Snapshot(answer),
                        Err(e) => RaftResponse::Refused(e.to_string()),
                    }
                }
            }
        })
    }
}

/// A Raft message addressed to another member than this node's replica
/// of the group: refused. After a node lost its data and came back as a
/// new member, its old self may still be a voter, and the new, empty
/// replica must never vote or acknowledge entries in its place.
fn wrong_member(
    raft: &PartitionGroup,
    to_member: u64,
    request: &RaftRequest,
) -> Option<RaftResponse> {
    use openraft::async_runtime::WatchReceiver;
    let raft_message = matches!(
        request,
        RaftRequest::AppendEntries(_)
            | RaftRequest::Vote(_)
            | RaftRequest::PreVote(_)
            | RaftRequest::Snapshot { .. }
            | RaftRequest::TransferLeader(_)
    );
    let me = raft.metrics().borrow_watched().id;
    (raft_message && to_member != crate::wire::ANY_MEMBER && to_member != me).then(|| {
        RaftResponse::Refused(format!(
            "addressed to member {to_member} (node {}, generation {}); this node's replica is \
             generation {}",
            crate::types::node_of(to_member),
            crate::types::generation_of(to_member),
            crate::types::generation_of(me),
        ))
    })
}

fn vote_answer<E: std::fmt::Display>(
    answer: Result<openraft::raft::VoteResponse<PartitionRaft>, E>,
) -> RaftResponse {
    match answer {
        Ok(answer) => RaftResponse::Vote(answer),
        Err(e) => RaftResponse::Refused(e.to_string()),
    }
}

/// A forwarded proposal's answer from the group's proposer.
fn forwarded_answer(
    answer: Result<ProposalAnswer, tokio::sync::oneshot::error::RecvError>,
) -> RaftResponse {
    match answer {
        Ok(Ok(placed)) => RaftResponse::Proposed(placed),
        Ok(Err(ProposalError::NotLeader { leader, .. })) => RaftResponse::NotLeader(leader),
        Ok(Err(ProposalError::Unavailable(reason))) => RaftResponse::Refused(reason),
        Ok(Err(ProposalError::StaleSequence(why))) => RaftResponse::Declined(why),
        Err(_) => RaftResponse::Refused("the group stopped".into()),
    }
}

/// Writes a forwarded proposal if this node leads the group; otherwise
/// names the leader it knows (the sender asks it; proposals are never
/// forwarded twice, so a wrong hint costs a retry, not a loop).
async fn propose_here(raft: &PartitionGroup, data: bytes::Bytes) -> RaftResponse {
    use openraft::error::{ClientWriteError, RaftError};
    // Bounded as the sender's wait is (`Node::propose`): a leader without
    // its majority would hold the write, and this task, indefinitely.
    let timeout = std::time::Duration::from_millis(crate::node::FORWARD_TIMEOUT_MS);
    let written = tokio::time::timeout(timeout, raft.client_write(crate::types::BatchData(data)));
    match written.await {
        Ok(Ok(written)) => match crate::meta::answer_of(&written.data) {
            Some(Err(refusal)) => RaftResponse::Declined(refusal.to_string()),
            _ => RaftResponse::Proposed(written.data),
        },
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            RaftResponse::NotLeader(forward.leader_id.map(crate::types::node_of))
        }
        Ok(Err(e)) => RaftResponse::Refused(e.to_string()),
        Err(_) => RaftResponse::Refused("not committed in time (no majority?)".into()),
    }
}
