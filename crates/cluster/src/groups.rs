//! The Raft groups a node hosts, by [`GroupId`]: where incoming Raft
//! messages are delivered.

use crate::partition::PartitionStateMachine;
use crate::proposer::{ProposalAnswer, ProposalError, Proposer};
use crate::transport::Inbound;
use crate::types::PartitionRaft;
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::RwLock;

/// A partition's Raft group as this node runs it.
pub type PartitionGroup = openraft::Raft<PartitionRaft, PartitionStateMachine>;

#[derive(Default)]
pub struct Groups {
    partitions: RwLock<HashMap<GroupId, PartitionGroup>>,
    /// The ordered proposal queue of each group that has one: forwarded
    /// proposals join it in the order they arrived.
    proposers: RwLock<HashMap<GroupId, Proposer>>,
    /// Per partition group, its replicas in order of preference for
    /// leading (the placement's: the preferred leader first).
    preferences: RwLock<HashMap<GroupId, Vec<crate::types::NodeId>>>,
}

impl Groups {
    pub fn insert(&self, id: GroupId, group: PartitionGroup) {
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, group);
    }

    pub fn set_preference(&self, id: GroupId, preference: Vec<crate::types::NodeId>) {
        self.preferences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, preference);
    }

    /// The groups whose Raft core stopped here (a fatal storage error, a
    /// shutdown), which this node can neither lead nor follow in.
    pub fn stopped(&self) -> Vec<GroupId> {
        use openraft::async_runtime::WatchReceiver;
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, raft)| raft.metrics().borrow_watched().running_state.is_err())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every partition group (not the metadata group) with its preference.
    pub fn partitions(&self) -> Vec<(GroupId, PartitionGroup, Vec<crate::types::NodeId>)> {
        let preferences = self.preferences.read().unwrap_or_else(|p| p.into_inner());
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(id, _)| **id != GroupId::Meta)
            .map(|(id, raft)| {
                let preference = preferences.get(id).cloned().unwrap_or_default();
                (id.clone(), raft.clone(), preference)
            })
            .collect()
    }

    pub fn set_proposer(&self, id: GroupId, proposer: Proposer) {
        self.proposers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, proposer);
    }

    pub fn proposer(&self, id: &GroupId) -> Option<Proposer> {
        self.proposers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn remove(&self, id: &GroupId) -> Option<PartitionGroup> {
        self.preferences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.proposers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Every group, for shutting them down.
    pub fn all(&self) -> Vec<PartitionGroup> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &GroupId) -> Option<PartitionGroup> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

impl Inbound for Groups {
    fn handle(&self, group: GroupId, request: RaftRequest) -> BoxFuture<'static, RaftResponse> {
        if let RaftRequest::Heartbeat = request {
            let stopped = self.stopped();
            return Box::pin(async move { RaftResponse::Alive(stopped) });
        }
        let Some(raft) = self.get(&group) else {
            // Not created here yet (its topic is still being created) or
            // already deleted: the sender retries.
            let reason = format!("no group {group:?} on this node");
            return Box::pin(async move { RaftResponse::Refused(reason) });
        };
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
                RaftRequest::Vote(rpc) => match raft.vote(rpc).await {
                    Ok(answer) => RaftResponse::Vote(answer),
                    Err(e) => RaftResponse::Refused(e.to_string()),
                },
                RaftRequest::PreVote(rpc) => match raft.pre_vote(rpc).await {
                    Ok(answer) => RaftResponse::Vote(answer),
                    Err(e) => RaftResponse::Refused(e.to_string()),
                },
                RaftRequest::Propose(data) => propose_here(&raft, data).await,
                // Answered above, before the group is looked up.
                RaftRequest::Heartbeat => RaftResponse::Alive(Vec::new()),
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
    match raft.client_write(crate::types::BatchData(data)).await {
        Ok(written) => match crate::meta::answer_of(&written.data) {
            Some(Err(refusal)) => RaftResponse::Declined(refusal.to_string()),
            _ => RaftResponse::Proposed(written.data),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            RaftResponse::NotLeader(forward.leader_id)
        }
        Err(e) => RaftResponse::Refused(e.to_string()),
    }
}
