//! The metadata group on real openraft: three nodes over the in-process
//! router, each applying the group's commands to its own `ClusterState`
//! through a `MetaHook`.

use crate::router::{PartitionGroup, Router, RouterNet};
use crate::{entry_log_config, now_ms, test_config, wait_for_leader};
use spool_cluster::meta::{
    place_replicas, propose, ClusterState, MetaCommand, MetaEffect, MetaHook, MetaRefusal,
    ProposeError,
};
use spool_cluster::partition::{PartitionLogStore, PartitionStateMachine};
use spool_cluster::raft_files::RaftFiles;
use spool_cluster::types::{NodeAddr, NodeId};
use spool_log::{Log, Syncer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tempfile::TempDir;

struct MetaNode {
    raft: PartitionGroup,
    hook: Arc<MetaHook>,
    /// The node's log, to know when a shut-down node has let go of it.
    log: Weak<Log>,
}

/// Starts node `id`'s metadata group from `dir`, with an empty state: the
/// group's log, replayed by openraft, fills it.
async fn start_meta_node(
    id: NodeId,
    dir: &Path,
    router: &Arc<Router>,
    syncer: &Arc<Syncer>,
) -> MetaNode {
    let (log, _report) = Log::open(dir, entry_log_config()).expect("open the metadata log");
    let log = Arc::new(log);
    let files = RaftFiles::open(dir).expect("raft files");
    let hook = Arc::new(MetaHook::new());
    let machine = PartitionStateMachine::open_with_hook(log.clone(), dir, hook.clone())
        .expect("state machine");
    let weak_log = Arc::downgrade(&log);
    let store = PartitionLogStore::new(log, files, syncer.clone(), now_ms);
    let net = RouterNet {
        router: router.clone(),
        from: id,
    };
    let raft = PartitionGroup::new(id, test_config(), net, store, machine)
        .await
        .expect("raft starts");
    router.add(id, raft.clone());
    MetaNode {
        raft,
        hook,
        log: weak_log,
    }
}

fn node_joined(id: NodeId) -> MetaCommand {
    MetaCommand::NodeJoined {
        id,
        client_addr: format!("127.0.0.1:{}", 7000 + id),
        http_addr: None,
        cluster_addr: format!("127.0.0.1:{}", 7100 + id),
        incarnation: format!("{:032x}", 0xabc0 + id),
        generation: None,
    }
}

/// Waits until `node` has applied through Raft index `index`, and returns
/// its state then.
async fn state_at(node: &MetaNode, index: u64) -> ClusterState {
    for _ in 0..250 {
        if node.hook.applied_index() >= Some(index) {
            return node.hook.read().clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "applied only through {:?}, not {index}",
        node.hook.applied_index()
    );
}

/// Commands go through the leader, every node's state shows them alike, a
/// refused command is refused to its proposer and changes no node, and a
/// restarted node rebuilds the same state from its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_the_cluster_state_and_rebuild_it_after_a_restart() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let router = Arc::new(Router::default());
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(start_meta_node(i as NodeId + 1, dir.path(), &router, &syncer).await);
    }
    let members: BTreeMap<NodeId, NodeAddr> = (1..=3).map(|id| (id, NodeAddr::default())).collect();
    nodes[0].raft.initialize(members).await.expect("initialize");
    let rafts: Vec<PartitionGroup> = nodes.iter().map(|n| n.raft.clone()).collect();
    let leader = wait_for_leader(&rafts).await;
    let leader_raft = rafts[leader as usize - 1].clone();
    let follower = if leader == 1 { 2 } else { 1 };
    let mut follower_versions = nodes[follower as usize - 1].hook.subscribe();

    for id in 1..=3 {
        let applied = propose(&leader_raft, &node_joined(id), now_ms())
            .await
            .expect("node joins");
        assert_eq!(applied.effect, MetaEffect::NodeAdded);
    }
    let leader_state = nodes[leader as usize - 1].hook.read().clone();
    let ids: Vec<NodeId> = leader_state.nodes().keys().copied().collect();
    let replicas = place_replicas(&ids, &leader_state.replica_load(), 3, 3).expect("placement");
    let orders = MetaCommand::TopicCreated {
        name: "orders".into(),
        partitions: 3,
        replicas: replicas.clone(),
        config: serde_json::json!({"durability": "always"}),
        created_ms: now_ms(),
    };
    let applied = propose(&leader_raft, &orders, now_ms())
        .await
        .expect("topic created");
    assert_eq!(applied.version, 4);

    // The follower hears of the new version (the server's cue to create
    // the partition groups placed on it).
    tokio::time::timeout(
        Duration::from_secs(5),
        follower_versions.wait_for(|v| *v >= 4),
    )
    .await
    .expect("the follower announces version 4")
    .expect("hook alive");

    // A second creation is refused, to the proposer, and changes nothing.
    let again = propose(&leader_raft, &orders, now_ms()).await;
    assert!(
        matches!(&again, Err(ProposeError::Refused(MetaRefusal::TopicExists(name))) if name == "orders"),
        "{again:?}"
    );

    let last = nodes[leader as usize - 1].hook.applied_index().unwrap();
    let mut states = Vec::new();
    for node in &nodes {
        states.push(state_at(node, last).await);
    }
    for state in &states {
        assert_eq!(state.version(), 4);
        assert_eq!(state.topic("orders").map(|t| &t.replicas), Some(&replicas));
        assert_eq!(*state, states[0], "every node holds the same state");
    }

    // Restart the follower from its directory, with a fresh state.
    let restarted = follower as usize - 1;
    let before = states[restarted].clone();
    let old = nodes.remove(restarted);
    old.raft.shutdown().await.expect("shutdown");
    let MetaNode { log: old_log, .. } = old;
    for _ in 0..250 {
        if old_log.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(old_log.strong_count(), 0, "the old group let go of its log");
    let node = start_meta_node(follower, dirs[restarted].path(), &router, &syncer).await;
    let rebuilt = state_at(&node, last).await;
    assert_eq!(rebuilt, before, "the replayed log gives the same state");
    assert_eq!(rebuilt.version(), 4);
    nodes.insert(restarted, node);

    // And it goes on with the others.
    let block = MetaCommand::ProducerIdsAllocated {
        first: 0,
        count: 1000,
    };
    propose(&leader_raft, &block, now_ms())
        .await
        .expect("producer ids");
    let last = nodes[leader as usize - 1].hook.applied_index().unwrap();
    for node in &nodes {
        let state = state_at(node, last).await;
        assert_eq!(state.next_producer_id(), 1000);
        assert_eq!(state.version(), 5);
    }
    for node in &nodes {
        node.raft.shutdown().await.ok();
    }
}

/// The metadata state lives only in memory and in the log: a snapshot would
/// let openraft purge entries the state is rebuilt from, so a group with a
/// hook neither builds one nor opens over one.
#[tokio::test]
async fn a_group_with_a_hook_keeps_no_snapshot() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    let dir = TempDir::new().unwrap();
    let (log, _report) = Log::open(dir.path(), entry_log_config()).unwrap();
    let log = Arc::new(log);
    let mut machine =
        PartitionStateMachine::open_with_hook(log.clone(), dir.path(), Arc::new(MetaHook::new()))
            .unwrap();
    let mut builder = machine.get_snapshot_builder().await;
    assert!(builder.build_snapshot().await.is_err());
    assert!(!dir.path().join("raft-snapshot").exists());

    // A snapshot file left by a group without a hook.
    let mut plain = PartitionStateMachine::open(log.clone(), dir.path()).unwrap();
    let mut builder = plain.get_snapshot_builder().await;
    builder
        .build_snapshot()
        .await
        .expect("a partition group snapshots");
    let reopened =
        PartitionStateMachine::open_with_hook(log, dir.path(), Arc::new(MetaHook::new()));
    assert!(reopened.is_err(), "opened over a snapshot it cannot use");
}
