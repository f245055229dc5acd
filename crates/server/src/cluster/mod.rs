//! The server's side of the replicated cluster (docs/cluster.md): the one
//! boundary where replication plugs into a serving node.
//!
//! A [`Cluster`] runs this node's [`Node`] (the metadata group and the
//! node-to-node listener), announces the node to the metadata group, and
//! keeps the broker in step with the metadata (`reconcile`): a topic the
//! metadata group created becomes a replicated topic in the broker, and
//! each of its partitions placed on this node gets its Raft group here.
//! The operations layer asks it to create topics, to write produced
//! batches through their partition's group, and for the cluster's status.
//!
//! The broker knows nothing of this: it stores a replicated topic's
//! partitions in entry-mode logs that the partition groups write.

mod membership;
mod observe;
mod reads;
mod reconcile;
mod remote;
mod status;

pub use status::{ClusterView, NodeView, PartitionView};

use bytes::Bytes;
use spool_broker::{Broker, BrokerError, TopicConfig};
use spool_cluster::meta::{self, MetaCommand, MetaHook};
use spool_cluster::node::{Node, NodeConfig, ProposeError, RaftTimings};
use spool_cluster::proposer::{ProposalAnswer, Proposer};
use spool_cluster::transport::{ClusterSecret, LinkTls};
use spool_cluster::types::{NodeAddr, NodeId};
use spool_cluster::wire::GroupId;
use spool_types::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Replicas of a topic's partitions when the creator names none: three,
/// or every node of a smaller cluster (Kafka's and Redpanda's usual
/// replication factor; a majority of three survives one node's loss).
pub const REPLICAS_DEFAULT: u32 = 3;

/// Threads that fdatasync the cluster's logs (the metadata log and every
/// partition group's), apart from the broker's own.
const CLUSTER_SYNC_THREADS: usize = 2;

/// How long a topic creation waits for this node to have the topic after
/// the metadata group accepted it.
const TOPIC_READY_WAIT_MS: u64 = 10_000;

/// Producer ids a node takes from the metadata group at a time (Kafka's
/// brokers take 1,000 too): one metadata entry per thousand producers.
const PRODUCER_ID_BLOCK: u64 = 1_000;
/// How often a node asks again for a block another node took first.
const PRODUCER_ID_TRIES: u32 = 20;

/// How often a topic creation looks whether its partitions have leaders.
const LEADER_POLL_MS: u64 = 20;

/// How long a stopping node waits for the groups it leads to take their
/// next leader: a follower's catch-up (up to 2 s), then a round trip and
/// an election.
const HANDOVER_WAIT_MS: u64 = 5_000;

/// How long to wait between tries while the metadata group has no leader.
const META_RETRY_MS: u64 = 100;

/// What makes a server a cluster node (`--node-id`, `--cluster-listen`,
/// `--peers`, `--cluster-secret-file`).
#[derive(Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// Where the node-to-node listener binds.
    pub cluster_listen: SocketAddr,
    /// Every node of the cluster, this one included: its id and the
    /// address its node-to-node listener is reached at.
    pub peers: BTreeMap<NodeId, String>,
    pub secret: ClusterSecret,
    /// TLS on the node links: set when the server has a certificate
    /// ([`crate::tls::cluster_link_tls`]).
    pub tls: Option<LinkTls>,
    pub timings: RaftTimings,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("cluster_listen", &self.cluster_listen)
            .field("peers", &self.peers)
            .field("secret", &"<hidden>")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClusterSettings {
    /// Refuses settings that cannot form a cluster, before anything opens.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.peers.contains_key(&self.node_id) {
            anyhow::bail!(
                "--peers must name this node too (id {}): every node is started with the \
                 same list",
                self.node_id
            );
        }
        Ok(())
    }
}

/// This node's own addresses, as it announces them.
#[derive(Debug, Clone)]
struct OwnAddrs {
    client_addr: String,
    http_addr: Option<String>,
    cluster_addr: String,
    incarnation: String,
}

/// A partition group hosted here.
struct Hosted {
    proposer: Proposer,
    /// The metadata version that created its topic (a topic deleted and
    /// created again under its name is another topic).
    created_version: u64,
}

pub struct Cluster {
    node: Node,
    meta: Arc<MetaHook>,
    broker: Arc<Broker>,
    own: OwnAddrs,
    peers: BTreeMap<NodeId, String>,
    hosted: RwLock<HashMap<(String, u32), Hosted>>,
    /// Ordered queues of partitions this node holds no replica of.
    remote: Mutex<HashMap<(String, u32), remote::RemoteProposer>>,
    /// Itself, for the remote queues' tasks (which must not keep it alive).
    this: std::sync::OnceLock<std::sync::Weak<Cluster>>,
    /// The metadata version reconciled into the broker so far.
    reconciled: watch::Sender<u64>,
    /// Producer ids this node may hand out: a block the metadata group
    /// gave it.
    producer_ids: Mutex<std::ops::Range<u64>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Binds the node-to-node listener (before the data is opened, so a
    /// taken port fails the start at once).
    pub async fn bind(settings: &ClusterSettings) -> anyhow::Result<TcpListener> {
        settings.check()?;
        TcpListener::bind(settings.cluster_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for cluster peers on {}: {e}",
                    settings.cluster_listen
                )
            })
    }

    /// Starts the node: the metadata group, announcing this node to it,
    /// and keeping the broker in step with it.
    pub async fn start(
        broker: Arc<Broker>,
        settings: &ClusterSettings,
        listener: TcpListener,
        data_dir: &Path,
        client_addr: SocketAddr,
        http_addr: Option<SocketAddr>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let dir = data_dir.join("cluster");
        std::fs::create_dir_all(&dir)?;
        let (incarnation, new) = meta::incarnation::load_or_create(&dir)?;
        let syncer = Arc::new(spool_log::Syncer::new(CLUSTER_SYNC_THREADS)?);
        let meta_hook = Arc::new(MetaHook::new());
        let config = NodeConfig {
            node_id: settings.node_id,
            dir,
            listener,
            members: members_of(&settings.peers, settings.peers.keys()),
            secret: settings.secret.clone(),
            tls: settings.tls.clone(),
            timings: settings.timings,
            meta_hook: Some(meta_hook.clone()),
            known_nodes: Some(meta_hook.clone()),
            new_incarnation: new.then(|| incarnation.clone()),
            client_addr: client_addr.to_string(),
            http_addr: http_addr.map(|a| a.to_string()),
        };
        let node = Node::start(config, syncer, crate::now_ms).await?;
        let own = OwnAddrs {
            client_addr: client_addr.to_string(),
            http_addr: http_addr.map(|a| a.to_string()),
            cluster_addr: settings.peers[&settings.node_id].clone(),
            incarnation,
        };
        let cluster = Arc::new(Cluster {
            node,
            meta: meta_hook,
            broker,
            own,
            peers: settings.peers.clone(),
            hosted: RwLock::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            this: std::sync::OnceLock::new(),
            reconciled: watch::Sender::new(0),
            producer_ids: Mutex::new(0..0),
            tasks: Mutex::new(Vec::new()),
        });
        let _ = cluster.this.set(Arc::downgrade(&cluster));
        let tasks = vec![
            tokio::spawn(announce(cluster.clone())),
            tokio::spawn(reconcile::run(cluster.clone())),
            tokio::spawn(membership::run(cluster.clone())),
            tokio::spawn(observe::run(cluster.clone())),
        ];
        *cluster.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        tracing::info!(
            node_id = settings.node_id,
            peers = ?settings.peers,
            "cluster node started"
        );
        Ok(cluster)
    }

    pub fn node_id(&self) -> NodeId {
        self.node.id()
    }

    /// Stops the background tasks and every Raft group of this node, after
    /// handing the leadership of the groups it leads to other nodes (a
    /// rolling restart then costs each partition a handover, not a
    /// leader's death noticed late).
    pub async fn shutdown(&self) {
        let started = std::time::Instant::now();
        let handed = self
            .node
            .hand_over_leadership(Duration::from_millis(HANDOVER_WAIT_MS))
            .await;
        if handed > 0 {
            tracing::info!(
                groups = handed,
                ms = started.elapsed().as_millis() as u64,
                "handed this node's leaderships to other nodes"
            );
        }
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        // Waited for: a reconciliation part way through must not host a
        // group after the groups below were listed and shut down.
        for task in tasks {
            let _ = task.await;
        }
        self.node.shutdown_groups().await;
    }

    /// Creates a replicated topic: places its partitions, has the metadata
    /// group record it, and waits until this node's broker has it.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replicas: Option<u32>,
        config: &TopicConfig,
    ) -> Result<(), BrokerError> {
        self.wait_nodes_joined().await;
        let command = {
            let state = self.meta.read();
            if state.topic(name).is_some() || self.broker.topic(name).is_ok() {
                return Err(BrokerError::new(
                    ErrorCode::TopicExists,
                    format!("topic {name:?} already exists"),
                ));
            }
            // Only nodes that announced themselves can hold replicas (the
            // metadata refuses others); every node of `--peers` is
            // counted for the default.
            let nodes: Vec<NodeId> = state.nodes().keys().copied().collect();
            let replicas = replicas.unwrap_or(REPLICAS_DEFAULT.min(self.peers.len() as u32));
            let load = state.replica_load();
            let placement = meta::place_replicas(&nodes, &load, partitions, replicas)
                .map_err(|e| BrokerError::invalid(e.to_string()))?;
            check_replica_limit(&load, &placement)?;
            MetaCommand::TopicCreated {
                name: name.to_owned(),
                partitions,
                replicas: placement,
                config: serde_json::to_value(config)
                    .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?,
                created_ms: crate::now_ms(),
            }
        };
        self.propose_meta(&command).await?;
        self.wait_topic_here(name).await?;
        self.wait_leaders(name).await;
        Ok(())
    }

    /// Waits (a little) until every partition of `topic` hosted here has a
    /// leader, so that a produce right after the creation is not refused
    /// with `NOT_LEADER` during the groups' first election. Not an error
    /// if one is still electing: clients retry `NOT_LEADER`.
    async fn wait_leaders(&self, topic: &str) {
        use spool_cluster::openraft::async_runtime::WatchReceiver;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(TOPIC_READY_WAIT_MS);
        let groups: Vec<_> = {
            let hosted = self.hosted.read().unwrap_or_else(|p| p.into_inner());
            hosted
                .keys()
                .filter(|(t, _)| t == topic)
                .filter_map(|(t, p)| {
                    self.node.groups().get(&GroupId::Partition {
                        topic: t.clone(),
                        partition: *p,
                    })
                })
                .collect()
        };
        for raft in groups {
            while raft.metrics().borrow_watched().current_leader.is_none()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(LEADER_POLL_MS)).await;
            }
        }
    }

    /// Waits (a little) until every node of `--peers` has announced itself:
    /// right after a cluster starts, a topic created at once would
    /// otherwise be placed on fewer nodes, or refused.
    async fn wait_nodes_joined(&self) {
        let mut versions = self.meta.subscribe();
        let all_joined = || {
            let state = self.meta.read();
            self.peers.keys().all(|id| state.node(*id).is_some())
        };
        let wait = async {
            while !all_joined() {
                if versions.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(TOPIC_READY_WAIT_MS), wait).await;
    }

    /// Proposes a metadata command through the metadata group's leader,
    /// waiting out an election.
    async fn propose_meta(&self, command: &MetaCommand) -> Result<(), BrokerError> {
        let batch = command
            .to_batch(crate::now_ms())
            .map_err(|e| BrokerError::invalid(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(TOPIC_READY_WAIT_MS);
        loop {
            match self
                .node
                .propose(&GroupId::Meta, Bytes::from(batch.clone()))
                .await
            {
                Ok(placed) => {
                    return match placed
                        .answer
                        .as_ref()
                        .and_then(|a| a.downcast_ref::<meta::MetaAnswer>())
                    {
                        Some(Err(refusal)) => Err(BrokerError::invalid(refusal.to_string())),
                        _ => Ok(()),
                    }
                }
                Err(ProposeError::Declined(why)) => return Err(BrokerError::invalid(why)),
                Err(ProposeError::NoLeader | ProposeError::Unavailable(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(META_RETRY_MS)).await
                }
                Err(e) => {
                    return Err(BrokerError::new(
                        ErrorCode::Timeout,
                        format!("the cluster's metadata group did not take the change: {e}"),
                    ))
                }
            }
        }
    }

    /// Waits until the reconciler made `topic` a topic of this broker.
    async fn wait_topic_here(&self, topic: &str) -> Result<(), BrokerError> {
        let mut reconciled = self.reconciled.subscribe();
        let ready = async {
            reconciled
                .wait_for(|_| self.broker.topic(topic).is_ok())
                .await
                .is_ok()
        };
        match tokio::time::timeout(Duration::from_millis(TOPIC_READY_WAIT_MS), ready).await {
            Ok(true) => Ok(()),
            _ => Err(BrokerError::new(
                ErrorCode::Timeout,
                format!(
                    "topic {topic:?} was created in the cluster but is not ready on this node yet"
                ),
            )),
        }
    }

    /// A producer id no other producer of the cluster gets: from this
    /// node's block, asking the metadata group for a new block when it is
    /// used up.
    pub async fn producer_id(&self) -> Result<u64, BrokerError> {
        let mut tries = 0;
        // One deadline for all tries: each proposal may itself wait up to
        // TOPIC_READY_WAIT_MS for a metadata leader, and twenty of them
        // would hold the producer (whose sends wait for its id) minutes.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(TOPIC_READY_WAIT_MS);
        loop {
            if let Some(id) = self
                .producer_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next()
            {
                return Ok(id);
            }
            let first = self.meta.read().next_producer_id();
            let command = MetaCommand::ProducerIdsAllocated {
                first,
                count: PRODUCER_ID_BLOCK,
            };
            match self.propose_meta(&command).await {
                Ok(()) => {
                    *self.producer_ids.lock().unwrap_or_else(|p| p.into_inner()) =
                        first..first + PRODUCER_ID_BLOCK;
                }
                // Another node took that block first (this node's state
                // had not caught up): look again.
                Err(e) if tries < PRODUCER_ID_TRIES && tokio::time::Instant::now() < deadline => {
                    tracing::debug!("allocating producer ids: {e}; trying again");
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(META_RETRY_MS)).await;
                }
                // Not INVALID_REQUEST: that answer means "not a cluster
                // node", and a producer would go on without an id.
                Err(e) => {
                    return Err(BrokerError::new(
                        ErrorCode::Timeout,
                        format!(
                            "no producer id could be handed out now ({}): retry",
                            e.message
                        ),
                    ))
                }
            }
        }
    }

    /// Writes a validated batch through the partition's Raft group, in the
    /// order calls are made; the answer comes once a majority stored it.
    /// `batch` is shared, not copied (a produce's is a slice of the
    /// received frame).
    pub fn propose(
        &self,
        topic: &str,
        partition: u32,
        data: Bytes,
    ) -> Result<oneshot::Receiver<ProposalAnswer>, BrokerError> {
        let hosted = self.hosted.read().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosted.get(&(topic.to_owned(), partition)) {
            // A replica stopped here (a full disk) can neither write nor
            // name the leader: the batch goes to another replica, as from
            // a node that holds none.
            if !self.replica_stopped(topic, partition) {
                return Ok(h.proposer.propose(data));
            }
        }
        drop(hosted);
        let known = self.meta.read().topic(topic).is_some();
        if !known {
            return Err(self.not_leader(topic, partition, None));
        }
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        let queue = remote
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                let this = self.this.get().cloned().unwrap_or_default();
                remote::RemoteProposer::start(this, topic.to_owned(), partition)
            });
        Ok(queue.propose(data))
    }

    /// Whether this node's replica of the partition stopped (a storage
    /// error) and waits to be reopened.
    fn replica_stopped(&self, topic: &str, partition: u32) -> bool {
        let group = GroupId::Partition {
            topic: topic.to_owned(),
            partition,
        };
        self.node.groups().stopped_here(&group)
    }

    /// Where to send a batch for a partition not written here: `known` (a
    /// leader another node named) if set, else the first other replica
    /// that serves it (alive, not stopped), in placement order — with its
    /// node-to-node address.
    fn leader_guess(
        &self,
        topic: &str,
        partition: u32,
        known: Option<NodeId>,
    ) -> Option<(NodeId, String)> {
        let replicas = {
            let state = self.meta.read();
            state
                .topic(topic)?
                .replicas
                .get(partition as usize)?
                .clone()
        };
        let group = GroupId::Partition {
            topic: topic.to_owned(),
            partition,
        };
        let own = self.node.id();
        let to = known
            .filter(|k| replicas.contains(k) && *k != own)
            .or_else(|| {
                replicas
                    .iter()
                    .copied()
                    .find(|id| *id != own && self.node.serves(*id, &group))
            })?;
        Some((to, self.peers.get(&to)?.clone()))
    }

    /// Whether this node holds a replica of the partition (only a replica
    /// can answer reads of it).
    pub fn hosts(&self, topic: &str, partition: u32) -> bool {
        let hosted = self.hosted.read().unwrap_or_else(|p| p.into_inner());
        hosted.contains_key(&(topic.to_owned(), partition))
    }

    /// Whether this node's replica of the partition leads it now.
    pub fn leads(&self, topic: &str, partition: u32) -> bool {
        use spool_cluster::openraft::async_runtime::WatchReceiver;
        let group = GroupId::Partition {
            topic: topic.to_owned(),
            partition,
        };
        self.node.groups().get(&group).is_some_and(|raft| {
            raft.metrics().borrow_watched().state == spool_cluster::openraft::ServerState::Leader
        })
    }

    /// `NOT_LEADER` for a partition, naming the leader this node knows (or
    /// the preferred one, for a partition not hosted here).
    pub fn not_leader(&self, topic: &str, partition: u32, leader: Option<NodeId>) -> BrokerError {
        let state = self.meta.read();
        let leader = leader.or_else(|| {
            let topic = state.topic(topic)?;
            topic.replicas.get(partition as usize)?.first().copied()
        });
        let hint = match leader.and_then(|id| state.node(id)) {
            Some(node) => format!("; node {} leads it, at {}", node.id, node.client_addr),
            None => "; its leader is not known yet (an election is under way): retry".into(),
        };
        BrokerError::new(
            ErrorCode::NotLeader,
            format!(
                "node {} does not lead topic {topic:?} partition {partition}{hint}",
                self.node.id()
            ),
        )
    }
}

/// Partition replicas one node may hold. Measured on this project's
/// two-core machines (docs/cluster.md, "Cost of a partition"): an idle
/// replica costs about 160 KiB of memory and almost no CPU (no timer of
/// its own), so the bound is memory and start-up time (each replica's
/// log is opened and replayed at start), not heartbeats.
pub const PARTITION_REPLICAS_PER_NODE_MAX: usize = 4_096;

/// Refuses a placement that would put more than
/// [`PARTITION_REPLICAS_PER_NODE_MAX`] replicas on a node.
fn check_replica_limit(
    load: &BTreeMap<NodeId, usize>,
    placement: &[Vec<NodeId>],
) -> Result<(), BrokerError> {
    let mut after = load.clone();
    for id in placement.iter().flatten() {
        *after.entry(*id).or_default() += 1;
    }
    match after
        .iter()
        .find(|(_, n)| **n > PARTITION_REPLICAS_PER_NODE_MAX)
    {
        Some((id, n)) => Err(BrokerError::new(
            ErrorCode::InvalidConfig,
            format!(
                "node {id} would hold {n} partition replicas; a node holds at most \
                 {PARTITION_REPLICAS_PER_NODE_MAX} (fewer partitions or replicas, or more nodes)"
            ),
        )),
        None => Ok(()),
    }
}

/// The members of a group of `ids`, reached at their `peers` addresses
/// (their first generation: the metadata group's members at its
/// initialisation).
fn members_of<'a>(
    peers: &BTreeMap<NodeId, String>,
    ids: impl Iterator<Item = &'a NodeId>,
) -> BTreeMap<NodeId, NodeAddr> {
    ids.filter_map(|id| {
        let cluster_addr = peers.get(id)?.clone();
        Some((
            *id,
            NodeAddr {
                client_addr: String::new(),
                cluster_addr,
            },
        ))
    })
    .collect()
}

/// Tells the metadata group who this node is and where its listeners are,
/// until the metadata shows it (retrying through elections).
async fn announce(cluster: Arc<Cluster>) {
    let own = &cluster.own;
    let command = MetaCommand::NodeJoined {
        id: cluster.node.id(),
        client_addr: own.client_addr.clone(),
        http_addr: own.http_addr.clone(),
        cluster_addr: own.cluster_addr.clone(),
        incarnation: own.incarnation.clone(),
        generation: None,
    };
    let mut versions = cluster.meta.subscribe();
    let mut refused_said = false;
    loop {
        let known = cluster
            .meta
            .read()
            .node(cluster.node.id())
            .is_some_and(|n| {
                n.incarnation == own.incarnation
                    && n.client_addr == own.client_addr
                    && n.http_addr == own.http_addr
            });
        if known {
            tracing::info!(
                node_id = cluster.node.id(),
                "this node is known to the cluster"
            );
            return;
        }
        match cluster.propose_meta(&command).await {
            // The metadata refuses this node (its incarnation was retired:
            // an old data directory came back after the node was
            // replaced): said loudly once. Its groups' peers address the
            // replacement's members, which it is not, so they refuse it.
            Err(e) if e.code == ErrorCode::InvalidRequest && !refused_said => {
                tracing::error!(
                    node_id = cluster.node.id(),
                    "the cluster refuses this node: {}; stop it (an old data directory of a \
                     node that was replaced must not come back: start it with an empty one)",
                    e.message
                );
                refused_said = true;
            }
            Err(e) => tracing::debug!("announcing this node: {e}; retrying"),
            Ok(()) => {}
        }
        let _ = tokio::time::timeout(Duration::from_millis(META_RETRY_MS * 5), versions.changed())
            .await;
    }
}
