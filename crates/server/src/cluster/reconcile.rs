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
//! space (a probe file of a largest batch's size can be written beside
//! it) the replica is started again over the same log, as a restart of
//! the node would, and catches up from its leader. A replica that stops
//! again soon after is given a growing pause (a cause other than space).
//! A log whose fdatasync failed is not reopened (the kernel may have
//! dropped its dirty pages): that takes a restart, whose recovery checks
//! the files.

use super::{Cluster, Hosted};
use spool_broker::{Broker, TopicConfig};
use spool_cluster::meta::TopicInfo;
use spool_cluster::partition::AppliedHook;
use spool_cluster::types::{node_of, AppliedAnswer, LogId, NodeAddr};
use spool_cluster::wire::GroupId;
use spool_log::Log;
use spool_types::limits::BATCH_BYTES_MAX;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How soon a reconciliation that failed part-way is tried again.
const RECONCILE_RETRY_MS: u64 = 1_000;
/// How often this node looks for replicas stopped on a storage error.
const STOPPED_CHECK_MS: u64 = 1_000;
/// The pause before a replica that stopped again after a reopening is
/// reopened once more; it doubles each time, up to
/// [`REOPEN_BACKOFF_MAX_MS`] (space was there, so something else fails,
/// or the disk keeps filling). Short: while a replica waits, its partition
/// has one replica fewer, and one more fault elsewhere costs it its
/// majority (with a 30 s cap the fault harness's partitions stalled that
/// long); a reopening costs a replay of the log's tail.
const REOPEN_BACKOFF_MS: u64 = 1_000;
const REOPEN_BACKOFF_MAX_MS: u64 = 4_000;
/// The probe file written to tell whether a full disk has space again
/// (a `.tmp` name: a log's recovery removes one a crash left behind).
const SPACE_PROBE_FILE: &str = "space-probe.tmp";

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
    /// Groups that are not reopened in place (the metadata group, a log
    /// that failed): said once, left until the node restarts.
    left: HashSet<GroupId>,
}

impl Reopening {
    /// Stops hosting the partition replicas whose Raft core stopped on a
    /// storage error, once there is space again and their pause is over,
    /// so that the reconciliation that follows starts them again. `true`
    /// if it let any go.
    async fn let_go_stopped(&mut self, cluster: &Arc<Cluster>) -> bool {
        let now = Instant::now();
        let mut let_go = false;
        // Probed once per pass, when a replica is due.
        let mut space: Option<bool> = None;
        let stopped = cluster.node.groups().stopped_on_storage_error();
        for (group, error) in &stopped {
            if self.left.contains(group) {
                continue;
            }
            let GroupId::Partition { topic, partition } = group else {
                // The metadata group has state beside its log (the
                // cluster's view, rebuilt by replaying it): reopened by a
                // restart only.
                tracing::error!(
                    "this node's metadata replica stopped on a storage error ({error}); \
                     restart the node once the cause is fixed"
                );
                self.left.insert(group.clone());
                continue;
            };
            let (at, pause_ms) = *self.next.entry(group.clone()).or_insert_with(|| {
                tracing::warn!(
                    topic,
                    partition,
                    "partition replica stopped on a storage error ({error}); it is reopened \
                     once there is space"
                );
                (now, REOPEN_BACKOFF_MS)
            });
            if now < at {
                continue;
            }
            let log = cluster.broker.partition_log(topic, *partition);
            let failed = match &log {
                Ok(log) => log.failed(),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                tracing::error!(
                    topic,
                    partition,
                    "the partition's log failed ({why}): its replica is reopened by a \
                     restart of the node only"
                );
                self.left.insert(group.clone());
                continue;
            }
            let Ok(log) = log else { continue };
            if space.is_none() {
                space = Some(space_for_a_batch(&log).await);
            }
            if space == Some(false) || !log_synced(log).await {
                continue;
            }
            cluster.node.stop_partition(group).await;
            cluster
                .hosted
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(topic.clone(), *partition));
            tracing::info!(topic, partition, "reopening the partition replica");
            // If it stops again soon, the next pause is longer.
            let next_pause_ms = (pause_ms * 2).min(REOPEN_BACKOFF_MAX_MS);
            let next = (
                Instant::now() + Duration::from_millis(pause_ms),
                next_pause_ms,
            );
            self.next.insert(group.clone(), next);
            let_go = true;
        }
        // Forget groups running again for a while (and, once running, the
        // ones left alone: a restart brought them back).
        let still: HashSet<&GroupId> = stopped.iter().map(|(g, _)| g).collect();
        let quiet = Duration::from_millis(REOPEN_BACKOFF_MAX_MS * 2);
        self.next
            .retain(|g, (at, _)| still.contains(g) || now < *at + quiet);
        self.left.retain(|g| still.contains(g));
        let_go
    }
}

/// Whether a largest batch could be written beside `log` now: a probe
/// file of that size is written there and removed.
async fn space_for_a_batch(log: &Log) -> bool {
    let probe = log.dir().join(SPACE_PROBE_FILE);
    let written = tokio::task::spawn_blocking(move || {
        let result = std::fs::write(&probe, vec![0u8; BATCH_BYTES_MAX]);
        let _ = std::fs::remove_file(&probe);
        result.is_ok()
    })
    .await;
    written.unwrap_or(false)
}

/// Makes everything written to `log` durable, so the reopened replica
/// claims nothing that is not on disk. `false` if that fails (tried again
/// on the next pass).
async fn log_synced(log: Arc<Log>) -> bool {
    matches!(
        tokio::task::spawn_blocking(move || log.flush()).await,
        Ok(Ok(()))
    )
}

/// One pass; `false` if some step failed (logged) and must be retried.
async fn reconcile(cluster: &Arc<Cluster>) -> bool {
    let topics: Vec<TopicInfo> = cluster.meta.read().topics().values().cloned().collect();
    let mut complete = drop_deleted(cluster).await;
    for topic in &topics {
        match ensure_topic(cluster, topic).await {
            Ok(true) => {}
            // Waiting for the metadata to be replayed here: no error.
            Ok(false) => complete = false,
            Err(e) => {
                tracing::warn!(topic = %topic.name, "cannot set up the replicated topic here: {e:#}");
                complete = false;
            }
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

/// Makes `topic` a replicated topic here and hosts its partitions placed
/// here; `false` if some must wait for this node's own record in the
/// metadata (a replaced node replaying it).
async fn ensure_topic(cluster: &Arc<Cluster>, topic: &TopicInfo) -> anyhow::Result<bool> {
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
        let Some(members) = initial_members(cluster, topic, partition) else {
            // This node's replacement is not applied here yet.
            return Ok(false);
        };
        let log = cluster.broker.partition_log(&name, partition)?;
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
    Ok(true)
}

/// The members a partition group hosted here is initialised with, if
/// this node initialises it: `Some(None)` when it joins an existing group
/// as a new member (a node replaced after losing its data, for a topic
/// created before it came back: the group's leader adds it), `None` while
/// the metadata applied here does not record this node's incarnation yet.
#[allow(clippy::option_option)]
fn initial_members(
    cluster: &Cluster,
    topic: &TopicInfo,
    partition: u32,
) -> Option<Option<BTreeMap<u64, NodeAddr>>> {
    let state = cluster.meta.read();
    let own = state.node(cluster.node.id());
    let joined_before = match own {
        Some(own) if own.incarnation == cluster.own.incarnation => {
            topic.created_version > own.joined_version
        }
        // A first-generation node replaying its metadata: as before.
        _ if cluster.node.generation() == 0 => true,
        _ => return None,
    };
    if !joined_before {
        return Some(None);
    }
    let members = topic.initial_members.get(partition as usize)?;
    let with_addrs = members
        .iter()
        .filter_map(|member| {
            let node = node_of(*member);
            let cluster_addr = cluster.peers.get(&node)?.clone();
            let addr = NodeAddr {
                client_addr: String::new(),
                cluster_addr,
            };
            Some((*member, addr))
        })
        .collect();
    Some(Some(with_addrs))
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
