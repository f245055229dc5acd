//! Produce to a partition this node holds no replica of (a topic with
//! fewer replicas than the cluster has nodes): the batch is sent, in
//! order, to the node believed to lead it — the last leader another node
//! named, else the partition's preferred leader — whose proposer writes it
//! (a forwarded proposal is never forwarded again). A `NOT_LEADER` answer
//! names the leader, remembered for the next batch; the client sends the
//! refused batch again (nothing of it was stored).

use super::Cluster;
use bytes::Bytes;
use spool_cluster::proposer::{ProposalAnswer, ProposalError, FORWARDED_ANSWER_MS};
use spool_cluster::types::NodeId;
use spool_cluster::wire::{GroupId, RaftResponse};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(super) struct Remote {
    data: Bytes,
    reply: oneshot::Sender<ProposalAnswer>,
}

/// The ordered queue of one partition not hosted here.
#[derive(Clone)]
pub(super) struct RemoteProposer {
    queue: mpsc::UnboundedSender<Remote>,
}

impl RemoteProposer {
    pub(super) fn start(cluster: Weak<Cluster>, topic: String, partition: u32) -> RemoteProposer {
        let (queue, proposals) = mpsc::unbounded_channel();
        tokio::spawn(send_in_order(cluster, topic, partition, proposals));
        RemoteProposer { queue }
    }

    pub(super) fn propose(&self, data: Bytes) -> oneshot::Receiver<ProposalAnswer> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.queue.send(Remote { data, reply }) {
            let _ = refused.0.reply.send(Err(ProposalError::Unavailable(
                "this node is stopping".into(),
            )));
        }
        answer
    }
}

async fn send_in_order(
    cluster: Weak<Cluster>,
    topic: String,
    partition: u32,
    mut proposals: mpsc::UnboundedReceiver<Remote>,
) {
    let group = GroupId::Partition {
        topic: topic.clone(),
        partition,
    };
    let hint: Arc<std::sync::Mutex<Option<NodeId>>> = Arc::default();
    while let Some(proposal) = proposals.recv().await {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let known = *hint.lock().unwrap_or_else(|p| p.into_inner());
        let Some((to, addr)) = cluster.leader_guess(&topic, partition, known) else {
            let _ = proposal.reply.send(not_sent());
            continue;
        };
        let sent = cluster
            .node
            .send_proposal(&group, to, &addr, proposal.data)
            .await;
        let Ok(sent) = sent else {
            *hint.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let _ = proposal.reply.send(not_sent());
            continue;
        };
        let hint = hint.clone();
        tokio::spawn(async move {
            let answer = match sent
                .answer(Duration::from_millis(FORWARDED_ANSWER_MS))
                .await
            {
                Ok(RaftResponse::Proposed(placed)) => Ok(placed),
                Ok(RaftResponse::NotLeader(leader)) => {
                    *hint.lock().unwrap_or_else(|p| p.into_inner()) = leader.filter(|l| *l != to);
                    Err(ProposalError::NotLeader {
                        leader,
                        leader_node: None,
                    })
                }
                Ok(RaftResponse::Declined(why)) => Err(ProposalError::StaleSequence(why)),
                Ok(other) => Err(ProposalError::Unavailable(format!(
                    "node {to} answered a proposal with {other:?}"
                ))),
                Err(e) => Err(ProposalError::Unavailable(format!(
                    "forwarded to node {to}: {e}"
                ))),
            };
            let _ = proposal.reply.send(answer);
        });
    }
}

/// Not sent, so not stored: the client may send it again.
fn not_sent() -> ProposalAnswer {
    Err(ProposalError::NotLeader {
        leader: None,
        leader_node: None,
    })
}
