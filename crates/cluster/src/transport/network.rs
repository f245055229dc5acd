//! openraft's network for a partition group, over [`Peers`].

use super::{Peer, Peers};
use crate::types::{NodeAddr, NodeId, PartitionRaft, PartitionSnapshot, Snapshot, Vote};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use std::future::Future;
use std::io;
use std::sync::Arc;

/// Makes the clients one partition group's Raft uses to reach its peers.
pub struct PartitionNetwork {
    pub group: GroupId,
    pub peers: Arc<Peers>,
}

pub struct PartitionNetworkClient {
    group: GroupId,
    /// The Raft member it talks to (its node is the peer's).
    target: u64,
    peer: Arc<Peer>,
}

impl RaftNetworkFactory<PartitionRaft> for PartitionNetwork {
    type Network = PartitionNetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PartitionNetworkClient {
        PartitionNetworkClient {
            group: self.group.clone(),
            target,
            peer: self.peers.peer(target, &node.cluster_addr),
        }
    }
}

/// A refused connection means "back off"; anything else "try again soon".
fn rpc_error(e: io::Error) -> RPCError<PartitionRaft> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::PermissionDenied => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected(response: RaftResponse) -> RPCError<PartitionRaft> {
    let message = match response {
        RaftResponse::Refused(reason) => format!("peer refused: {reason}"),
        other => format!("peer answered the wrong kind: {other:?}"),
    };
    RPCError::Network(NetworkError::from_string(message))
}

impl PartitionNetworkClient {
    async fn call(
        &self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftResponse, RPCError<PartitionRaft>> {
        self.peer
            .call_member(&self.group, self.target, &request, option.soft_ttl())
            .await
            .map_err(rpc_error)
    }

    /// A vote or a pre-vote: both are answered with a vote.
    async fn ask_vote(
        &self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        match self.call(request, option).await? {
            RaftResponse::Vote(answer) => Ok(answer),
            other => Err(unexpected(other)),
        }
    }
}

impl RaftNetworkV2<PartitionRaft> for PartitionNetworkClient {
    type SnapshotData = PartitionSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        match self.call(RaftRequest::AppendEntries(rpc), &option).await? {
            RaftResponse::AppendEntries(answer) => Ok(answer),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.ask_vote(RaftRequest::Vote(rpc), &option).await
    }

    /// Sent for real: openraft's default grants every pre-vote without
    /// asking, which would let a cut-off node raise terms after all.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        self.ask_vote(RaftRequest::PreVote(rpc), &option).await
    }

    /// A leader shutting down hands its leadership to this member.
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<PartitionRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<PartitionRaft>, RPCError<PartitionRaft>> {
        match self.call(RaftRequest::TransferLeader(req), &option).await? {
            RaftResponse::Transferred => Ok(Ok(())),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<PartitionSnapshot>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<PartitionRaft>, StreamingError<PartitionRaft>> {
        match self
            .call(RaftRequest::Snapshot { vote, snapshot }, &option)
            .await?
        {
            RaftResponse::Snapshot(answer) => Ok(answer),
            other => Err(StreamingError::from(unexpected(other))),
        }
    }
}
