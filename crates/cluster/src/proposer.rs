//! Ordered, pipelined proposals to one group: the order proposals are
//! handed in is the order they enter the Raft log, and none waits for the
//! one before it to commit. (A connection's produces to a partition must be
//! stored in the order they arrived; `client_write` per produce on tasks of
//! their own would race.)
//!
//! A proposer that may forward (`Proposer::start_forwarding`) sends each
//! proposal to the group's leader when this node does not lead it, over
//! the one connection to that node, so forwarded proposals keep their order
//! too; the leader takes them into its own proposer's queue in the order
//! they arrive. A forwarded proposal is never forwarded again: a node that
//! lost the leadership meanwhile answers `NotLeader`, naming the leader it
//! knows, and the client retries.

use crate::groups::PartitionGroup;
use crate::producers::{producer_of, ProducerTable, Verdict};
use crate::transport::Peers;
use crate::types::{node_of, term_of, BatchData, BatchPlaced, NodeAddr, NodeId};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a forwarded proposal waits for the leader's answer: a batch is
/// written and replicated in milliseconds; longer means the leader is
/// stuck or gone, and the client retries.
pub const FORWARDED_ANSWER_MS: u64 = 10_000;

/// Why a proposal was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// This node does not lead the group; the leader's node, if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        leader: Option<NodeId>,
        leader_node: Option<NodeAddr>,
    },
    /// The group stopped, or a leader change left the entry's fate
    /// unknown: the proposer may retry (idempotent producers make that
    /// safe).
    #[error("{0}")]
    Unavailable(String),
    /// An idempotent producer's batch whose sequences are not above those
    /// the partition stored, and which is not one of its last batches.
    #[error("{0}")]
    StaleSequence(String),
}

pub type ProposalAnswer = Result<BatchPlaced, ProposalError>;

struct Proposal {
    data: Bytes,
    /// Arrived from another node: written here or refused, never sent on.
    forwarded: bool,
    reply: oneshot::Sender<ProposalAnswer>,
}

/// Where a forwarding proposer sends what this node does not lead.
struct Forwarding {
    group: GroupId,
    own_id: NodeId,
    peers: Arc<Peers>,
}

type PendingKey = (i64, i32, i32);
type Pending = Arc<std::sync::Mutex<HashMap<PendingKey, watch::Receiver<Option<ProposalAnswer>>>>>;

/// Idempotent producers' batches, checked by the leader before they are
/// written (see `crate::producers`): against the committed ones (the state
/// machine's table) and those this leader wrote in its term and are not
/// answered yet.
struct Dedup {
    producers: Arc<std::sync::Mutex<ProducerTable>>,
    pending: Pending,
    /// The term `pending` is of.
    term: Option<u64>,
}

/// How long a new leader waits for its log's earlier entries to be applied
/// (its table to be complete) before it checks a producer's batch.
const LEADER_READY_MS: u64 = 5_000;

/// The proposal queue of one group on this node.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts submitting to `raft` (its task ends when every `Proposer`
    /// clone is dropped). Proposals made on a follower are refused with
    /// `NotLeader`.
    pub fn start(raft: PartitionGroup) -> Proposer {
        Proposer::spawn(raft, None, None)
    }

    /// As [`Proposer::start`], but proposals made while another node leads
    /// the group are sent to it (in order).
    /// `producers` is the group's state machine's table: batches of
    /// idempotent producers are checked against it here, when leading.
    pub fn start_forwarding(
        raft: PartitionGroup,
        group: GroupId,
        own_id: NodeId,
        peers: Arc<Peers>,
        producers: Arc<std::sync::Mutex<ProducerTable>>,
    ) -> Proposer {
        let forwarding = Forwarding {
            group,
            own_id,
            peers,
        };
        let dedup = Dedup {
            producers,
            pending: Pending::default(),
            term: None,
        };
        Proposer::spawn(raft, Some(forwarding), Some(dedup))
    }

    fn spawn(
        raft: PartitionGroup,
        forwarding: Option<Forwarding>,
        dedup: Option<Dedup>,
    ) -> Proposer {
        let (queue, submissions) = mpsc::unbounded_channel();
        tokio::spawn(submit_in_order(raft, forwarding, dedup, submissions));
        Proposer { queue }
    }

    /// Queues `data`. Not async: calls made one after another are
    /// submitted in that order.
    pub fn propose(&self, data: Bytes) -> oneshot::Receiver<ProposalAnswer> {
        self.queue_proposal(data, false)
    }

    /// Queues a proposal another node forwarded: written only if this
    /// node leads the group.
    pub fn propose_forwarded(&self, data: Bytes) -> oneshot::Receiver<ProposalAnswer> {
        self.queue_proposal(data, true)
    }

    fn queue_proposal(&self, data: Bytes, forwarded: bool) -> oneshot::Receiver<ProposalAnswer> {
        let (reply, answer) = oneshot::channel();
        let proposal = Proposal {
            data,
            forwarded,
            reply,
        };
        if let Err(refused) = self.queue.send(proposal) {
            let _ = refused
                .0
                .reply
                .send(Err(ProposalError::Unavailable("the group stopped".into())));
        }
        answer
    }
}

async fn submit_in_order(
    raft: PartitionGroup,
    forwarding: Option<Forwarding>,
    mut dedup: Option<Dedup>,
    mut submissions: mpsc::UnboundedReceiver<Proposal>,
) {
    while let Some(proposal) = submissions.recv().await {
        let leader = match (&forwarding, proposal.forwarded) {
            (Some(f), false) => leader_elsewhere(&raft, f.own_id),
            _ => None,
        };
        match (leader, &forwarding) {
            (Some((leader, addr)), Some(f)) => forward(f, leader, &addr, proposal).await,
            _ => match (&mut dedup, producer_of(&proposal.data)) {
                (Some(dedup), Some(key)) => submit_checked(&raft, dedup, key, proposal).await,
                _ => submit_here(&raft, proposal, None).await,
            },
        }
    }
}

/// Writes an idempotent producer's batch unless it was written before.
async fn submit_checked(
    raft: &PartitionGroup,
    dedup: &mut Dedup,
    key: PendingKey,
    proposal: Proposal,
) {
    let Some(term) = leading_with_log_applied(raft).await else {
        // Not the leader (or not ready): Raft answers NotLeader.
        return submit_here(raft, proposal, None).await;
    };
    if dedup.term != Some(term) {
        // What was pending in an earlier term is committed (and in the
        // table) or gone.
        lock(&dedup.pending).clear();
        dedup.term = Some(term);
    }
    let pending = lock(&dedup.pending).get(&key).cloned();
    if let Some(mut original) = pending {
        // Sent again while the first is still being written: the same answer.
        tokio::spawn(async move {
            let answer = match original.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone().unwrap_or_else(stopped),
                Err(_) => stopped(),
            };
            let _ = proposal.reply.send(answer);
        });
        return;
    }
    let (producer_id, first_seq, last_seq) = key;
    let verdict = lock(&dedup.producers).check(producer_id, first_seq, last_seq);
    match verdict {
        Verdict::Duplicate(w) => {
            let _ = proposal.reply.send(Ok(BatchPlaced {
                base_offset: w.base_offset,
                next_offset: w.last_offset + 1,
                answer: None,
            }));
        }
        Verdict::Stale { last_seq: stored } => {
            let why = format!(
                "producer {producer_id}: sequences {first_seq}..={last_seq} are not above \
                 {stored}, the last this partition stored, nor one of its last batches"
            );
            let _ = proposal.reply.send(Err(ProposalError::StaleSequence(why)));
        }
        Verdict::New => {
            let (done, original) = watch::channel(None);
            lock(&dedup.pending).insert(key, original);
            let pending = dedup.pending.clone();
            let finish = Box::new(move |answer: &ProposalAnswer| {
                done.send_replace(Some(answer.clone()));
                lock(&pending).remove(&key);
            });
            submit_here(raft, proposal, Some(finish)).await;
        }
    }
}

fn stopped() -> ProposalAnswer {
    Err(ProposalError::Unavailable("the group stopped".into()))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This node's term if it leads the group and has applied its log up to
/// its own first entry of the term (so every earlier entry, whatever its
/// term, is in the producers table); `None` if it does not lead.
async fn leading_with_log_applied(raft: &PartitionGroup) -> Option<u64> {
    use openraft::async_runtime::watch::WatchReceiver as _;
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_READY_MS);
    loop {
        let (state, term, applied_term) = {
            let m = metrics.borrow_watched();
            (
                m.state,
                m.current_term,
                m.last_applied.as_ref().map(term_of),
            )
        };
        if state != openraft::ServerState::Leader {
            return None;
        }
        if applied_term == Some(term) {
            return Some(term);
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// The leader this node knows, with its node-to-node address, if it is
/// another node.
fn leader_elsewhere(raft: &PartitionGroup, own_id: NodeId) -> Option<(NodeId, String)> {
    let metrics = raft.metrics().borrow_watched().clone();
    let leader = metrics.current_leader.filter(|l| node_of(*l) != own_id)?;
    let node = metrics.membership_config.membership().get_node(&leader)?;
    Some((node_of(leader), node.cluster_addr.clone()))
}

/// A leader's write lease older than this is renewed before a write.
/// openraft refuses writes once a leader's last quorum acknowledgement is
/// older than its lease (the election timeout's maximum, 600 ms); partition
/// groups send no heartbeats to keep it fresh (`crate::liveness`), so the
/// first write after a quiet spell renews it with one heartbeat round trip.
const LEASE_FRESH_MS: u64 = 300;
/// How long a write waits for that renewal.
const LEASE_RENEW_WAIT_MS: u64 = 1_000;

/// Renews this node's leader lease with a heartbeat if it is about to
/// run out (nothing to do on a follower, or while writes keep it fresh).
pub async fn renew_lease(raft: &PartitionGroup) {
    use openraft::async_runtime::watch::WatchReceiver as _;
    use openraft::Instant as _;
    let fresh = Duration::from_millis(LEASE_FRESH_MS);
    let is_fresh = |m: &openraft::RaftMetrics<crate::types::PartitionRaft>| {
        m.state != openraft::ServerState::Leader
            // A group whose only voter is this node is its own quorum: it
            // has no lease to renew (openraft reports no quorum time for
            // it, so waiting for one took the whole wait, every write).
            || m.membership_config.membership().voter_ids().count() <= 1
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() < fresh)
    };
    let mut metrics = raft.metrics();
    if is_fresh(&metrics.borrow_watched()) {
        return;
    }
    if raft.trigger().heartbeat().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEASE_RENEW_WAIT_MS);
    while !is_fresh(&metrics.borrow_watched()) {
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Called with a proposal's answer before its proposer gets it.
type OnAnswer = Box<dyn FnOnce(&ProposalAnswer) + Send>;

/// Hands the entry to Raft's core (a channel send, in order); the answer
/// comes when it is applied.
async fn submit_here(raft: &PartitionGroup, proposal: Proposal, on_answer: Option<OnAnswer>) {
    if crate::groups::is_stopped(raft) {
        // Nothing is stored: as from a follower that knows no leader (the
        // others elect one; openraft would log each refused write as an
        // error while a full disk keeps the group stopped).
        let answer = Err(ProposalError::NotLeader {
            leader: None,
            leader_node: None,
        });
        if let Some(on_answer) = on_answer {
            on_answer(&answer);
        }
        let _ = proposal.reply.send(answer);
        return;
    }
    renew_lease(raft).await;
    let (responder, completed) = ProgressResponder::complete_only();
    if let Err(fatal) = raft
        .client_write_ff(BatchData(proposal.data), Some(responder))
        .await
    {
        let answer = Err(ProposalError::Unavailable(fatal.to_string()));
        if let Some(on_answer) = on_answer {
            on_answer(&answer);
        }
        let _ = proposal.reply.send(answer);
        return;
    }
    tokio::spawn(async move {
        let answer = match completed.await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(ClientWriteError::ForwardToLeader(forward))) => Err(ProposalError::NotLeader {
                leader: forward.leader_id.map(node_of),
                leader_node: forward.leader_node,
            }),
            Ok(Err(e)) => Err(ProposalError::Unavailable(e.to_string())),
            Err(_) => Err(ProposalError::Unavailable("the group stopped".into())),
        };
        if let Some(on_answer) = on_answer {
            on_answer(&answer);
        }
        let _ = proposal.reply.send(answer);
    });
}

/// Sends the proposal to the leader (in order: the send completes before
/// the next proposal is looked at) and answers when the leader does.
async fn forward(f: &Forwarding, leader: NodeId, addr: &str, proposal: Proposal) {
    let peer = f.peers.peer(leader, addr);
    let request = RaftRequest::Propose(proposal.data);
    let sent = match peer.send(&f.group, &request).await {
        Ok(sent) => sent,
        Err(e) => {
            // Not sent, so not stored: as good as no leader known (the
            // one this node knows is unreachable), and safe to retry.
            tracing::debug!(leader, "forwarding a proposal: {e}");
            let _ = proposal.reply.send(Err(ProposalError::NotLeader {
                leader: None,
                leader_node: None,
            }));
            return;
        }
    };
    tokio::spawn(async move {
        let timeout = Duration::from_millis(FORWARDED_ANSWER_MS);
        let answer = match sent.answer(timeout).await {
            Ok(RaftResponse::Proposed(placed)) => Ok(placed),
            Ok(RaftResponse::NotLeader(hint)) => Err(ProposalError::NotLeader {
                leader: hint,
                leader_node: None,
            }),
            Ok(RaftResponse::Refused(reason)) => Err(ProposalError::Unavailable(reason)),
            Ok(RaftResponse::Declined(why)) => Err(ProposalError::StaleSequence(why)),
            Ok(other) => Err(ProposalError::Unavailable(format!(
                "node {leader} answered a proposal with {other:?}"
            ))),
            Err(e) => Err(ProposalError::Unavailable(format!(
                "forwarded to node {leader}: {e}"
            ))),
        };
        let _ = proposal.reply.send(answer);
    });
}
