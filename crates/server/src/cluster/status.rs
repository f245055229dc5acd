//! This node's view of the cluster, for `spool cluster status` and client
//! routing. Each node knows the metadata (alike on all) and the Raft state
//! of the partition groups it hosts; who is in sync only a partition's
//! leader knows; which nodes are alive, each node by its own heartbeats. The
//! client asks every node and believes each leader about its partition.

use super::Cluster;
use spool_cluster::meta::ClusterState;
use spool_cluster::openraft::async_runtime::WatchReceiver;
use spool_cluster::openraft::{RaftMetrics, ServerState};
use spool_cluster::types::PartitionRaft;
use spool_cluster::types::{generation_of, node_of, NodeId};
use spool_cluster::wire::GroupId;

#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: NodeId,
    pub client_addr: String,
    pub http_addr: Option<String>,
    pub cluster_addr: String,
    /// Whether it answers this node's heartbeats.
    pub alive: bool,
}

#[derive(Debug, Clone)]
pub struct PartitionView {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<NodeId>,
    pub hosted: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub in_sync: Vec<NodeId>,
    pub committed: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    pub node_id: NodeId,
    pub meta_leader: Option<NodeId>,
    /// On the metadata group's leader, its in-sync voters (else empty).
    pub meta_in_sync: Vec<NodeId>,
    pub nodes: Vec<NodeView>,
    pub partitions: Vec<PartitionView>,
}

impl Cluster {
    pub fn view(&self) -> ClusterView {
        let own = self.node.id();
        let state = self.meta.read();
        let nodes = self
            .peers
            .iter()
            .map(|(id, cluster_addr)| {
                let known = state.node(*id);
                NodeView {
                    id: *id,
                    client_addr: known.map(|n| n.client_addr.clone()).unwrap_or_default(),
                    http_addr: known.and_then(|n| n.http_addr.clone()),
                    cluster_addr: cluster_addr.clone(),
                    alive: self.node.alive(*id),
                }
            })
            .collect();
        let mut partitions = Vec::new();
        for topic in state.topics().values() {
            for (partition, replicas) in topic.replicas.iter().enumerate() {
                let group = GroupId::Partition {
                    topic: topic.name.clone(),
                    partition: partition as u32,
                };
                let mut view = PartitionView {
                    topic: topic.name.clone(),
                    partition: partition as u32,
                    replicas: replicas.clone(),
                    hosted: false,
                    leader: None,
                    term: 0,
                    in_sync: Vec::new(),
                    committed: None,
                };
                if let Some(raft) = self.node.groups().get(&group) {
                    let metrics = raft.metrics().borrow_watched().clone();
                    view.hosted = true;
                    view.leader = metrics.current_leader.map(node_of);
                    view.term = metrics.current_term;
                    view.committed = metrics.cluster_committed.as_ref().map(|c| c.index);
                    if metrics.state == ServerState::Leader {
                        view.in_sync = self.in_sync(&metrics, &state);
                    }
                }
                partitions.push(view);
            }
        }
        ClusterView {
            node_id: own,
            meta_leader: self.node.meta_leader(),
            meta_in_sync: {
                let metrics = self.node.meta().metrics().borrow_watched().clone();
                if metrics.state == ServerState::Leader {
                    self.in_sync(&metrics, &state)
                } else {
                    Vec::new()
                }
            },
            nodes,
            partitions,
        }
    }

    /// On a leader: itself and the followers that are up and hold every
    /// committed entry (Kafka's in-sync replicas): voters in their node's
    /// latest generation (a node replaced after losing its data is not in
    /// sync as its old self, whose progress the leader still remembers).
    pub(super) fn in_sync(
        &self,
        metrics: &RaftMetrics<PartitionRaft>,
        state: &ClusterState,
    ) -> Vec<NodeId> {
        let own = self.node.id();
        let committed = metrics.cluster_committed.as_ref().map(|c| c.index);
        let mut ids = vec![own];
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        for (member, matched) in metrics.replication.iter().flatten() {
            let id = node_of(*member);
            let caught_up = matched.as_ref().map(|m| m.index) >= committed;
            let latest = state.node(id).map(|n| n.generation) == Some(generation_of(*member));
            if id != own && voters.contains(member) && latest && caught_up && self.node.alive(id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids
    }
}
