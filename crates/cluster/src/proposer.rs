//! Ordered, pipelined proposals to one group: the order proposals are
//! handed in is the order they enter the Raft log, and none waits for the
//! one before it to commit. (A connection's produces to a partition must be
//! stored in the order they arrived; `client_write` per produce on tasks of
//! their own would race.)

use crate::groups::PartitionGroup;
use crate::types::{BatchData, BatchPlaced, NodeAddr, NodeId};
use bytes::Bytes;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use tokio::sync::{mpsc, oneshot};

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
    reply: oneshot::Sender<ProposalAnswer>,
}

/// The proposal queue of one group on this node.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts submitting to `raft` (its task ends when every `Proposer`
    /// clone is dropped).
    pub fn start(raft: PartitionGroup) -> Proposer {
        let (queue, submissions) = mpsc::unbounded_channel();
        tokio::spawn(submit_in_order(raft, submissions));
        Proposer { queue }
    }

    /// Queues `data`. Not async: calls made one after another are
    /// submitted in that order.
    pub fn propose(&self, data: Bytes) -> oneshot::Receiver<ProposalAnswer> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.queue.send(Proposal { data, reply }) {
            let _ = refused
                .0
                .reply
                .send(Err(ProposalError::Unavailable("the group stopped".into())));
        }
        answer
    }
}

async fn submit_in_order(raft: PartitionGroup, mut submissions: mpsc::UnboundedReceiver<Proposal>) {
    while let Some(proposal) = submissions.recv().await {
        let (responder, completed) = ProgressResponder::complete_only();
        // Hands the entry to Raft's core (a channel send, in order); the
        // answer comes when it is applied.
        if let Err(fatal) = raft
            .client_write_ff(BatchData(proposal.data), Some(responder))
            .await
        {
            let _ = proposal
                .reply
                .send(Err(ProposalError::Unavailable(fatal.to_string())));
            continue;
        }
        tokio::spawn(async move {
            let answer = match completed.await {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(ProposalError::NotLeader {
                        leader: forward.leader_id,
                        leader_node: forward.leader_node,
                    })
                }
                Ok(Err(e)) => Err(ProposalError::Unavailable(e.to_string())),
                Err(_) => Err(ProposalError::Unavailable("the group stopped".into())),
            };
            let _ = proposal.reply.send(answer);
        });
    }
}
