//! Node liveness: one heartbeat per node pair stands for every partition
//! group the two share (docs/cluster.md, "Heartbeats").
//!
//! openraft's own heartbeats are per group: each leader sends one to each
//! follower every interval, and each costs a trip through both nodes' Raft
//! cores. Measured on this machine, 500 idle partitions on three nodes
//! took two whole cores that way. So partition groups run with openraft's
//! heartbeats and election timers off; instead every node pings every
//! other every [`NODE_HEARTBEAT_MS`], and a group whose leader's node has
//! not answered for [`NODE_DEAD_MS`] is made to elect (`elect_loop`): by
//! the first live replica in its preference order at once, by any other
//! after [`ELECT_FALLBACK_MS`]. Safety is Raft's as before (any vote
//! still needs a majority and an up-to-date log; elections use pre-vote,
//! so a node cut off from the others cannot inflate terms); only who
//! starts an election, and when, changed.
//!
//! A leader's commit index still reaches its followers without heartbeats:
//! openraft sends it when it advances.

use crate::groups::Groups;
use crate::transport::Peers;
use crate::types::{generation_of, node_of, NodeAddr, NodeId};
use crate::wire::{GroupId, RaftRequest, RaftResponse};
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How often a node pings each other node.
pub const NODE_HEARTBEAT_MS: u64 = 50;
/// A node that has not answered a ping for this long is taken for down
/// (eight heartbeats: a busy two-core machine delays some).
pub const NODE_DEAD_MS: u64 = 400;
/// How soon a replica tries again when its election did not give the
/// group a leader (a vote refused while an old leader's lease ran out, a
/// split vote).
pub const ELECT_RETRY_MS: u64 = 300;
/// How long a group may stay without a live leader before replicas other
/// than the designated one try too (the designated one may be stuck).
pub const ELECT_FALLBACK_MS: u64 = 1_500;

/// When each other node last answered a ping.
pub struct Liveness {
    own_id: NodeId,
    own_generation: u64,
    /// Per node, the generation its last answer reported.
    generations: Mutex<HashMap<NodeId, u64>>,
    answered: Mutex<HashMap<NodeId, Instant>>,
    /// Per node, the groups that stopped on it, as its last answer said.
    stopped: Mutex<HashMap<NodeId, Vec<GroupId>>>,
    /// Until a node has pinged its peers for [`NODE_DEAD_MS`], it takes
    /// them for alive: a node that just started has heard from no one, and
    /// taking every leader for dead would start elections everywhere.
    started: Instant,
}

impl Liveness {
    pub fn new(own_id: NodeId, own_generation: u64) -> Liveness {
        Liveness {
            own_id,
            own_generation,
            generations: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
            stopped: Mutex::new(HashMap::new()),
            started: Instant::now(),
        }
    }

    fn answered(&self, id: NodeId, stopped: Vec<GroupId>, generation: u64) {
        self.lock().insert(id, Instant::now());
        self.generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, generation);
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, stopped);
    }

    /// Whether `id` is up and its replica of `group` runs (this node's own
    /// replicas are looked at directly, not here).
    pub fn serves(&self, id: NodeId, group: &GroupId) -> bool {
        let id = node_of(id);
        self.alive(id)
            && !self
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_some_and(|stopped| stopped.contains(group))
    }

    /// Whether Raft member `member` is up and its replica of `group` runs:
    /// its node [`serves`](Liveness::serves) the group as that member's
    /// generation (a node that came back in a later generation after
    /// losing its data is alive, but its old member is gone).
    pub fn serves_member(&self, member: u64, group: &GroupId) -> bool {
        let node = node_of(member);
        let generation = if node == self.own_id {
            Some(self.own_generation)
        } else {
            self.generations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&node)
                .copied()
        };
        // Before a node's first answer its generation is not known: taken
        // for the member's, as a node is taken for alive at the start.
        self.serves(node, group) && generation.is_none_or(|g| g == generation_of(member))
    }

    /// Whether `id` answered lately (this node always is).
    pub fn alive(&self, id: NodeId) -> bool {
        let id = node_of(id);
        if id == self.own_id {
            return true;
        }
        let dead_after = Duration::from_millis(NODE_DEAD_MS);
        self.started.elapsed() < dead_after
            || self
                .lock()
                .get(&id)
                .is_some_and(|at| at.elapsed() < dead_after)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        self.answered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pings every other member every [`NODE_HEARTBEAT_MS`], recording who
/// answers. Runs until aborted.
pub async fn ping_loop(
    own_id: NodeId,
    members: BTreeMap<NodeId, NodeAddr>,
    peers: Arc<Peers>,
    liveness: Arc<Liveness>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(NODE_HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (id, node) in members.iter().filter(|(id, _)| **id != own_id) {
            let peer = peers.peer(*id, &node.cluster_addr);
            let liveness = liveness.clone();
            let id = *id;
            tokio::spawn(async move {
                let wait = Duration::from_millis(NODE_DEAD_MS);
                let answer = peer.call(&GroupId::Meta, &RaftRequest::Heartbeat, wait);
                if let Ok(Ok(RaftResponse::Alive {
                    stopped,
                    generation,
                })) = tokio::time::timeout(wait, answer).await
                {
                    liveness.answered(id, stopped, generation);
                }
            });
        }
    }
}

/// Per group, since when it has had no live leader and when this node
/// last asked it to elect.
#[derive(Default)]
struct Leaderless {
    since: HashMap<GroupId, Instant>,
    last_elect: HashMap<GroupId, Instant>,
}

/// Makes partition groups without a live leader elect one (see the module
/// comment). Runs until aborted.
pub async fn elect_loop(groups: Arc<Groups>, liveness: Arc<Liveness>) {
    let mut tick = tokio::time::interval(Duration::from_millis(NODE_HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leaderless = Leaderless::default();
    loop {
        tick.tick().await;
        let now = Instant::now();
        for (group, raft, preference) in groups.partitions() {
            let (me, state, leader, membership) = {
                let metrics = raft.metrics();
                let m = metrics.borrow_watched();
                (m.id, m.state, m.current_leader, m.membership_config.clone())
            };
            // Raft member ids, not node ids: a node that came back in a new
            // generation is not its old self, which may still be a voter
            // (and may be the leader its peers last heard of).
            let voters: Vec<u64> = membership.membership().voter_ids().collect();
            let is_voter = voters.contains(&me);
            let led = state == ServerState::Leader
                || leader.is_some_and(|l| liveness.serves_member(l, &group));
            if led || !is_voter {
                leaderless.since.remove(&group);
                continue;
            }
            let since = *leaderless.since.entry(group.clone()).or_insert(now);
            // The designated candidate: the first live replica in the
            // group's preference order (its preferred leader first), not
            // the leader that is down.
            let preferred = preference
                .iter()
                .filter_map(|node| voters.iter().find(|v| node_of(**v) == *node));
            let designated = preferred
                .chain(voters.iter())
                .filter(|member| Some(**member) != leader)
                .find(|member| liveness.serves_member(**member, &group))
                .copied();
            let my_turn = designated == Some(me)
                || now.duration_since(since) >= Duration::from_millis(ELECT_FALLBACK_MS);
            let recently = leaderless
                .last_elect
                .get(&group)
                .is_some_and(|at| now.duration_since(*at) < Duration::from_millis(ELECT_RETRY_MS));
            if my_turn && !recently {
                leaderless.last_elect.insert(group.clone(), now);
                tracing::debug!(?group, ?leader, "no live leader: starting an election");
                let _ = raft.trigger().elect(true).await;
            }
        }
        leaderless.last_elect.retain(|g, at| {
            leaderless.since.contains_key(g) || now.duration_since(*at) < Duration::from_secs(10)
        });
    }
}
