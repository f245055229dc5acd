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
            tls: None,
            timings: RaftTimings::default(),
            meta_hook: None,
            known_nodes: None,
            new_incarnation: None,
            client_addr: String::new(),
            http_addr: None,
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

/// Three nodes in temporary directories, and the partition group the
/// tests host on them.
async fn three_nodes() -> (Vec<TempDir>, Vec<Node>, GroupId) {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let nodes = start_nodes(3, &dirs).await;
    let group = GroupId::Partition {
        topic: "t".into(),
        partition: 0,
    };
    (dirs, nodes, group)
}

/// Proposes `value` through `proposer` until a leader takes it (retrying
/// while there is none, or it is not reachable).
async fn write_through(
    proposer: &spool_cluster::proposer::Proposer,
    value: &str,
) -> spool_cluster::types::BatchPlaced {
    use spool_cluster::proposer::ProposalError;
    for _ in 0..200 {
        match proposer.propose(batch(&[value]).0).await.unwrap() {
            Ok(placed) => return placed,
            Err(ProposalError::NotLeader { .. } | ProposalError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no leader took the write");
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

/// Starts a replica of `group` on every node (its log in the node's
/// directory), the metadata group's members as its members; the proposers.
async fn host_everywhere(
    nodes: &[Node],
    dirs: &[TempDir],
    group: &GroupId,
    preference: Vec<NodeId>,
) -> Vec<spool_cluster::proposer::Proposer> {
    let hosted = host_everywhere_with_logs(nodes, dirs, group, preference).await;
    hosted.into_iter().map(|(_, proposer)| proposer).collect()
}

/// The members (with their addresses) of `raft`'s group.
fn members_of(raft: &spool_cluster::groups::PartitionGroup) -> BTreeMap<NodeId, NodeAddr> {
    raft.metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect()
}

/// [`host_everywhere`], with each replica's log.
async fn host_everywhere_with_logs(
    nodes: &[Node],
    dirs: &[TempDir],
    group: &GroupId,
    preference: Vec<NodeId>,
) -> Vec<(Arc<spool_log::Log>, spool_cluster::proposer::Proposer)> {
    let members = members_of(nodes[0].meta());
    let mut proposers = Vec::new();
    for (node, dir) in nodes.iter().zip(dirs) {
        let config = crate::entry_log_config();
        let (log, _) = spool_log::Log::open(&dir.path().join("t-0"), config).unwrap();
        let log = Arc::new(log);
        let (_, proposer) = node
            .host_partition(
                group.clone(),
                log.clone(),
                Some(members.clone()),
                preference.clone(),
                None,
            )
            .await
            .unwrap();
        proposers.push((log, proposer));
    }
    proposers
}

/// An idempotent producer's batch proposed again (as after a leader change
/// whose answer was lost) is answered with the first one's offsets and
/// stored once, whichever node it is proposed on; an older batch that is
/// not one of the producer's last is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_batch_sent_again_is_stored_once() {
    use spool_cluster::proposer::ProposalError;
    let (dirs, nodes, group) = three_nodes().await;
    let proposers = host_everywhere(&nodes, &dirs, &group, vec![]).await;
    let idempotent = |first_seq: i32, values: &[&str]| {
        let mut builder = spool_batch::BatchBuilder::new();
        for v in values {
            builder
                .push(&spool_batch::NewRecord::value(
                    v.as_bytes().to_vec(),
                    now_ms(),
                ))
                .unwrap();
        }
        builder.set_producer(42, 0, first_seq);
        bytes::Bytes::from(builder.finish().unwrap())
    };
    let propose = |on: usize, data: bytes::Bytes| {
        let proposer = proposers[on].clone();
        async move {
            for _ in 0..100 {
                match proposer.propose(data.clone()).await.unwrap() {
                    Err(ProposalError::NotLeader { .. }) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    answer => return answer,
                }
            }
            panic!("no leader");
        }
    };
    let first = propose(0, idempotent(0, &["a", "b"])).await.unwrap();
    let second = propose(1, idempotent(2, &["c"])).await.unwrap();
    assert_eq!((first.base_offset, second.base_offset), (0, 2));
    // Sent again, on every node: the original's offsets, nothing stored.
    for on in 0..3 {
        let again = propose(on, idempotent(0, &["a", "b"])).await.unwrap();
        assert_eq!((again.base_offset, again.next_offset), (0, 2), "node {on}");
    }
    let third = propose(2, idempotent(3, &["d"])).await.unwrap();
    assert_eq!(third.base_offset, 3, "the duplicates took no offsets");
    let stale = propose(0, idempotent(1, &["x"])).await;
    assert!(
        matches!(stale, Err(ProposalError::StaleSequence(_))),
        "{stale:?}"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// A partition group that stops on its leader's node (a fatal storage
/// error, a full disk) while the node itself stays up: the node's pings
/// say so, and the other replicas elect a new leader and take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_stopped_on_a_live_leader_is_replaced() {
    let (dirs, nodes, group) = three_nodes().await;
    let proposers = host_everywhere(&nodes, &dirs, &group, vec![1, 2, 3]).await;
    write_through(&proposers[1], "first").await;
    let leader = nodes[0]
        .groups()
        .get(&group)
        .unwrap()
        .metrics()
        .borrow_watched()
        .current_leader
        .expect("a leader");
    let leader_node = nodes.iter().find(|n| n.id() == leader).unwrap();
    // Stopped, but still registered and its node still answering pings.
    leader_node
        .groups()
        .get(&group)
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let other = nodes.iter().position(|n| n.id() != leader).unwrap();
    let placed = write_through(&proposers[other], "after").await;
    assert_eq!(
        placed.base_offset, 1,
        "written after the first, by a new leader"
    );
    let new_leader = nodes[other]
        .groups()
        .get(&group)
        .unwrap()
        .metrics()
        .borrow_watched()
        .current_leader;
    assert!(new_leader.is_some_and(|l| l != leader), "{new_leader:?}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// A replica restarted over its storage while it led (a reopen after a
/// full disk, a quick restart) does not take its old term's leadership
/// back without an election: entries of that term in its log may not be
/// committed, and its new proposer's duplicate check does not know them
/// (found by the fault harness: a producer's retry stored twice, two
/// offsets apart). The group takes writes again under a leader of a
/// later term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_in_place_does_not_resume_its_term() {
    let (dirs, nodes, group) = three_nodes().await;
    let hosted = host_everywhere_with_logs(&nodes, &dirs, &group, vec![1, 2, 3]).await;
    write_through(&hosted[0].1, "first").await;
    let metrics = nodes[0].groups().get(&group).unwrap().metrics();
    let (leader, term) = {
        let m = metrics.borrow_watched();
        (m.current_leader.expect("a leader"), m.current_term)
    };
    let i = nodes.iter().position(|n| n.id() == leader).unwrap();
    let members = members_of(&nodes[i].groups().get(&group).unwrap());
    nodes[i].stop_partition(&group).await;
    let (raft, _) = nodes[i]
        .host_partition(
            group.clone(),
            hosted[i].0.clone(),
            Some(members),
            vec![1, 2, 3],
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (state, now_term) = {
        let m = raft.metrics();
        let m = m.borrow_watched();
        (m.state, m.current_term)
    };
    assert!(
        !(state == openraft::ServerState::Leader && now_term == term),
        "node {leader} took term {term}'s leadership back without an election"
    );
    let placed = write_through(&hosted[(i + 1) % 3].1, "after").await;
    assert_eq!(placed.base_offset, 1, "written after the first");
    let m = raft.metrics();
    let new_term = m.borrow_watched().current_term;
    assert!(new_term > term, "a later term's leader took it: {new_term}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// A replica that joins after its leader's retention purged the start of
/// the log catches up by snapshot: it installs the state at the leader's
/// retention cut and receives every entry the leader still stores, so it
/// ends with the same records from the same start offset. (Retention on a
/// replicated partition goes through its group: a snapshot at the cut,
/// then openraft purges; the node's retention loop does it every second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_leaders_retention_catches_up_by_snapshot() {
    use spool_cluster::proposer::ProposalError;
    const RECORD_BYTES: usize = 1024;
    let (dirs, nodes, group) = three_nodes().await;
    let members = nodes[0]
        .meta()
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect::<BTreeMap<_, _>>();
    let config = spool_log::LogConfig {
        segment_bytes: 64 << 10,
        retention_bytes: Some(128 << 10),
        ..crate::entry_log_config()
    };
    let host = |i: usize| {
        let (node, dir) = (&nodes[i], &dirs[i]);
        let (members, config, group) = (members.clone(), config.clone(), group.clone());
        async move {
            let (log, _) = spool_log::Log::open(&dir.path().join("t-0"), config).unwrap();
            let log = Arc::new(log);
            let (_, proposer) = node
                .host_partition(group, log.clone(), Some(members), vec![1, 2, 3], None)
                .await
                .unwrap();
            (log, proposer)
        }
    };
    // Nodes 1 and 2 only: a majority, node 3 not started yet.
    let (leader_log, proposer) = host(0).await;
    let (_follower_log, _) = host(1).await;
    let value = "x".repeat(RECORD_BYTES);
    let values: Vec<&str> = vec![value.as_str(); 10];
    let mut written = 0;
    while written < 60 {
        match proposer.propose(batch(&values).0).await.unwrap() {
            Ok(_) => written += 1,
            Err(ProposalError::NotLeader { .. } | ProposalError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The leader's retention cuts the log's start (snapshot, then purge),
    // and openraft knows it.
    let leader_raft = nodes[0].groups().get(&group).unwrap();
    let purged = || leader_raft.metrics().borrow_watched().purged;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while leader_log.stats().start_offset == 0 || purged().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "retention never cut the leader's log: {:?}, purged {:?}",
            leader_log.stats(),
            purged()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = leader_log.stats().start_offset;
    // Node 3 joins with an empty log: it needs entries the leader purged.
    let (late_log, _) = host(2).await;
    let end = leader_log.stats().end_offset;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (late, lead) = (late_log.stats(), leader_log.stats());
        if late.end_offset == end && late.start_offset == lead.start_offset {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the late replica never caught up: {late:?} vs the leader's {lead:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start > 0 && late_log.stats().start_offset >= start);
    assert_eq!(
        crate::read_everything(&late_log),
        crate::read_everything(&leader_log),
        "the same records from the same start"
    );
    // And it goes on replicating.
    let next = loop {
        match proposer.propose(batch(&["after"]).0).await.unwrap() {
            Ok(placed) => break placed.next_offset,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while late_log.stats().end_offset < next {
        assert!(std::time::Instant::now() < deadline, "no replication after");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A pre-vote goes over the wire and the receiver answers it: a
/// candidate whose log is behind is refused, and nothing changes on the
/// receiver. (openraft's network grants every pre-vote itself unless the
/// transport sends it, which made every "pre-vote" a real election.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_vote_is_sent_and_answered_by_the_receiver() {
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::VoteRequest;
    use spool_cluster::transport::{PartitionNetwork, Peers};
    use spool_cluster::types::Vote;
    let (dirs, nodes, group) = three_nodes().await;
    let proposers = host_everywhere(&nodes, &dirs, &group, vec![1, 2, 3]).await;
    write_through(&proposers[0], "x").await;
    let target = nodes[1].groups().get(&group).unwrap();
    let before = target.metrics().borrow_watched().clone();
    let addr = nodes[0]
        .meta()
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&2)
        .cloned()
        .expect("node 2's address");
    let secret = ClusterSecret::new(b"the test cluster's secret".to_vec()).unwrap();
    let mut network = PartitionNetwork {
        group: group.clone(),
        peers: Arc::new(Peers::new(3, secret, None)),
    };
    let mut client = network.new_client(2, &addr).await;
    // Node 3 asking, with an empty log, for the next term.
    let ask = VoteRequest::new(Vote::new(before.current_term + 1, 3), None);
    let answer = client
        .pre_vote(ask, RPCOption::new(Duration::from_secs(2)))
        .await
        .expect("an answer");
    assert!(
        !answer.vote_granted,
        "granted to a candidate behind: {answer:?}"
    );
    let after = target.metrics().borrow_watched().clone();
    assert_eq!(
        after.current_term, before.current_term,
        "a pre-vote changed the term"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// Raft messages name the member they are for: a node's replica answers
/// only those addressed to itself. A node that lost its data comes back
/// as a new member while its old self may still be a voter, and the
/// empty replica must not vote or acknowledge entries as the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_answers_only_raft_messages_addressed_to_its_own_member() {
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::VoteRequest;
    use spool_cluster::transport::{PartitionNetwork, Peers};
    use spool_cluster::types::{member_id, Vote};
    let (dirs, nodes, group) = three_nodes().await;
    let proposers = host_everywhere(&nodes, &dirs, &group, vec![1, 2, 3]).await;
    write_through(&proposers[0], "x").await;
    let target = nodes[1].groups().get(&group).unwrap();
    let before = target.metrics().borrow_watched().clone();
    let addr = members_of(nodes[0].meta())[&2].clone();
    let secret = ClusterSecret::new(b"the test cluster's secret".to_vec()).unwrap();
    let mut network = PartitionNetwork {
        group: group.clone(),
        peers: Arc::new(Peers::new(3, secret, None)),
    };
    // Node 3 asking for the next term: node 2's replica (member 2,
    // generation 0) answers it when asked as itself (not granted: its
    // leader is alive) ...
    let ask = || {
        let last = before
            .last_log_index
            .map(|i| spool_cluster::types::log_id(before.current_term, i));
        VoteRequest::new(Vote::new(before.current_term + 1, 3), last)
    };
    let option = || RPCOption::new(Duration::from_secs(2));
    // ... and refuses the same vote addressed to node 2's next generation
    // without looking at it.
    let mut later = network.new_client(member_id(2, 1), &addr).await;
    let refused = later.vote(ask(), option()).await;
    let Err(e) = refused else {
        panic!("a vote for another member was answered: {refused:?}");
    };
    assert!(e.to_string().contains("addressed to member"), "{e}");
    assert_eq!(
        target.metrics().borrow_watched().vote,
        before.vote,
        "the refused vote changed nothing"
    );
    let mut itself = network.new_client(2, &addr).await;
    itself.vote(ask(), option()).await.expect("an answer");
    for node in nodes {
        node.shutdown().await;
    }
}

/// A follower shows a write soon after it is committed, without another
/// write after it: openraft sends followers the new commit index by
/// itself, although partition groups send no periodic heartbeats
/// (`liveness`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_show_the_last_write_without_another_after_it() {
    let (dirs, nodes, group) = three_nodes().await;
    let hosted = host_everywhere_with_logs(&nodes, &dirs, &group, vec![1, 2, 3]).await;
    for i in 0..5 {
        let next = write_through(&hosted[0].1, &format!("v{i}"))
            .await
            .next_offset;
        // Nothing else is written while it waits.
        let answered = std::time::Instant::now();
        while hosted.iter().any(|(log, _)| log.stats().end_offset < next)
            && answered.elapsed() < Duration::from_millis(100)
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let ends: Vec<i64> = hosted
            .iter()
            .map(|(log, _)| log.stats().end_offset)
            .collect();
        assert!(
            ends.iter().all(|end| *end == next),
            "write {i}: readable up to {ends:?} on the replicas, not {next}"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A group whose only voter is this node (a topic of one replica) writes
/// without waiting for a lease renewal: it is its own quorum, and openraft
/// keeps no fresh quorum time for it, so after a quiet spell the renewal
/// waited its whole second (`LEASE_RENEW_WAIT_MS`) before the write (a
/// 1-node cluster's end-to-end p50 was 35 s at 5,000 msgs/s). Each write
/// after a pause longer than the lease's freshness (300 ms) must take
/// well under that second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_group_writes_without_waiting_for_a_lease() {
    let (dirs, nodes, group) = three_nodes().await;
    let own = nodes[0].id();
    let members: BTreeMap<NodeId, NodeAddr> = nodes[0]
        .meta()
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id == own)
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    let (log, _) =
        spool_log::Log::open(&dirs[0].path().join("t-0"), crate::entry_log_config()).unwrap();
    let (_, proposer) = nodes[0]
        .host_partition(group, Arc::new(log), Some(members), vec![own], None)
        .await
        .unwrap();
    write_through(&proposer, "first").await;
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = std::time::Instant::now();
        write_through(&proposer, &format!("v{i}")).await;
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "write {i} after a pause took {:?}",
            started.elapsed()
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}
