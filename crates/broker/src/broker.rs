//! [`Broker`]: topics and partitions over the log, produce with back
//! pressure, fetch, consumer groups and housekeeping. Thread-safe and
//! synchronous; callers in an async runtime run blocking parts (fsync waits)
//! on blocking threads. Time arrives as `now_ms`.

use crate::config::{validate_partitions, OnFull, Retention, TopicConfig, TopicConfigPatch};
use crate::error::{name_error, BrokerError, Result};
use crate::group::{Catalog, Coordinator, GroupView, StartFrom, TopicPartition};
use crate::meta::{parse_tp_key, MetaEvent, MetaState, MetaStore, TopicMeta};
use spool_log::{Appended, Log, ReadBatches};
use spool_types::limits::{CLIENT_ID_LEN_MAX, GROUP_NAME_LEN_MAX, SUBSCRIPTION_TOPICS_MAX};
use spool_types::partitioner::partition_for_key;
use spool_types::{ErrorCode, TopicName, TopicPattern};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// How long a producer refused with `QUEUE_FULL` is told to wait.
pub const QUEUE_FULL_RETRY_AFTER_MS: u32 = 1_000;

/// Where a produced batch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    Partition(u32),
    /// The stable key hash picks the partition (Kafka's murmur2).
    Key(Vec<u8>),
    /// Round-robin over partitions.
    Spread,
}

/// Told when data becomes visible or the set of topics changes, so a front
/// end can wake long-polls and push subscriptions.
pub trait AppendListener: Send + Sync {
    fn appended(&self, topic: &str, partition: u32);
    fn topics_changed(&self) {}
}

/// One topic: its settings and one log per partition.
pub struct Topic {
    pub name: String,
    config: RwLock<TopicConfig>,
    pub partitions: Vec<Arc<Log>>,
    spread: AtomicU32,
    /// Serialises the limit check with the write, so concurrent producers
    /// cannot together overshoot `max_messages`/`max_bytes`.
    admit: Mutex<()>,
}

impl Topic {
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (messages, bytes) retained across all partitions.
    pub fn depth(&self) -> (u64, u64) {
        self.partitions.iter().fold((0, 0), |(m, b), log| {
            let s = log.stats();
            (
                m + (s.next_offset - s.start_offset).max(0) as u64,
                b + s.retained_bytes,
            )
        })
    }
}

/// A batch written to the OS but perhaps not yet durable; finish it with
/// [`Broker::finish_produce`] (which may block on fdatasync).
pub struct PendingProduce {
    pub topic: Arc<Topic>,
    pub partition: u32,
    pub appended: Appended,
    pub must_sync: bool,
}

/// The answer to a produce: where the batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub start_offset: i64,
    pub end_offset: i64,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionInfo>,
}

/// A member's current assignment with resolved start offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub member_id: String,
    pub generation: u32,
    pub partitions: Vec<(String, u32, i64)>,
}

/// What `open` found and repaired, one line per finding.
pub type RecoveryNotes = Vec<String>;

pub struct Broker {
    data_dir: PathBuf,
    meta: Mutex<(MetaStore, MetaState)>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    groups: Mutex<Coordinator>,
    listener: RwLock<Option<Arc<dyn AppendListener>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn topic_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("topics").join(name)
}

fn open_topic(
    data_dir: &Path,
    name: &str,
    meta: &TopicMeta,
    notes: &mut RecoveryNotes,
) -> Result<Topic> {
    let mut partitions = Vec::with_capacity(meta.partitions as usize);
    for p in 0..meta.partitions {
        let dir = topic_dir(data_dir, name).join(p.to_string());
        let (log, report) = Log::open(&dir, meta.config.log_config())?;
        if !report.is_clean() {
            notes.push(format!("{name}/{p}: {report}"));
        }
        partitions.push(Arc::new(log));
    }
    Ok(Topic {
        name: name.to_owned(),
        config: RwLock::new(meta.config.clone()),
        partitions,
        spread: AtomicU32::new(0),
        admit: Mutex::new(()),
    })
}

fn check_group_name(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > GROUP_NAME_LEN_MAX || group.chars().any(|c| c.is_control())
    {
        return Err(BrokerError::invalid(format!(
            "group name must be 1 to {GROUP_NAME_LEN_MAX} printable characters"
        )));
    }
    Ok(())
}

impl Broker {
    /// Opens (or creates) a broker's data directory and recovers every log.
    pub fn open(data_dir: &Path) -> Result<(Broker, RecoveryNotes)> {
        std::fs::create_dir_all(data_dir.join("topics")).map_err(|e| {
            BrokerError::new(
                ErrorCode::StorageError,
                format!("{}: {e}", data_dir.display()),
            )
        })?;
        let mut notes = Vec::new();
        let (store, state, report) = MetaStore::open(&data_dir.join("meta"))?;
        if !report.is_clean() {
            notes.push(format!("metadata: {report}"));
        }
        let mut topics = BTreeMap::new();
        for (name, meta) in &state.topics {
            topics.insert(
                name.clone(),
                Arc::new(open_topic(data_dir, name, meta, &mut notes)?),
            );
        }
        // Directories of deleted topics whose removal a crash interrupted.
        if let Ok(entries) = std::fs::read_dir(data_dir.join("topics")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !topics.contains_key(&name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                    notes.push(format!("removed data of deleted topic {name:?}"));
                }
            }
        }
        let mut groups = Coordinator::new();
        for (group, offsets) in &state.offsets {
            let parsed: Vec<(TopicPartition, i64)> = offsets
                .iter()
                .filter_map(|(k, o)| parse_tp_key(k).map(|tp| (tp, *o)))
                .collect();
            groups.apply_commit(group, &parsed);
        }
        let broker = Broker {
            data_dir: data_dir.to_owned(),
            meta: Mutex::new((store, state)),
            topics: RwLock::new(topics),
            groups: Mutex::new(groups),
            listener: RwLock::new(None),
        };
        Ok((broker, notes))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn set_listener(&self, listener: Arc<dyn AppendListener>) {
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn listener(&self) -> Option<Arc<dyn AppendListener>> {
        self.listener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn catalog(&self) -> Catalog {
        self.topics_read()
            .iter()
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect()
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics_read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::unknown_topic(name))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<(Arc<Topic>, Arc<Log>)> {
        let t = self.topic(topic)?;
        let log = t
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                BrokerError::new(
                    ErrorCode::UnknownPartition,
                    format!(
                        "topic {topic:?} has {} partition(s); there is no partition {partition}",
                        t.partitions.len()
                    ),
                )
            })?;
        Ok((t, log))
    }

    // ---- topics -------------------------------------------------------------

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<()> {
        let topic = TopicName::new(name).map_err(|e| name_error("topic", name, e))?;
        self.create_topic_inner(topic, partitions, config, now_ms)
    }

    /// Creates a `spool.`-prefixed topic for the server's own use.
    pub fn create_system_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<()> {
        let topic = TopicName::new_system(name).map_err(|e| name_error("topic", name, e))?;
        if self.topics_read().contains_key(name) {
            return Ok(());
        }
        self.create_topic_inner(topic, partitions, config, now_ms)
    }

    fn create_topic_inner(
        &self,
        topic: TopicName,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<()> {
        validate_partitions(partitions)?;
        config.validate()?;
        let name = topic.as_str().to_owned();
        let mut meta = lock(&self.meta);
        if self.topics_read().contains_key(&name) {
            return Err(BrokerError::new(
                ErrorCode::TopicExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let tmeta = TopicMeta {
            partitions,
            config,
            created_ms: now_ms,
        };
        // Any leftover directory is from a deleted incarnation of this name.
        let dir = topic_dir(&self.data_dir, &name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                BrokerError::new(ErrorCode::StorageError, format!("{}: {e}", dir.display()))
            })?;
        }
        let mut notes = Vec::new();
        let opened = open_topic(&self.data_dir, &name, &tmeta, &mut notes)?;
        let event = MetaEvent::TopicCreated {
            name: name.clone(),
            meta: tmeta,
        };
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(opened));
        drop(meta);
        lock(&self.groups).topics_changed(&self.catalog());
        if let Some(l) = self.listener() {
            l.topics_changed();
        }
        Ok(())
    }

    pub fn delete_topic(&self, name: &str, now_ms: i64) -> Result<()> {
        let mut meta = lock(&self.meta);
        if !self.topics_read().contains_key(name) {
            return Err(BrokerError::unknown_topic(name));
        }
        let event = MetaEvent::TopicDeleted {
            name: name.to_owned(),
        };
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        drop(meta);
        // Readers holding a log keep their file handles; the files go now.
        let _ = std::fs::remove_dir_all(topic_dir(&self.data_dir, name));
        lock(&self.groups).topics_changed(&self.catalog());
        if let Some(l) = self.listener() {
            l.topics_changed();
        }
        Ok(())
    }

    pub fn alter_topic(
        &self,
        name: &str,
        patch: &TopicConfigPatch,
        now_ms: i64,
    ) -> Result<TopicConfig> {
        let topic = self.topic(name)?;
        let config = topic.config().apply(patch);
        config.validate()?;
        let mut meta = lock(&self.meta);
        let event = MetaEvent::TopicAltered {
            name: name.to_owned(),
            config: config.clone(),
        };
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        for log in &topic.partitions {
            log.set_config(config.log_config())?;
        }
        *topic.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        Ok(config)
    }

    /// Topic names and partition counts, optionally filtered by a pattern.
    pub fn list_topics(&self, pattern: Option<&str>) -> Result<Vec<(String, u32)>> {
        let pattern = pattern
            .map(|p| TopicPattern::new(p).map_err(|e| name_error("pattern", p, e)))
            .transpose()?;
        Ok(self
            .topics_read()
            .iter()
            .filter(|(n, _)| pattern.as_ref().is_none_or(|p| p.matches(n)))
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect())
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(p, log)| {
                let s = log.stats();
                PartitionInfo {
                    partition: p as u32,
                    start_offset: s.start_offset,
                    end_offset: s.end_offset,
                    messages: (s.end_offset - s.start_offset).max(0) as u64,
                    bytes: s.retained_bytes,
                }
            })
            .collect();
        Ok(TopicDescription {
            name: name.to_owned(),
            config: topic.config(),
            partitions,
        })
    }

    // ---- produce and fetch --------------------------------------------------

    /// Validates and writes a batch; the result must be finished with
    /// [`Broker::finish_produce`] before it is acknowledged.
    pub fn start_produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &mut [u8],
        now_ms: i64,
    ) -> Result<PendingProduce> {
        let t = self.topic(topic)?;
        let header = spool_batch::validate(batch)?;
        let n = t.partitions.len() as u32;
        let partition = match routing {
            Routing::Partition(p) if *p < n => *p,
            Routing::Partition(p) => {
                return Err(BrokerError::new(
                    ErrorCode::UnknownPartition,
                    format!("topic {topic:?} has {n} partition(s); there is no partition {p}"),
                ))
            }
            Routing::Key(key) => partition_for_key(key, n),
            Routing::Spread => t.spread.fetch_add(1, Ordering::Relaxed) % n,
        };
        let log = Arc::clone(&t.partitions[partition as usize]);
        let config = t.config();
        let limited = config.max_messages.is_some() || config.max_bytes.is_some();
        let (appended, must_sync) = {
            let _admit = limited.then(|| lock(&t.admit));
            if limited {
                self.make_room(
                    &t,
                    &config,
                    &log,
                    header.record_count as u64,
                    batch.len() as u64,
                )?;
            }
            log.write(batch, now_ms)?
        };
        Ok(PendingProduce {
            topic: t,
            partition,
            appended,
            must_sync,
        })
    }

    /// Waits until the batch is as durable as the topic promises (shared
    /// fdatasync under `always`) and announces it to readers. Blocking.
    pub fn finish_produce(&self, pending: PendingProduce) -> Result<Produced> {
        let log = &pending.topic.partitions[pending.partition as usize];
        if pending.must_sync {
            log.sync_to(pending.appended.next_offset())?;
        }
        if let Some(l) = self.listener() {
            l.appended(&pending.topic.name, pending.partition);
        }
        Ok(Produced {
            partition: pending.partition,
            base_offset: pending.appended.base_offset,
            last_offset: pending.appended.last_offset,
        })
    }

    /// Produce in one blocking call.
    pub fn produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &mut [u8],
        now_ms: i64,
    ) -> Result<Produced> {
        let pending = self.start_produce(topic, routing, batch, now_ms)?;
        self.finish_produce(pending)
    }

    /// Back pressure: refuses (`reject`) or makes space (`drop_oldest`) so the
    /// topic stays within its limits after this batch.
    fn make_room(
        &self,
        t: &Topic,
        config: &TopicConfig,
        log: &Log,
        records: u64,
        bytes: u64,
    ) -> Result<()> {
        let over = |t: &Topic| {
            let (m, b) = t.depth();
            let m_over = config
                .max_messages
                .map_or(0, |max| (m + records).saturating_sub(max));
            let b_over = config
                .max_bytes
                .map_or(0, |max| (b + bytes).saturating_sub(max));
            (m_over, b_over)
        };
        let (mut m_over, mut b_over) = over(t);
        if (m_over > 0 || b_over > 0) && config.retention == Retention::WorkQueue {
            self.release_consumed(t)?;
            (m_over, b_over) = over(t);
        }
        if m_over == 0 && b_over == 0 {
            return Ok(());
        }
        match config.on_full {
            OnFull::Reject => {
                let (m, b) = t.depth();
                Err(BrokerError::new(
                    ErrorCode::QueueFull,
                    format!(
                        "topic {:?} is full ({m} messages, {b} bytes; limits {} messages, {} bytes); retry later",
                        t.name,
                        config.max_messages.map_or("none".into(), |v| v.to_string()),
                        config.max_bytes.map_or("none".into(), |v| v.to_string()),
                    ),
                )
                .retry_after(QUEUE_FULL_RETRY_AFTER_MS))
            }
            OnFull::DropOldest => {
                // Drop from this partition: whole batches until both limits fit.
                let stats = log.stats();
                let mut new_start = stats.start_offset;
                let (mut freed_m, mut freed_b) = (0u64, 0u64);
                while (freed_m < m_over || freed_b < b_over) && new_start < stats.next_offset {
                    let read = log.read(new_start, 1)?;
                    let Some(Ok(batch)) = spool_batch::split_batches(&read.bytes).next() else {
                        break;
                    };
                    let h = spool_batch::BatchHeader::parse(batch)?;
                    freed_m += (h.next_offset() - new_start.max(h.base_offset)) as u64;
                    freed_b += batch.len() as u64;
                    new_start = h.next_offset();
                }
                if new_start > stats.start_offset {
                    tracing::debug!(topic = %t.name, from = stats.start_offset, to = new_start, "drop_oldest");
                    log.advance_start_offset(new_start)?;
                }
                Ok(())
            }
        }
    }

    /// Under `work_queue` retention, moves each partition's start past what
    /// every interested group has committed.
    fn release_consumed(&self, t: &Topic) -> Result<()> {
        let groups = lock(&self.groups);
        for (p, log) in t.partitions.iter().enumerate() {
            if let Some(Some(low)) = groups.low_water(&(t.name.clone(), p as u32)) {
                let s = log.stats();
                let to = low.min(s.next_offset);
                if to > s.start_offset {
                    log.advance_start_offset(to)?;
                }
            }
        }
        Ok(())
    }

    pub fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches> {
        let (_, log) = self.partition(topic, partition)?;
        Ok(log.read(offset, max_bytes)?)
    }

    /// Current (start, end) offsets of a partition.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<(i64, i64)> {
        let (_, log) = self.partition(topic, partition)?;
        let s = log.stats();
        Ok((s.start_offset, s.end_offset))
    }

    /// Every (topic, partition) whose topic matches one of `patterns`.
    pub fn matching_partitions(&self, patterns: &[TopicPattern]) -> Vec<(String, u32)> {
        self.topics_read()
            .iter()
            .filter(|(n, _)| patterns.iter().any(|p| p.matches(n)))
            .flat_map(|(n, t)| (0..t.partitions.len() as u32).map(move |p| (n.clone(), p)))
            .collect()
    }

    // ---- consumer groups ----------------------------------------------------

    pub fn parse_patterns(topics: &[String]) -> Result<Vec<TopicPattern>> {
        if topics.is_empty() || topics.len() > SUBSCRIPTION_TOPICS_MAX {
            return Err(BrokerError::invalid(format!(
                "name 1 to {SUBSCRIPTION_TOPICS_MAX} topics or patterns to subscribe to"
            )));
        }
        topics
            .iter()
            .map(|t| TopicPattern::new(t).map_err(|e| name_error("topic pattern", t, e)))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        client_id: &str,
        topics: &[String],
        session_timeout_ms: u64,
        start: StartFrom,
        now_ms: i64,
    ) -> Result<Assignment> {
        check_group_name(group)?;
        if client_id.len() > CLIENT_ID_LEN_MAX {
            return Err(BrokerError::invalid("client id is too long"));
        }
        let patterns = Self::parse_patterns(topics)?;
        let session_timeout_ms = session_timeout_ms.clamp(1_000, 300_000);
        let catalog = self.catalog();
        let view = lock(&self.groups).join(
            group,
            member_id,
            client_id,
            patterns,
            session_timeout_ms,
            start,
            &catalog,
            now_ms,
        );
        self.resolve(group, view, now_ms)
    }

    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        now_ms: i64,
    ) -> Result<Assignment> {
        let view = lock(&self.groups).heartbeat(group, member_id, generation, now_ms)?;
        self.resolve(group, view, now_ms)
    }

    pub fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        let catalog = self.catalog();
        lock(&self.groups).leave(group, member_id, &catalog)
    }

    /// Turns a view into offsets: the committed offset (clamped into the
    /// log's range), or the start position the member asked for, which is
    /// then committed so later owners continue from the same place.
    fn resolve(&self, group: &str, view: GroupView, now_ms: i64) -> Result<Assignment> {
        let mut partitions = Vec::with_capacity(view.partitions.len());
        let mut initial = Vec::new();
        for ((topic, partition), committed) in view.partitions {
            let Ok((start, end)) = self.offsets(&topic, partition) else {
                continue; // deleted meanwhile
            };
            let offset = match committed {
                Some(o) => o.clamp(start, end.max(start)),
                None => {
                    let o = match view.start {
                        StartFrom::Earliest => start,
                        StartFrom::Latest => end,
                    };
                    initial.push(((topic.clone(), partition), o));
                    o
                }
            };
            partitions.push((topic, partition, offset));
        }
        if !initial.is_empty() {
            self.persist_commit(group, &initial, now_ms)?;
        }
        Ok(Assignment {
            member_id: view.member_id,
            generation: view.generation,
            partitions,
        })
    }

    /// Commits offsets for partitions the member holds; durable on return.
    pub fn commit(
        &self,
        group: &str,
        member_id: &str,
        offsets: &[(String, u32, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let offsets: Vec<(TopicPartition, i64)> = offsets
            .iter()
            .map(|(t, p, o)| ((t.clone(), *p), *o))
            .collect();
        lock(&self.groups).check_commit(group, member_id, &offsets)?;
        self.persist_commit(group, &offsets, now_ms)
    }

    fn persist_commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let event = MetaEvent::OffsetsCommitted {
            group: group.to_owned(),
            offsets: offsets
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect(),
        };
        let mut meta = lock(&self.meta);
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        drop(meta);
        lock(&self.groups).apply_commit(group, offsets);
        Ok(())
    }

    /// Committed offsets of a group (`None` where it has none).
    pub fn committed(&self, group: &str, partitions: &[(String, u32)]) -> Vec<Option<i64>> {
        let groups = lock(&self.groups);
        partitions
            .iter()
            .map(|tp| groups.committed(group, tp))
            .collect()
    }

    // ---- housekeeping -------------------------------------------------------

    /// Periodic work, called by the owner every few hundred milliseconds:
    /// expires group sessions, applies retention and work-queue release,
    /// syncs `interval` logs and snapshots the metadata log.
    pub fn tick(&self, now_ms: i64) -> Result<()> {
        let catalog = self.catalog();
        for (group, member) in lock(&self.groups).expire(now_ms, &catalog) {
            tracing::info!(%group, %member, "consumer session expired; partitions reassigned");
        }
        let topics: Vec<Arc<Topic>> = self.topics_read().values().cloned().collect();
        for t in &topics {
            let config = t.config();
            if config.retention == Retention::WorkQueue {
                self.release_consumed(t)?;
            }
            for log in &t.partitions {
                log.apply_retention(now_ms)?;
                log.sync_if_due(now_ms)?;
            }
        }
        let mut meta = lock(&self.meta);
        if meta.0.wants_snapshot() {
            let state = meta.1.clone();
            meta.0.snapshot(&state, now_ms)?;
        }
        Ok(())
    }

    /// Makes every written byte durable (used at shutdown).
    pub fn flush(&self) -> Result<()> {
        for t in self.topics_read().values() {
            for log in &t.partitions {
                log.flush()?;
            }
        }
        Ok(())
    }
}
