//! A node that starts with a new data directory (docs/cluster.md, "A
//! wiped data directory"): it asks its peers whether the cluster knew it
//! with another one, and if so has the metadata group record it as its
//! next generation before it joins anything, so that it comes back as a
//! new Raft member, never as its old self.

use crate::node::FORWARD_TIMEOUT_MS;
use crate::transport::Peers;
use crate::types::{node_of, NodeAddr, NodeId};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

/// How often a node with a new data directory asks its peers again while
/// too few have answered.
const INCARNATION_ASK_MS: u64 = 500;

/// How long a replacement tries to have its announcement applied before
/// it gives up (the metadata group needs a majority of the other nodes).
const REPLACE_WAIT_MS: u64 = 120_000;

/// What a node starting with a new data directory tells and asks.
pub(crate) struct Joining<'a> {
    pub(crate) node_id: NodeId,
    pub(crate) members: &'a BTreeMap<NodeId, NodeAddr>,
    pub(crate) dir: &'a std::path::Path,
    pub(crate) client_addr: &'a str,
    pub(crate) http_addr: Option<&'a str>,
}

/// A start with a new data directory: asks the cluster whether it records
/// another incarnation of this node ([`recorded_self`]); if it does, the
/// node's data was lost and it comes back as its next generation
/// ([`replace_old_self`]). Keeps the generation and the incarnation in the
/// directory and answers the generation.
pub(crate) async fn join_with_new_directory(
    peers: &Peers,
    config: &Joining<'_>,
    incarnation: &str,
) -> io::Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REPLACE_WAIT_MS);
    let generation = loop {
        let Some(old) = recorded_self(peers, config.members, config.node_id).await? else {
            break 0;
        };
        if old.incarnation == incarnation {
            break old.generation;
        }
        let generation = old.generation + 1;
        tracing::warn!(
            node_id = config.node_id,
            old_incarnation = %old.incarnation,
            generation,
            "this node's data directory is new but the cluster knew it with another one: its \
             data was lost; it joins again as a new member (generation {generation}) and \
             catches up from the others"
        );
        match replace_old_self(peers, config, incarnation, generation, deadline).await? {
            true => break generation,
            // Another generation was recorded meanwhile: ask again.
            false => tokio::time::sleep(Duration::from_millis(INCARNATION_ASK_MS)).await,
        }
    };
    if generation > 0 {
        crate::meta::incarnation::keep_generation(config.dir, generation)?;
    }
    crate::meta::incarnation::keep(config.dir, incarnation)?;
    Ok(generation)
}

/// Has the metadata group record this node's new `incarnation` as its
/// `generation` (a `NodeJoined` it applies as a replacement: the old
/// incarnation retired), through any peer. Answers `false` when the
/// group declined the generation (another was recorded meanwhile).
async fn replace_old_self(
    peers: &Peers,
    config: &Joining<'_>,
    incarnation: &str,
    generation: u64,
    deadline: tokio::time::Instant,
) -> io::Result<bool> {
    let cluster_addr = config
        .members
        .get(&config.node_id)
        .map(|n| n.cluster_addr.clone())
        .unwrap_or_default();
    let command = crate::meta::MetaCommand::NodeJoined {
        id: config.node_id,
        client_addr: config.client_addr.to_owned(),
        http_addr: config.http_addr.map(str::to_owned),
        cluster_addr,
        incarnation: incarnation.to_owned(),
        generation: Some(generation),
    };
    let batch = command
        .to_batch(0)
        .map(Bytes::from)
        .map_err(io::Error::other)?;
    let others: Vec<(NodeId, String)> = config
        .members
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(id, addr)| (*id, addr.cluster_addr.clone()))
        .collect();
    let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
    let mut next: Option<NodeId> = None;
    let mut round = 0usize;
    while tokio::time::Instant::now() < deadline {
        // The leader a peer named, else the peers in turn.
        let named = next
            .take()
            .and_then(|id| others.iter().find(|(o, _)| *o == id));
        let Some(to) = named.or_else(|| others.get(round % others.len().max(1))) else {
            break;
        };
        round += 1;
        let peer = peers.peer(to.0, &to.1);
        match peer
            .call(
                &GroupId::Meta,
                &RaftRequest::Propose(batch.clone()),
                timeout,
            )
            .await
        {
            Ok(RaftResponse::Proposed(_)) => return Ok(true),
            // `MetaRefusal::GenerationMismatch`: another replacement was
            // recorded meanwhile.
            Ok(RaftResponse::Declined(why)) if why.contains("next generation") => {
                tracing::info!("replacing this node's old self: {why}; asking again");
                return Ok(false);
            }
            Ok(RaftResponse::Declined(why)) => {
                return Err(io::Error::other(format!(
                    "the cluster refused this node's new data directory: {why}"
                )))
            }
            Ok(RaftResponse::NotLeader(Some(leader))) => next = Some(node_of(leader)),
            _ => tokio::time::sleep(Duration::from_millis(INCARNATION_ASK_MS)).await,
        }
    }
    Err(io::Error::other(
        "this node's data was lost and the cluster could not record its replacement (is a \
         majority of the other nodes up?)",
    ))
}

/// What the cluster records of this node when it starts with a new data
/// directory: `None` if no peer records it (a new node, or a new
/// cluster), else the recorded incarnation with the highest generation
/// (which may be this very one, recorded by a start that stopped before
/// keeping it).
///
/// The record is on a majority of the metadata group, of which this node
/// may have been one, so the answers of `n - n/2` other nodes (out of `n`)
/// are needed to be sure one of them holds it: until then it asks again.
/// A new cluster's nodes all answer "none recorded".
pub async fn recorded_self(
    peers: &Peers,
    members: &BTreeMap<NodeId, NodeAddr>,
    own_id: NodeId,
) -> io::Result<Option<crate::wire::Recorded>> {
    let others: Vec<(NodeId, String)> = members
        .iter()
        .filter(|(id, _)| **id != own_id)
        .map(|(id, addr)| (*id, addr.cluster_addr.clone()))
        .collect();
    let needed = members.len() - members.len() / 2;
    let needed = needed.min(others.len());
    let timeout = Duration::from_millis(INCARNATION_ASK_MS * 2);
    let mut rounds = 0u64;
    loop {
        let asked = others.iter().map(|(id, addr)| async move {
            let peer = peers.peer(*id, addr);
            peer.call(&GroupId::Meta, &RaftRequest::Incarnation(own_id), timeout)
                .await
        });
        let mut answered = 0;
        let mut latest: Option<crate::wire::Recorded> = None;
        for answer in futures::future::join_all(asked).await {
            match answer {
                // Another incarnation: this node's data was lost. This
                // very one: a start that stopped before keeping it.
                Ok(RaftResponse::Incarnation(Some(recorded))) => {
                    answered += 1;
                    if latest
                        .as_ref()
                        .is_none_or(|l| recorded.generation > l.generation)
                    {
                        latest = Some(recorded);
                    }
                }
                Ok(RaftResponse::Incarnation(None)) => answered += 1,
                _ => {}
            }
        }
        if latest.is_some() {
            return Ok(latest);
        }
        if answered >= needed {
            return Ok(None);
        }
        if rounds.is_multiple_of(20) {
            tracing::info!(
                answered,
                needed,
                "new data directory: waiting for peers to say whether this node was in the \
                 cluster with another one"
            );
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(INCARNATION_ASK_MS)).await;
    }
}
