//! Whole nodes over loopback TCP: the metadata group forms by itself, and
//! a proposal made on any node, leader or not, is written once.

use crate::{batch, now_ms};
use openraft::async_runtime::WatchReceiver;
use spool_cluster::node::{Node, NodeConfig, ProposeError, RaftTimings};
use spool_cluster::transport::ClusterSecret;
use spool_cluster::types::{NodeAddr, NodeId};
use spool_cluster::wire::GroupId;
use spool_log::Syncer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

async fn start_nodes(count: u64, dirs: &[TempDir]) -> Vec<Node> {
    let secret = ClusterSecret::new(b"the test cluster's secret".to_vec()).unwrap();
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=count {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr {
            client_addr: String::new(),
            cluster_addr: listener.local_addr().unwrap().to_string(),
        };
        members.insert(id, addr);
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let config = NodeConfig {
            node_id: i as NodeId + 1,
            dir: dirs[i].path().to_path_buf(),
            listener,
            members: members.clone(),
            secret: secret.clone(),
            timings: RaftTimings::default(),
            meta_hook: None,
        };
        nodes.push(Node::start(config, syncer.clone(), now_ms).await.unwrap());
    }
    nodes
}

/// Proposes on `node`, retrying while an election is under way.
async fn propose_retrying(node: &Node, value: &str) -> i64 {
    for _ in 0..100 {
        match node.propose(&GroupId::Meta, batch(&[value]).0).await {
            Ok(placed) => return placed.base_offset,
            Err(ProposeError::NoLeader | ProposeError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!(
                "proposal on node {} failed: {e}; {:?}",
                node.id(),
                node.meta().metrics().borrow_watched().running_state
            ),
        }
    }
    panic!("no leader for the proposal on node {}", node.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_on_any_node_are_written_once_and_survive_the_leaders_loss() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_default())
        .with_test_writer()
        .try_init();
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let mut nodes = start_nodes(3, &dirs).await;
    let mut expected = 0;
    for round in 0..3 {
        for node in &nodes {
            let offset = propose_retrying(node, &format!("r{round}-n{}", node.id())).await;
            assert_eq!(offset, expected, "each proposal written once, in order");
            expected += 1;
        }
    }
    // Stop the leader; the other two elect one and take proposals on both.
    let leader = nodes[0]
        .meta()
        .metrics()
        .borrow_watched()
        .current_leader
        .expect("a leader");
    let index = nodes.iter().position(|n| n.id() == leader).unwrap();
    nodes.remove(index).shutdown().await;
    for node in &nodes {
        let offset = propose_retrying(node, &format!("after-n{}", node.id())).await;
        assert_eq!(offset, expected);
        expected += 1;
    }
    for node in nodes {
        node.shutdown().await;
    }
}
