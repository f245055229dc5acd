//! What an operator watches of the cluster from this node
//! (`docs/metrics.md`, "Cluster"): for each partition replica hosted here
//! its leader and term; on the leader, each follower's lag and whether the
//! partition is under-replicated; and every leader change, counted on
//! each replica and logged, with its likely reason, by the node that
//! takes over.
//!
//! Read from openraft's metrics every [`OBSERVE_MS`]: a leader change
//! seen a fraction of a second late costs nothing, and an idle partition
//! costs no wakeup of its own.

use super::Cluster;
use metrics::{counter, gauge};
use spool_cluster::openraft::async_runtime::WatchReceiver;
use spool_cluster::openraft::ServerState;
use spool_cluster::types::{generation_of, node_of, NodeId};
use spool_cluster::wire::GroupId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the hosted partitions' Raft metrics are read.
const OBSERVE_MS: u64 = 500;

/// Per hosted partition, what was seen at the last look.
#[derive(Default)]
struct Seen {
    /// The last leader known (a member id), kept while there is none.
    leader: Option<u64>,
    /// The followers whose lag this node reported as leader.
    lag_reported: Vec<NodeId>,
}

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut seen: HashMap<GroupId, Seen> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(OBSERVE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut under_replicated = 0u64;
        let partitions = cluster.node.groups().partitions();
        for (group, raft, _) in &partitions {
            let GroupId::Partition { topic, partition } = group else {
                continue;
            };
            let metrics = raft.metrics().borrow_watched().clone();
            let labels = Labels {
                topic: topic.clone(),
                partition: partition.to_string(),
            };
            let leader = metrics.current_leader;
            gauge!("spool_cluster_partition_leader", "topic" => labels.topic.clone(), "partition" => labels.partition.clone())
                .set(leader.map_or(0, node_of) as f64);
            gauge!("spool_cluster_partition_term", "topic" => labels.topic.clone(), "partition" => labels.partition.clone())
                .set(metrics.current_term as f64);
            let was = seen.entry(group.clone()).or_default();
            if let (Some(before), Some(now)) = (was.leader, leader) {
                if before != now {
                    counter!("spool_cluster_leader_changes_total", "topic" => labels.topic.clone(), "partition" => labels.partition.clone())
                        .increment(1);
                    if metrics.state == ServerState::Leader {
                        tracing::info!(
                            topic,
                            partition,
                            term = metrics.current_term,
                            previous_leader = node_of(before),
                            reason = %reason(&cluster, group, before),
                            "this node now leads the partition"
                        );
                    }
                }
            }
            if leader.is_some() {
                was.leader = leader;
            }
            let leading = metrics.state == ServerState::Leader;
            let lagging = if leading {
                follower_lags(&metrics)
            } else {
                Vec::new()
            };
            // A follower no longer reported (this node stopped leading, or
            // the member left) reads 0, not its last lag.
            for gone in was
                .lag_reported
                .iter()
                .filter(|id| !lagging.iter().any(|(l, _)| l == *id))
            {
                follower_lag(&labels, *gone).set(0.0);
            }
            for (follower, lag) in &lagging {
                follower_lag(&labels, *follower).set(*lag as f64);
            }
            was.lag_reported = lagging.iter().map(|(id, _)| *id).collect();
            if leading {
                let state = cluster.meta.read();
                let replicas = state
                    .topic(topic)
                    .and_then(|t| t.replicas.get(*partition as usize))
                    .map_or(0, Vec::len);
                if cluster.in_sync(&metrics, &state).len() < replicas {
                    under_replicated += 1;
                }
            }
        }
        gauge!("spool_cluster_under_replicated_partitions").set(under_replicated as f64);
        seen.retain(|group, _| partitions.iter().any(|(g, _, _)| g == group));
    }
}

/// A partition's metric labels.
struct Labels {
    topic: String,
    partition: String,
}

fn follower_lag(labels: &Labels, follower: NodeId) -> metrics::Gauge {
    gauge!(
        "spool_cluster_follower_lag_entries",
        "topic" => labels.topic.clone(),
        "partition" => labels.partition.clone(),
        "follower" => follower.to_string()
    )
}

/// On a leader: each follower's node and how many entries of the leader's
/// log it does not hold yet.
fn follower_lags(
    metrics: &spool_cluster::openraft::RaftMetrics<spool_cluster::types::PartitionRaft>,
) -> Vec<(NodeId, u64)> {
    let last = metrics.last_log_index.map_or(0, |i| i + 1);
    metrics
        .replication
        .iter()
        .flatten()
        .filter(|(member, _)| **member != metrics.id)
        .map(|(member, matched)| {
            let held = matched.as_ref().map_or(0, |m| m.index + 1);
            (node_of(*member), last.saturating_sub(held))
        })
        .collect()
}

/// Why the leadership of `group` moved away from member `before`, as this
/// node can tell.
fn reason(cluster: &Cluster, group: &GroupId, before: u64) -> String {
    let node = node_of(before);
    if cluster.node.groups().take_handover(group) {
        return format!("node {node} handed it over (it is stopping)");
    }
    if node == cluster.node.id() {
        return "this node's earlier replica led it (a restart or a reopened replica)".into();
    }
    let recorded = cluster.meta.read().node(node).map(|n| n.generation);
    if recorded.is_some_and(|g| g > generation_of(before)) {
        return format!("node {node} lost its data and came back as a new member");
    }
    if !cluster.node.alive(node) {
        return format!("node {node} stopped answering");
    }
    if !cluster.node.serves(node, group) {
        return format!("node {node}'s replica stopped (a storage error)");
    }
    format!("an election while node {node} was answering (a slow node or a cut link)")
}
