//! An in-process network for partition groups: each node's RPCs call the
//! target node's `Raft` handlers directly; links can be cut both ways.

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use spool_cluster::types::{NodeAddr, NodeId, PartitionRaft, PartitionSnapshot, Snapshot, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

pub use spool_cluster::groups::PartitionGroup;

#[derive(Default)]
pub struct Router {
    nodes: Mutex<BTreeMap<NodeId, PartitionGroup>>,
    /// Links that drop every message, as (from, to).
    cut: Mutex<BTreeSet<(NodeId, NodeId)>>,
}

impl Router {
    pub fn add(&self, id: NodeId, raft: PartitionGroup) {
        self.nodes.lock().unwrap().insert(id, raft);
    }

    pub fn remove(&self, id: NodeId) -> Option<PartitionGroup> {
        self.nodes.lock().unwrap().remove(&id)
    }

    /// Cuts every link between `id` and the other nodes, both ways.
    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().collect();
        let mut cut = self.cut.lock().unwrap();
        for other in others {
            cut.insert((id, other));
            cut.insert((other, id));
        }
    }

    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }

    fn target(
        &self,
        from: NodeId,
        to: NodeId,
    ) -> Result<PartitionGroup, Unreachable<PartitionRaft>> {
        if self.cut.lock().unwrap().contains(&(from, to)) {
            return Err(Unreachable::from_string(format!(
                "link {from} -> {to} is cut"
            )));
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {to} is down")))
    }
}

pub struct RouterNet {
    pub router: Arc<Router>,
    pub from: NodeId,
}

pub struct RouterClient {
    router: Arc<Router>,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<PartitionRaft> for RouterNet {
    type Network = RouterClient;

    async fn new_client(&mut self, target: NodeId, _node: &NodeAddr) -> RouterClient {
        RouterClient {
            router: self.router.clone(),
            from: self.from,
            to: target,
        }
    }
}

fn network_error(e: impl std::fmt::Display) -> RPCError<PartitionRaft> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

impl RaftNetworkV2<PartitionRaft> for RouterClient {
    type SnapshotData = PartitionSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc).await.map_err(network_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(network_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<PartitionSnapshot>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(StreamingError::Unreachable)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e.to_string())))
    }
}
