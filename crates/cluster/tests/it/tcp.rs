//! Partition groups replicating over the real node-to-node transport:
//! TCP on loopback, authenticated with the cluster secret.

use crate::{batch, open_group_storage, test_config, wait_for_leader, wait_until_replicas_agree};
use spool_cluster::groups::{Groups, PartitionGroup};
use spool_cluster::transport::{serve, ClusterSecret, PartitionNetwork, Peers};
use spool_cluster::types::{NodeAddr, NodeId};
use spool_cluster::wire::GroupId;
use spool_log::Syncer;
use std::collections::BTreeMap;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::net::TcpListener;

fn group_id() -> GroupId {
    GroupId::Partition {
        topic: "orders".into(),
        partition: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_replicate_over_authenticated_tcp() {
    let secret = ClusterSecret::new(b"a secret of the test cluster".to_vec()).unwrap();
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3 as NodeId {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cluster_addr = listener.local_addr().unwrap().to_string();
        addrs.insert(
            id,
            NodeAddr {
                client_addr: String::new(),
                cluster_addr,
            },
        );
        listeners.push(listener);
    }
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let mut rafts: Vec<PartitionGroup> = Vec::new();
    let mut logs = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let groups = Arc::new(Groups::default());
        let peers = Arc::new(Peers::new(id, secret.clone(), None));
        let (store, machine) = open_group_storage(dirs[i].path(), &syncer);
        logs.push(store.log().clone());
        let network = PartitionNetwork {
            group: group_id(),
            peers,
        };
        let raft = PartitionGroup::new(id, test_config(), network, store, machine)
            .await
            .unwrap();
        groups.insert(group_id(), raft.clone());
        tokio::spawn(serve(listener, secret.clone(), id, groups, None));
        rafts.push(raft);
    }
    rafts[0].initialize(addrs).await.unwrap();
    let leader = wait_for_leader(&rafts).await;
    let leader_raft = &rafts[leader as usize - 1];
    let mut next = 0;
    for round in 0..10 {
        let written = leader_raft
            .client_write(batch(&[&format!("tcp-{round}"), "second"]))
            .await
            .unwrap();
        assert_eq!(written.data.base_offset, next);
        next = written.data.next_offset;
    }
    wait_until_replicas_agree(&logs, next).await;
    for raft in rafts {
        raft.shutdown().await.ok();
    }
}

/// A node that does not know the secret gets no vote and no entries: it
/// never learns of a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_secret_cannot_join_in() {
    let right = ClusterSecret::new(b"a secret of the test cluster".to_vec()).unwrap();
    let wrong = ClusterSecret::new(b"not the secret of the cluster".to_vec()).unwrap();
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=2 as NodeId {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cluster_addr = listener.local_addr().unwrap().to_string();
        addrs.insert(
            id,
            NodeAddr {
                client_addr: String::new(),
                cluster_addr,
            },
        );
        listeners.push(listener);
    }
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().unwrap()).collect();
    let mut rafts: Vec<PartitionGroup> = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let secret = if id == 1 {
            right.clone()
        } else {
            wrong.clone()
        };
        let groups = Arc::new(Groups::default());
        let (store, machine) = open_group_storage(dirs[i].path(), &syncer);
        let network = PartitionNetwork {
            group: group_id(),
            peers: Arc::new(Peers::new(id, secret.clone(), None)),
        };
        let raft = PartitionGroup::new(id, test_config(), network, store, machine)
            .await
            .unwrap();
        groups.insert(group_id(), raft.clone());
        tokio::spawn(serve(listener, secret, id, groups, None));
        rafts.push(raft);
    }
    // Two voters: a leader needs both, and they cannot talk.
    rafts[0].initialize(addrs).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for raft in &rafts {
        assert_eq!(
            raft.current_leader().await,
            None,
            "a leader was elected across a wrong secret"
        );
    }
    for raft in rafts {
        raft.shutdown().await.ok();
    }
}
