//! A cluster node: the Raft groups it hosts, the transport they share, and
//! the metadata group every node is a voter of.
//!
//! A proposal may be made on any node: a node that does not lead the group
//! forwards it, once, to the leader it knows (`RaftRequest::Propose`).

use crate::groups::{Groups, PartitionGroup, PartitionParts};
use crate::liveness::{self, Liveness};
use crate::partition::{
    retention_loop, AppliedHook, PartitionLogStore, PartitionStateMachine, RetentionMark,
    RetentionPass,
};
use crate::proposer::Proposer;
use crate::raft_files::RaftFiles;
use crate::transport::{serve, ClusterSecret, LinkTls, PartitionNetwork, Peers};
use crate::types::{member_id, node_of, BatchData, BatchPlaced, NodeAddr, NodeId};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use spool_log::{Durability, Log, LogConfig, Syncer};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a stopping node waits for some voter of a group it leads to
/// hold its whole log before handing the group over (else the group
/// elects as after a crash). A follower acknowledges after its own
/// fdatasync, which on a busy machine takes hundreds of milliseconds (CI
/// saw 500 ms pass without one).
const HANDOVER_CATCH_UP_MS: u64 = 2_000;

/// How much longer than its wait a read from another node may take to be
/// answered before the reader tries another replica.
pub const READ_ANSWER_MARGIN_MS: u64 = 3_000;

/// The metadata log's segments: metadata is small and never purged.
const META_SEGMENT_BYTES: u64 = 16 << 20;
/// How long a forwarded proposal may wait for the leader's answer.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;

/// Raft timings of every group on a node, in ms.
#[derive(Debug, Clone, Copy)]
pub struct RaftTimings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTimings {
    /// Elections within about a second of a leader's loss, with room for a
    /// loaded two-core machine's scheduling delays.
    fn default() -> RaftTimings {
        RaftTimings {
            heartbeat_ms: 50,
            election_min_ms: 300,
            election_max_ms: 600,
        }
    }
}

impl RaftTimings {
    pub fn config(&self) -> io::Result<Arc<openraft::Config>> {
        let config = openraft::Config {
            cluster_name: "spool".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            // The data is the log; Raft never deletes it (retention does).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            // The metadata group's own elections ask first too (partition
            // groups are told by `liveness` which kind to run).
            enable_pre_vote: Some(true),
            // A replica restarted over its storage (a node restart, a
            // reopen after a full disk) never takes its old term's
            // leadership back without an election: its log may hold
            // entries of that term that are not committed, unknown to its
            // new proposer's duplicate check, and a producer's retry of one
            // would be stored a second time. A new term starts with a blank
            // entry, and the check waits until that is applied.
            enable_leader_restore: Some(false),
            ..openraft::Config::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// A partition group's configuration: no heartbeats and no election
    /// timer of its own — no timer at all, so an idle group costs no
    /// wakeups; node liveness stands for both (`crate::liveness`).
    pub fn partition_config(&self) -> io::Result<Arc<openraft::Config>> {
        let mut config = (*self.config()?).clone();
        config.enable_tick = false;
        config.enable_heartbeat = false;
        config.enable_elect = false;
        // A snapshot is made at retention's cut only (`partition::
        // retention`), so openraft purges right up to it.
        config.max_in_snapshot_log_to_keep = 0;
        Ok(Arc::new(config))
    }
}

pub struct NodeConfig {
    pub node_id: NodeId,
    /// Where the node keeps its cluster state (`<data dir>/cluster`).
    pub dir: PathBuf,
    /// The node-to-node listener, bound by the caller.
    pub listener: TcpListener,
    /// Every voter of the metadata group, this node included.
    pub members: BTreeMap<NodeId, NodeAddr>,
    pub secret: ClusterSecret,
    /// TLS on the node links (when the server has a certificate).
    pub tls: Option<LinkTls>,
    pub timings: RaftTimings,
    /// What applies the metadata group's entries (the server's
    /// [`MetaHook`](crate::meta::MetaHook)); `None` only stores them.
    pub meta_hook: Option<Arc<dyn AppliedHook>>,
    /// The applied metadata, to answer peers asking which incarnation of
    /// a node it records (the server's `MetaHook`); `None`: none.
    pub known_nodes: Option<Arc<crate::meta::MetaHook>>,
    /// This node's incarnation when this start made it (a new data
    /// directory): before joining any group the node asks the cluster
    /// whether it records an older incarnation of it ([`recorded_self`]);
    /// if so, the node replaces its old self in the next generation
    /// ([`replace_old_self`]). Then it keeps the incarnation in `dir`.
    /// `None` for a directory that had one.
    pub new_incarnation: Option<String>,
    /// Where clients reach this node, for the announcement a replacement
    /// makes before it joins anything.
    pub client_addr: String,
    pub http_addr: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known now (an election is under way): try again.
    #[error("the group has no leader right now")]
    NoLeader,
    #[error("no group {0:?} on this node")]
    UnknownGroup(GroupId),
    /// The leader could not be reached or is stopping: try again.
    #[error("{0}")]
    Unavailable(String),
    /// Applied, and the group's state declined it (a metadata command
    /// every node refuses alike): why.
    #[error("declined: {0}")]
    Declined(String),
    #[error("{0}")]
    Failed(String),
}

pub struct Node {
    id: NodeId,
    /// This node's generation (see [`member_id`]): its Raft member id in
    /// every group it joins from now on.
    generation: u64,
    groups: Arc<Groups>,
    peers: Arc<Peers>,
    meta: PartitionGroup,
    serving: JoinHandle<()>,
    /// Node heartbeats and the elections they trigger (`crate::liveness`),
    /// and the partitions' retention (`crate::partition::retention_loop`).
    liveness_tasks: Vec<JoinHandle<()>>,
    liveness: Arc<Liveness>,
    syncer: Arc<Syncer>,
    timings: RaftTimings,
    now_ms: fn() -> i64,
}

impl Node {
    /// Opens the metadata group's log, starts answering peers and joins the
    /// metadata group (initialising it with `members` if its log is empty:
    /// every node does so with the same members, which openraft allows).
    pub async fn start(
        config: NodeConfig,
        syncer: Arc<Syncer>,
        now_ms: fn() -> i64,
    ) -> io::Result<Node> {
        let groups = Arc::new(Groups::default());
        let peers = Arc::new(Peers::new(
            config.node_id,
            config.secret.clone(),
            config.tls.clone(),
        ));
        // Answering peers from the start: a new node and its peers ask
        // each other about incarnations before any group runs.
        let serving = tokio::spawn(serve(
            config.listener,
            config.secret.clone(),
            config.node_id,
            groups.clone(),
            config.tls.clone(),
        ));
        let mut generation = crate::meta::incarnation::load_generation(&config.dir)?;
        if let Some(incarnation) = &config.new_incarnation {
            // A new directory holds no metadata: "none recorded" is true
            // at once (and other new nodes of a new cluster wait for it).
            if let Some(known) = &config.known_nodes {
                groups.answer_incarnations_from(known.clone());
            }
            let joining = crate::rejoin::Joining {
                node_id: config.node_id,
                members: &config.members,
                dir: &config.dir,
                client_addr: &config.client_addr,
                http_addr: config.http_addr.as_deref(),
            };
            match crate::rejoin::join_with_new_directory(&peers, &joining, incarnation).await {
                Ok(kept) => generation = kept,
                Err(e) => {
                    serving.abort();
                    return Err(e);
                }
            }
        }
        let member = member_id(config.node_id, generation);
        groups.set_generation(generation);
        let meta_dir = config.dir.join("meta");
        let log_config = LogConfig {
            durability: Durability::Always,
            entry_mode: true,
            segment_bytes: META_SEGMENT_BYTES,
            ..LogConfig::default()
        };
        let (log, _report) = Log::open(&meta_dir, log_config).map_err(io::Error::other)?;
        let log = Arc::new(log);
        let files = RaftFiles::open(&meta_dir)?;
        // What the metadata replica had committed when it stopped: peers
        // asking about incarnations are answered once that is applied
        // again (before, an empty state would say "none recorded").
        let committed_at_start = files.read_committed()?;
        let machine = match config.meta_hook {
            Some(hook) => PartitionStateMachine::open_with_hook(log.clone(), &meta_dir, hook)?,
            None => PartitionStateMachine::open(log.clone(), &meta_dir)?,
        };
        let store = PartitionLogStore::new(log, files, syncer.clone(), now_ms);
        let network = PartitionNetwork {
            group: GroupId::Meta,
            peers: peers.clone(),
        };
        let meta = PartitionGroup::new(member, config.timings.config()?, network, store, machine)
            .await
            .map_err(io::Error::other)?;
        groups.insert(GroupId::Meta, meta.clone());
        if let Some(known) = config.known_nodes.clone() {
            tokio::spawn(answer_incarnations_once_replayed(
                meta.clone(),
                groups.clone(),
                known,
                committed_at_start.map(|id| id.index()),
            ));
        }
        let liveness = Arc::new(Liveness::new(config.node_id, generation));
        let liveness_tasks = vec![
            tokio::spawn(liveness::ping_loop(
                config.node_id,
                config.members.clone(),
                peers.clone(),
                liveness.clone(),
            )),
            tokio::spawn(liveness::elect_loop(groups.clone(), liveness.clone())),
            tokio::spawn(retention_loop(groups.clone(), now_ms)),
        ];
        // A node in a later generation joins the metadata group as a new
        // member its leader adds; only the first generation of a new
        // cluster initialises it.
        if generation == 0 && !meta.is_initialized().await.map_err(io::Error::other)? {
            // `NotAllowed` means another node's initialisation reached us
            // first: nothing to do.
            let _ = meta.initialize(config.members).await;
        }
        Ok(Node {
            id: config.node_id,
            generation,
            groups,
            peers,
            meta,
            serving,
            liveness_tasks,
            liveness,
            syncer,
            timings: config.timings,
            now_ms,
        })
    }

    /// Starts this node's replica of a partition group over `log` (open in
    /// entry mode; its Raft files go in the log's directory) and registers
    /// it for incoming messages. With `members` (Raft member ids), a group
    /// whose log is empty is initialised with them, on every replica alike
    /// (as the metadata group is); without, it waits for its leader to add
    /// this node (a replacement joining a group that existed before it).
    /// `hook` sees each applied entry (the server wakes readers with it).
    /// Answers the group and its proposer, which forwards proposals made
    /// here to the leader when another node leads.
    /// `preference` orders the replicas for leading (the preferred leader
    /// first): the first live one starts the group's elections.
    pub async fn host_partition(
        &self,
        group: GroupId,
        log: Arc<Log>,
        members: Option<BTreeMap<u64, NodeAddr>>,
        preference: Vec<NodeId>,
        hook: Option<Arc<dyn AppliedHook>>,
    ) -> io::Result<(PartitionGroup, Proposer)> {
        if let (Some(running), Some(proposer)) =
            (self.groups.get(&group), self.groups.proposer(&group))
        {
            return Ok((running, proposer));
        }
        let dir = log.dir().to_path_buf();
        let files = RaftFiles::open(&dir)?;
        let mark = RetentionMark::default();
        let machine = match hook {
            Some(hook) => PartitionStateMachine::open_with_hook(log.clone(), &dir, hook)?,
            None => PartitionStateMachine::open(log.clone(), &dir)?,
        }
        .with_retention(mark.clone());
        let producers = machine.producers();
        let pass = RetentionPass {
            log: log.clone(),
            mark: mark.clone(),
        };
        let store = PartitionLogStore::new(log, files, self.syncer.clone(), self.now_ms)
            .with_retention(mark);
        let network = PartitionNetwork {
            group: group.clone(),
            peers: self.peers.clone(),
        };
        let raft = PartitionGroup::new(
            self.member(),
            self.timings.partition_config()?,
            network,
            store,
            machine,
        )
        .await
        .map_err(io::Error::other)?;
        let proposer = Proposer::start_forwarding(
            raft.clone(),
            group.clone(),
            self.id,
            self.peers.clone(),
            producers,
        );
        let parts = PartitionParts {
            proposer: proposer.clone(),
            preference,
            retention: pass,
        };
        self.groups.insert_partition(group, raft.clone(), parts);
        if let Some(members) = members {
            if !raft.is_initialized().await.map_err(io::Error::other)? {
                let _ = raft.initialize(members).await;
            }
        }
        Ok((raft, proposer))
    }

    /// Stops this node's replica of `group` (its topic was deleted).
    pub async fn stop_partition(&self, group: &GroupId) {
        if let Some(raft) = self.groups.remove(group) {
            raft.shutdown().await.ok();
        }
    }

    /// Sends a proposal for `group` to node `to` (at its node-to-node
    /// `addr`), for a group this node holds no replica of; the answer is
    /// to come. Proposals sent one after another arrive in that order.
    pub async fn send_proposal(
        &self,
        group: &GroupId,
        to: NodeId,
        addr: &str,
        data: Bytes,
    ) -> io::Result<crate::transport::Sent> {
        let peer = self.peers.peer(to, addr);
        peer.send(group, &RaftRequest::Propose(data)).await
    }

    /// Reads a partition from node `to` (at its node-to-node `addr`), which
    /// holds a replica of it: its committed records from `offset`, waiting
    /// up to `wait_ms` for some. Answers `Records`, `ReadFailed` or
    /// `Refused` (no replica there); an error if `to` did not answer.
    pub async fn read_from(
        &self,
        to: NodeId,
        addr: &str,
        group: &GroupId,
        offset: i64,
        max_bytes: u32,
        wait_ms: u32,
    ) -> io::Result<RaftResponse> {
        let peer = self.peers.peer(to, addr);
        let read = RaftRequest::Read {
            offset,
            max_bytes,
            wait_ms,
        };
        let sent = peer.send(group, &read).await?;
        let answer_ms = u64::from(wait_ms) + READ_ANSWER_MARGIN_MS;
        sent.answer(Duration::from_millis(answer_ms)).await
    }

    /// Whether node `id` answered this node's heartbeats lately.
    pub fn alive(&self, id: NodeId) -> bool {
        self.liveness.alive(id)
    }

    /// Whether node `id` is alive and its replica of `group` runs (did
    /// not stop on a storage error), as its last ping answer said.
    pub fn serves(&self, id: NodeId, group: &GroupId) -> bool {
        self.liveness.serves(id, group)
    }

    /// The metadata group's leader's node as this node knows it.
    pub fn meta_leader(&self) -> Option<NodeId> {
        use openraft::async_runtime::WatchReceiver;
        self.meta
            .metrics()
            .borrow_watched()
            .current_leader
            .map(node_of)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// This node's Raft member id in the groups it joins now.
    pub fn member(&self) -> u64 {
        member_id(self.id, self.generation)
    }

    pub fn meta(&self) -> &PartitionGroup {
        &self.meta
    }

    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// Writes `data` through `group`'s Raft log, here if this node leads
    /// it, else through its leader. Answers once the entry is applied.
    pub async fn propose(&self, group: &GroupId, data: Bytes) -> Result<BatchPlaced, ProposeError> {
        let raft = self
            .groups
            .get(group)
            .ok_or_else(|| ProposeError::UnknownGroup(group.clone()))?;
        // Bounded: a leader left without its majority never commits, and
        // openraft holds the write until it does (or the leader changes).
        // The entry may still be committed later; the proposer learns
        // nothing more, as after a lost forward.
        let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
        let written = tokio::time::timeout(timeout, raft.client_write(BatchData(data.clone())));
        let forward = match written.await {
            Ok(Ok(written)) => return Ok(written.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => forward,
            Ok(Err(e)) => return Err(ProposeError::Failed(e.to_string())),
            Err(_) => {
                return Err(ProposeError::Unavailable(format!(
                    "not committed within {FORWARD_TIMEOUT_MS} ms (the group's leader has no \
                     majority?)"
                )))
            }
        };
        let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node) else {
            return Err(ProposeError::NoLeader);
        };
        if node_of(leader) == self.id {
            return Err(ProposeError::NoLeader);
        }
        let peer = self.peers.peer(leader, &node.cluster_addr);
        let timeout = Duration::from_millis(FORWARD_TIMEOUT_MS);
        match peer.call(group, &RaftRequest::Propose(data), timeout).await {
            Ok(RaftResponse::Proposed(placed)) => Ok(placed),
            Ok(RaftResponse::Declined(why)) => Err(ProposeError::Declined(why)),
            Ok(RaftResponse::NotLeader(_)) => Err(ProposeError::NoLeader),
            Ok(RaftResponse::Refused(reason)) => Err(ProposeError::Unavailable(reason)),
            Ok(other) => Err(ProposeError::Failed(format!("unexpected answer {other:?}"))),
            Err(e) => Err(ProposeError::Unavailable(format!(
                "forwarding to node {leader}: {e}"
            ))),
        }
    }

    /// Before the node stops: each group it leads hands its leadership
    /// to another voter that is up (the preferred order first; openraft's
    /// `transfer_leader`, which has the target catch up and then elect
    /// with the voters' leases waived), so the group has its next leader
    /// before this one goes instead of after its peers notice it is gone
    /// (`NODE_DEAD_MS`, then an election). Waits up to `wait` for the
    /// handovers; a group whose handover did not complete elects as after
    /// a crash. Answers how many groups were handed over.
    pub async fn hand_over_leadership(&self, wait: Duration) -> usize {
        use openraft::async_runtime::WatchReceiver;
        let mut groups: Vec<(GroupId, PartitionGroup, Vec<NodeId>)> = self.groups.partitions();
        groups.push((GroupId::Meta, self.meta.clone(), Vec::new()));
        let deadline = tokio::time::Instant::now() + wait;
        let mut handed = Vec::new();
        for (group, raft, preference) in groups {
            let Some(to) = self
                .handover_target(&group, &raft, &preference, deadline)
                .await
            else {
                tracing::debug!(
                    ?group,
                    "not handed over: not leading it, or no voter caught up"
                );
                continue;
            };
            if raft.trigger().transfer_leader(to).await.is_ok() {
                handed.push(raft);
            }
        }
        let mut done = 0;
        for raft in &handed {
            let mut metrics = raft.metrics();
            let moved = metrics.wait_until(|m| {
                m.state != openraft::ServerState::Leader && m.current_leader.is_some()
            });
            if tokio::time::timeout_at(deadline, moved).await.is_ok() {
                done += 1;
            }
        }
        done
    }

    /// Who takes over a group this node leads: a voter that is up and
    /// holds the leader's whole log (openraft ignores a handover to one
    /// behind, and the group would then wait for a crash's election), the
    /// preferred order first; waits briefly for one to catch up (writes
    /// have stopped: the node's connections are drained). `None` if this
    /// node does not lead the group or none catches up in time.
    async fn handover_target(
        &self,
        group: &GroupId,
        raft: &PartitionGroup,
        preference: &[NodeId],
        deadline: tokio::time::Instant,
    ) -> Option<u64> {
        use openraft::async_runtime::WatchReceiver;
        let catch_up = (tokio::time::Instant::now() + Duration::from_millis(HANDOVER_CATCH_UP_MS))
            .min(deadline);
        loop {
            let m = raft.metrics().borrow_watched().clone();
            if m.state != openraft::ServerState::Leader {
                return None;
            }
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            let last = m.last_log_index;
            let holds_all = |v: &u64| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(v))
                    .is_some_and(|matched| matched.as_ref().map(|l| l.index) >= last)
            };
            let preferred = preference
                .iter()
                .filter_map(|node| voters.iter().find(|v| node_of(**v) == *node));
            let target = preferred
                .chain(voters.iter())
                .find(|v| **v != m.id && self.liveness.serves_member(**v, group) && holds_all(v))
                .copied();
            if target.is_some() || tokio::time::Instant::now() >= catch_up {
                return target;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the listener and every group, for a node kept behind an `Arc`.
    pub async fn shutdown_groups(&self) {
        self.serving.abort();
        for task in &self.liveness_tasks {
            task.abort();
        }
        for group in self.groups.all() {
            group.shutdown().await.ok();
        }
    }

    /// Stops every group and the listener.
    pub async fn shutdown(self) {
        self.serving.abort();
        for task in &self.liveness_tasks {
            task.abort();
        }
        let _ = self.serving.await;
        for group in self.groups.all() {
            group.shutdown().await.ok();
        }
    }
}

/// Lets peers' questions about incarnations be answered from `known` once
/// the metadata replica has applied everything it had committed at the
/// start (until then they are refused, and the asker asks again).
async fn answer_incarnations_once_replayed(
    meta: PartitionGroup,
    groups: Arc<Groups>,
    known: Arc<crate::meta::MetaHook>,
    committed_index: Option<u64>,
) {
    if let Some(index) = committed_index {
        // Waits as long as it takes: a stopped replica never answers.
        let replayed = meta
            .wait(None)
            .applied_index_at_least(Some(index), "the metadata replayed")
            .await;
        if replayed.is_err() {
            return;
        }
    }
    groups.answer_incarnations_from(known);
}
