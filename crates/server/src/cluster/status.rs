//! This node's view of the cluster, for `spool cluster status` and client
//! routing. Each node knows the metadata (alike on all) and the Raft state
//! of the partition groups it hosts; who is in sync only a partition's
//! leader knows, and which nodes are alive only the metadata leader. The
//! client asks every node and believes each leader about its partition.

use super::Cluster;
use spool_cluster::openraft::async_runtime::WatchReceiver;
use spool_cluster::openraft::ServerState;
use spool_cluster::types::NodeId;
use spool_cluster::wire::GroupId;
use std::collections::BTreeMap;
use std::time::Duration;

/// A replica that acknowledged its leader within this long is in sync: a
/// few heartbeats (`RaftTimings::heartbeat_ms` is 100) and less than an
/// election timeout's worth of silence twice over.
pub const IN_SYNC_ACK_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: NodeId,
    pub client_addr: String,
    pub http_addr: Option<String>,
    pub cluster_addr: String,
    /// `None`: this node cannot tell (it does not lead the metadata).
    pub alive: Option<bool>,
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
    pub nodes: Vec<NodeView>,
    pub partitions: Vec<PartitionView>,
}

impl Cluster {
    pub fn view(&self) -> ClusterView {
        let own = self.node.id();
        let acked = self.meta_acks();
        let state = self.meta.read();
        let nodes = self
            .peers
            .iter()
            .map(|(id, cluster_addr)| {
                let known = state.node(*id);
                let alive = if *id == own {
                    Some(true)
                } else {
                    acked.as_ref().map(|a| a.contains_key(id))
                };
                NodeView {
                    id: *id,
                    client_addr: known.map(|n| n.client_addr.clone()).unwrap_or_default(),
                    http_addr: known.and_then(|n| n.http_addr.clone()),
                    cluster_addr: cluster_addr.clone(),
                    alive,
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
                    view.leader = metrics.current_leader;
                    view.term = metrics.current_term;
                    view.committed = metrics.cluster_committed.map(|c| c.index);
                    if metrics.state == ServerState::Leader {
                        view.in_sync = in_sync(own, metrics.heartbeat.as_ref());
                    }
                }
                partitions.push(view);
            }
        }
        ClusterView {
            node_id: own,
            meta_leader: self.node.meta_leader(),
            nodes,
            partitions,
        }
    }

    /// When this node leads the metadata group: the nodes that acknowledged
    /// it lately (itself included), else `None`.
    fn meta_acks(&self) -> Option<BTreeMap<NodeId, ()>> {
        let metrics = self.node.meta().metrics().borrow_watched().clone();
        if metrics.state != ServerState::Leader {
            return None;
        }
        let own = self.node.id();
        Some(
            in_sync(own, metrics.heartbeat.as_ref())
                .into_iter()
                .map(|id| (id, ()))
                .collect(),
        )
    }
}

/// The leader and the followers it heard from within [`IN_SYNC_ACK_MS`].
fn in_sync<I: std::ops::Deref<Target = T>, T: spool_cluster::openraft::Instant>(
    leader: NodeId,
    heartbeats: Option<&BTreeMap<NodeId, Option<I>>>,
) -> Vec<NodeId> {
    let recent = Duration::from_millis(IN_SYNC_ACK_MS);
    let mut ids = vec![leader];
    for (id, last) in heartbeats.into_iter().flatten() {
        if *id != leader && last.as_ref().is_some_and(|at| at.elapsed() < recent) {
            ids.push(*id);
        }
    }
    ids.sort_unstable();
    ids
}
