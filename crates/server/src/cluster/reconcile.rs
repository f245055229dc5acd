//! Keeps this node in step with the cluster's metadata: each topic the
//! metadata group holds is a replicated topic of the broker here, and each
//! of its partitions placed on this node has its Raft group running.
//!
//! Runs at the start (the metadata log's replay rebuilds the state) and at
//! every new metadata version. Every step is idempotent, so a step that
//! failed (a disk error, say) is simply tried again.

use super::{members_of, Cluster, Hosted};
use spool_broker::{Broker, TopicConfig};
use spool_cluster::meta::TopicInfo;
use spool_cluster::partition::AppliedHook;
use spool_cluster::types::{AppliedAnswer, LogId};
use spool_cluster::wire::GroupId;
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How soon a reconciliation that failed part-way is tried again.
const RECONCILE_RETRY_MS: u64 = 1_000;

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut versions = cluster.meta.subscribe();
    loop {
        let version = *versions.borrow_and_update();
        let complete = reconcile(&cluster).await;
        // Sent even when unchanged: waiters re-check what they wait for.
        cluster.reconciled.send_replace(version);
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(RECONCILE_RETRY_MS)), if !complete => {}
        }
    }
}

/// One pass; `false` if some step failed (logged) and must be retried.
async fn reconcile(cluster: &Arc<Cluster>) -> bool {
    let topics: Vec<TopicInfo> = cluster.meta.read().topics().values().cloned().collect();
    let mut complete = drop_deleted(cluster).await;
    for topic in &topics {
        if let Err(e) = ensure_topic(cluster, topic).await {
            tracing::warn!(topic = %topic.name, "cannot set up the replicated topic here: {e:#}");
            complete = false;
        }
    }
    complete
}

/// Stops the groups of topics the metadata no longer holds (or holds as a
/// new topic of the same name) and deletes them from the broker.
///
/// Only topics this process has hosted are considered: at a start, before
/// the metadata log is replayed, the state is empty, and reading that as
/// "every topic was deleted" would delete them all.
async fn drop_deleted(cluster: &Arc<Cluster>) -> bool {
    let gone: Vec<(String, u32)> = {
        let state = cluster.meta.read();
        let hosted = cluster.hosted.read().unwrap_or_else(|p| p.into_inner());
        hosted
            .iter()
            .filter(|(key, h)| {
                state.topic(&key.0).map(|t| t.created_version) != Some(h.created_version)
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    let mut names = BTreeSet::new();
    for (topic, partition) in gone {
        let group = GroupId::Partition {
            topic: topic.clone(),
            partition,
        };
        cluster.node.stop_partition(&group).await;
        cluster
            .hosted
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.clone(), partition));
        names.insert(topic);
    }
    let mut complete = true;
    for name in names {
        let broker = cluster.broker.clone();
        let topic = name.clone();
        let deleted =
            tokio::task::spawn_blocking(move || broker.delete_topic(&topic, crate::now_ms())).await;
        match deleted {
            Ok(Ok(())) => tracing::info!(topic = %name, "replicated topic deleted here"),
            Ok(Err(e)) => {
                tracing::warn!(topic = %name, "cannot delete the replicated topic here: {e}");
                complete = false;
            }
            Err(e) => {
                tracing::error!(topic = %name, "deleting the topic panicked: {e}");
                complete = false;
            }
        }
    }
    complete
}

async fn ensure_topic(cluster: &Arc<Cluster>, topic: &TopicInfo) -> anyhow::Result<()> {
    let own = cluster.node.id();
    let name = topic.name.clone();
    if let Ok(local) = cluster.broker.topic(&name) {
        if !local.replicated {
            anyhow::bail!(
                "this node has a single-node topic of that name; rename or delete it to \
                 host the cluster's"
            );
        }
    }
    let config: TopicConfig = serde_json::from_value(topic.config.clone())
        .map_err(|e| anyhow::anyhow!("its settings do not decode: {e}"))?;
    let broker = cluster.broker.clone();
    let (partitions, created_ms) = (topic.partitions, topic.created_ms);
    let n = name.clone();
    tokio::task::spawn_blocking(move || {
        broker.create_replicated_topic(&n, partitions, config, created_ms)
    })
    .await??;
    for (partition, replicas) in topic.replicas.iter().enumerate() {
        let partition = partition as u32;
        if !replicas.contains(&own) || cluster.hosts(&name, partition) {
            continue;
        }
        let log = cluster.broker.partition_log(&name, partition)?;
        let members = members_of(&cluster.peers, replicas.iter());
        let hook = Arc::new(WakeReaders {
            broker: Arc::downgrade(&cluster.broker),
            topic: name.clone(),
            partition,
        });
        let group = GroupId::Partition {
            topic: name.clone(),
            partition,
        };
        let (_raft, proposer) = cluster
            .node
            .host_partition(group, log, members, replicas.clone(), Some(hook))
            .await?;
        cluster
            .hosted
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (name.clone(), partition),
                Hosted {
                    proposer,
                    created_version: topic.created_version,
                },
            );
        tracing::info!(topic = %name, partition, ?replicas, "hosting a replica of the partition");
    }
    Ok(())
}

/// Wakes the partition's long polls and push subscriptions when a
/// replicated entry is applied: its records just became readable (the
/// committed end moved before the hook is called).
struct WakeReaders {
    broker: Weak<Broker>,
    topic: String,
    partition: u32,
}

impl AppliedHook for WakeReaders {
    fn applied(
        &self,
        _log_id: &LogId,
        _batch: &bytes::Bytes,
    ) -> std::io::Result<Option<AppliedAnswer>> {
        if let Some(broker) = self.broker.upgrade() {
            broker.replicated_appended(&self.topic, self.partition);
        }
        Ok(None)
    }

    /// It only wakes readers: the group snapshots (for retention).
    fn keeps_state(&self) -> bool {
        false
    }
}
