//! Keeps this node in step with the cluster's metadata: each topic the
//! metadata group holds is a replicated topic of the broker here, and each
//! of its partitions placed on this node has its Raft group running.
//!
//! Runs at the start (the metadata log's replay rebuilds the state) and at
//! every new metadata version. Every step is idempotent, so a step that
//! failed (a disk error, say) is simply tried again.
//!
//! It also reopens partition replicas whose Raft core stopped on a storage
//! error (a full disk: openraft stops a group at any storage error): the
//! log cut the failed append back to a batch boundary, so once there is
//! space the replica is started again over the same log, as a restart of
//! the node would, and catches up from its leader. Until then it is tried
//! again with a growing pause. A log whose fdatasync failed is not
//! reopened (the kernel may have dropped its dirty pages): that takes a
//! restart, whose recovery checks the files.

use super::{members_of, Cluster, Hosted};
use spool_broker::{Broker, TopicConfig};
use spool_cluster::meta::TopicInfo;
use spool_cluster::partition::AppliedHook;
use spool_cluster::types::{AppliedAnswer, LogId};
use spool_cluster::wire::GroupId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How soon a reconciliation that failed part-way is tried again.
const RECONCILE_RETRY_MS: u64 = 1_000;
/// How often this node looks for replicas stopped on a storage error.
const STOPPED_CHECK_MS: u64 = 1_000;
/// The first pause before a stopped replica is reopened; it doubles after
/// each reopening that stopped again (the disk still full), up to
/// [`REOPEN_BACKOFF_MAX_MS`].
const REOPEN_BACKOFF_MS: u64 = 1_000;
const REOPEN_BACKOFF_MAX_MS: u64 = 30_000;

pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut versions = cluster.meta.subscribe();
    let mut reopening = Reopening::default();
    let mut stopped_check = tokio::time::interval(Duration::from_millis(STOPPED_CHECK_MS));
    stopped_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = true;
    let mut retry_at = None;
    loop {
        if due {
            let version = *versions.borrow_and_update();
            let complete = reconcile(&cluster).await;
            // Sent even when unchanged: waiters re-check what they wait for.
            cluster.reconciled.send_replace(version);
            retry_at =
                (!complete).then(|| Instant::now() + Duration::from_millis(RECONCILE_RETRY_MS));
        }
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        due = tokio::select! {
            changed = versions.changed() => if changed.is_err() { return } else { true },
            _ = retry => true,
            // Only a replica let go needs a reconciliation (which hosts it
            // again).
            _ = stopped_check.tick() => reopening.let_go_stopped(&cluster).await,
        };
    }
}

/// Replicas stopped on a storage error, and when each may be reopened.
#[derive(Default)]
struct Reopening {
    /// Per group: when it may be reopened next, and the pause to wait
    /// after that if it stops again.
    next: HashMap<GroupId, (Instant, u64)>,
}

impl Reopening {
    /// Stops hosting the partition replicas whose Raft core stopped on a
    /// storage error and whose pause is over, so that the reconciliation
    /// that follows starts them again. `true` if it let any go.
    async fn let_go_stopped(&mut self, cluster: &Arc<Cluster>) -> bool {
        let now = Instant::now();
        let mut let_go = false;
        for (group, error) in cluster.node.groups().stopped_on_storage_error() {
            let (at, pause_ms) = match self.next.get(&group) {
                Some(next) => *next,
                None => {
                    first_seen(&group, &error);
                    let first = (
                        now + Duration::from_millis(REOPEN_BACKOFF_MS),
                        REOPEN_BACKOFF_MS,
                    );
                    self.next.insert(group.clone(), first);
                    first
                }
            };
            // The metadata group has state beside its log (the cluster's
            // view, rebuilt by replaying it): reopened by a restart only.
            let GroupId::Partition { topic, partition } = &group else {
                continue;
            };
            if now < at || !log_still_usable(cluster, topic, *partition).await {
                continue;
            }
            cluster.node.stop_partition(&group).await;
            cluster
                .hosted
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(topic.clone(), *partition));
            tracing::info!(topic, partition, "reopening the partition replica");
            // If it stops again, the next pause is longer.
            let next_pause_ms = (pause_ms * 2).min(REOPEN_BACKOFF_MAX_MS);
            let next = (
                Instant::now() + Duration::from_millis(pause_ms),
                next_pause_ms,
            );
            self.next.insert(group, next);
            let_go = true;
        }
        // Forget replicas that have run again for a while.
        let quiet = Duration::from_millis(REOPEN_BACKOFF_MAX_MS * 2);
        self.next.retain(|_, (at, _)| now < *at + quiet);
        let_go
    }
}

fn first_seen(group: &GroupId, error: &str) {
    match group {
        GroupId::Partition { topic, partition } => tracing::warn!(
            topic,
            partition,
            "partition replica stopped on a storage error ({error}); it is reopened once \
             its log takes writes again"
        ),
        GroupId::Meta => tracing::error!(
            "this node's metadata replica stopped on a storage error ({error}); restart the \
             node once the cause is fixed"
        ),
    }
}

/// Whether the partition's log can take writes again: everything written
/// to it becomes durable (so the reopened replica claims nothing that is
/// not on disk). `false`, logged, if its fdatasync fails or it failed
/// before.
async fn log_still_usable(cluster: &Arc<Cluster>, topic: &str, partition: u32) -> bool {
    let log = match cluster.broker.partition_log(topic, partition) {
        Ok(log) => log,
        Err(_) => return false,
    };
    match tokio::task::spawn_blocking(move || log.flush()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(
                topic,
                partition,
                "the partition's log cannot be reopened in place ({e}); restart the node"
            );
            false
        }
        Err(_) => false,
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
