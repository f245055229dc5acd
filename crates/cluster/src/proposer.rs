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
use crate::transport::Peers;
use crate::types::{BatchData, BatchPlaced, NodeAddr, NodeId};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a forwarded proposal waits for the leader's answer: a batch is
/// written and replicated in milliseconds; longer means the leader is
/// stuck or gone, and the client retries.
pub const FORWARDED_ANSWER_MS: u64 = 10_000;

/// Why a proposal was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// This node does not lead the group; the leader, if known.
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
        Proposer::spawn(raft, None)
    }

    /// As [`Proposer::start`], but proposals made while another node leads
    /// the group are sent to it (in order).
    pub fn start_forwarding(
        raft: PartitionGroup,
        group: GroupId,
        own_id: NodeId,
        peers: Arc<Peers>,
    ) -> Proposer {
        let forwarding = Forwarding {
            group,
            own_id,
            peers,
        };
        Proposer::spawn(raft, Some(forwarding))
    }

    fn spawn(raft: PartitionGroup, forwarding: Option<Forwarding>) -> Proposer {
        let (queue, submissions) = mpsc::unbounded_channel();
        tokio::spawn(submit_in_order(raft, forwarding, submissions));
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
    mut submissions: mpsc::UnboundedReceiver<Proposal>,
) {
    while let Some(proposal) = submissions.recv().await {
        let leader = match (&forwarding, proposal.forwarded) {
            (Some(f), false) => leader_elsewhere(&raft, f.own_id),
            _ => None,
        };
        match (leader, &forwarding) {
            (Some((leader, addr)), Some(f)) => forward(f, leader, &addr, proposal).await,
            _ => submit_here(&raft, proposal).await,
        }
    }
}

/// The leader this node knows, with its node-to-node address, if it is
/// another node.
fn leader_elsewhere(raft: &PartitionGroup, own_id: NodeId) -> Option<(NodeId, String)> {
    let metrics = raft.metrics().borrow_watched().clone();
    let leader = metrics.current_leader.filter(|l| *l != own_id)?;
    let node = metrics.membership_config.membership().get_node(&leader)?;
    Some((leader, node.cluster_addr.clone()))
}

/// Hands the entry to Raft's core (a channel send, in order); the answer
/// comes when it is applied.
async fn submit_here(raft: &PartitionGroup, proposal: Proposal) {
    let (responder, completed) = ProgressResponder::complete_only();
    if let Err(fatal) = raft
        .client_write_ff(BatchData(proposal.data), Some(responder))
        .await
    {
        let _ = proposal
            .reply
            .send(Err(ProposalError::Unavailable(fatal.to_string())));
        return;
    }
    tokio::spawn(async move {
        let answer = match completed.await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(ClientWriteError::ForwardToLeader(forward))) => Err(ProposalError::NotLeader {
                leader: forward.leader_id,
                leader_node: forward.leader_node,
            }),
            Ok(Err(e)) => Err(ProposalError::Unavailable(e.to_string())),
            Err(_) => Err(ProposalError::Unavailable("the group stopped".into())),
        };
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
