//! [`Broker`]: topics and partitions over the log, produce with back
//! pressure, fetch, consumer groups and housekeeping. Thread-safe and
//! synchronous; callers in an async runtime run blocking parts (fsync waits)
//! on blocking threads. Time arrives as `now_ms`.

use crate::config::{validate_partitions, OnFull, Retention, TopicConfig, TopicConfigPatch};
use crate::error::{name_error, BrokerError, Result};
use crate::group::{Catalog, Coordinator, GroupView, StartFrom, TopicPartition};
use crate::meta::{parse_tp_key, MetaEvent, MetaState, MetaStore, TopicMeta};
use crate::queue::{LeasedMessage, ModeSpec, QueueSpec, QueueSub, ToSync};
use crate::requests::{
    unknown_request, CallbackState, CallbackStatus, RequestRecord, RequestStatus, RequestStore,
    CONTENT_TYPE_HEADER, REQUEST_ID_HEADER, REQUEST_TTL_MS_DEFAULT, RESULT_BYTES_MAX,
    WORKERS_SUBSCRIPTION,
};
use spool_log::{Appended, Log, LogError, ReadBatches, SyncDone, Syncer, SYNCER_THREADS_DEFAULT};
use spool_types::limits::{CLIENT_ID_LEN_MAX, GROUP_NAME_LEN_MAX, SUBSCRIPTION_TOPICS_MAX};
use spool_types::partitioner::partition_for_key;
use spool_types::{ErrorCode, TopicName, TopicPattern};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Record header carrying a producer's message ID for duplicate suppression.
pub const MSG_ID_HEADER: &str = "spool-msg-id";

/// The side channel: a system topic of JSON events operators can read
/// (dead letters, failed callbacks, …), so failures never vanish.
pub const EVENTS_TOPIC: &str = "spool.errors";

/// Headers put on a dead-lettered copy, naming where it came from.
pub const DLQ_TOPIC_HEADER: &str = "spool-dlq-topic";
pub const DLQ_SUBSCRIPTION_HEADER: &str = "spool-dlq-subscription";
pub const DLQ_PARTITION_HEADER: &str = "spool-dlq-partition";
pub const DLQ_OFFSET_HEADER: &str = "spool-dlq-offset";
pub const DLQ_DELIVERIES_HEADER: &str = "spool-dlq-deliveries";
pub const DLQ_ERROR_HEADER: &str = "spool-dlq-error";

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
    /// Recently seen message IDs, for duplicate suppression.
    dedup: Mutex<Dedup>,
    /// Whether the depth was at or above `warn_depth` at the last check.
    warned: std::sync::atomic::AtomicBool,
}

/// Message IDs seen within the topic's dedup window.
#[derive(Default)]
struct Dedup {
    ids: HashMap<Vec<u8>, (u32, i64)>,
    expiry: VecDeque<(i64, Vec<u8>)>,
}

impl Dedup {
    fn purge(&mut self, now_ms: i64) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now_ms {
                break;
            }
            if let Some((_, id)) = self.expiry.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
    fn insert(&mut self, id: &[u8], partition: u32, offset: i64, expires_ms: i64) {
        if self.ids.insert(id.to_vec(), (partition, offset)).is_none() {
            self.expiry.push_back((expires_ms, id.to_vec()));
        }
    }
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
    /// See [`Produced::placed`].
    pub placed: Option<Vec<(u32, i64)>>,
}

/// Told the results of a started ack (one per receipt) once they are
/// durable, or why they cannot be.
pub type AckDone = Box<dyn FnOnce(Result<Vec<Result<()>>>) + Send>;

/// Acks applied and written, maybe not yet durable: see
/// [`Broker::start_ack`].
pub struct PendingAck {
    results: Vec<Result<()>>,
    sync: Option<ToSync>,
}

/// The answer to a produce: where the batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// When duplicates were suppressed (`spool-msg-id`): where each record
    /// of the batch is, in batch order, (partition, offset). The range above
    /// then names only the new records, or the originals if they are
    /// consecutive, so it cannot be read as "record i is at base + i".
    pub placed: Option<Vec<(u32, i64)>>,
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
    /// Queue subscriptions by "topic/name".
    queues: RwLock<BTreeMap<String, Arc<QueueSub>>>,
    requests: RequestStore,
    /// Callbacks waiting to be attempted, by (due time, request id).
    callbacks_due: Mutex<BTreeSet<(i64, String)>>,
    /// When records were last checked for expiry.
    last_expiry_ms: AtomicI64,
    /// How long finished request records are kept.
    request_ttl_ms: AtomicI64,
    listener: RwLock<Option<Arc<dyn AppendListener>>>,
    /// Waits for fdatasyncs on behalf of [`Broker::finish_produce_then`].
    syncer: Syncer,
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
        dedup: Mutex::new(Dedup::default()),
        warned: std::sync::atomic::AtomicBool::new(false),
    })
}

fn queue_dir(data_dir: &Path, topic: &str, name: &str) -> PathBuf {
    data_dir.join("queues").join(topic).join(name)
}

/// Rebuilds the duplicate-suppression index from the last window of each partition.
fn restore_dedup(topic: &Topic, now_ms: i64) -> Result<()> {
    let window = topic.config().dedup_window_ms as i64;
    let mut dedup = lock(&topic.dedup);
    for (p, log) in topic.partitions.iter().enumerate() {
        let Some(mut offset) = log.offset_for_timestamp(now_ms - window)? else {
            continue;
        };
        loop {
            let read = log.read(offset, 1 << 20)?;
            if read.bytes.is_empty() {
                break;
            }
            for batch in spool_batch::split_batches(&read.bytes) {
                let batch = batch?;
                let h = spool_batch::BatchHeader::parse(batch)?;
                for r in spool_batch::records(batch, &h) {
                    let r = r?;
                    if let Some(id) = r.header(MSG_ID_HEADER) {
                        let ts = h.base_timestamp + r.timestamp_delta;
                        dedup.insert(
                            id,
                            p as u32,
                            h.base_offset + r.offset_delta as i64,
                            ts + window,
                        );
                    }
                }
            }
            offset = read.next_offset;
        }
    }
    dedup.purge(now_ms);
    Ok(())
}

fn unknown_subscription(topic: &str, name: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownSubscription,
        format!("topic {topic:?} has no subscription {name:?}"),
    )
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

/// Where topic directories unknown to the metadata are moved on open.
pub const ORPHANED_DIR: &str = "orphaned";

/// Moves an unknown topic directory to `<data_dir>/orphaned/` and says so.
fn set_aside(data_dir: &Path, dir: &Path, name: &str, now_ms: i64) -> String {
    let target = data_dir.join(ORPHANED_DIR).join(format!("{name}.{now_ms}"));
    let moved = std::fs::create_dir_all(data_dir.join(ORPHANED_DIR))
        .and_then(|()| std::fs::rename(dir, &target))
        // Make the move itself durable in both directories.
        .and_then(|()| std::fs::File::open(data_dir.join("topics"))?.sync_all())
        .and_then(|()| std::fs::File::open(data_dir.join(ORPHANED_DIR))?.sync_all());
    match moved {
        Ok(()) => format!(
            "topic directory {name:?} is not in the metadata (a deleted topic, or lost \
             metadata): moved to {}; delete it once you know it is not needed",
            target.display()
        ),
        Err(e) => format!(
            "topic directory {name:?} is not in the metadata and could not be moved aside \
             ({e}); it is left in place and ignored"
        ),
    }
}

impl Broker {
    /// Opens (or creates) a broker's data directory and recovers every log.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<(Broker, RecoveryNotes)> {
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
        // Topic directories the metadata does not know: usually a deleted
        // topic whose removal a crash interrupted — but possibly data whose
        // metadata was lost, so they are moved aside, never deleted.
        if let Ok(entries) = std::fs::read_dir(data_dir.join("topics")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !topics.contains_key(&name) {
                    notes.push(set_aside(data_dir, &entry.path(), &name, now_ms));
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
        let requests = RequestStore::open(&data_dir.join("requests.redb"))?;
        let mut queues = BTreeMap::new();
        for (key, spec) in &state.queues {
            let Some(topic) = topics.get(&spec.topic) else {
                continue;
            };
            let starts: Vec<i64> = topic
                .partitions
                .iter()
                .map(|l| l.stats().start_offset)
                .collect();
            let dir = queue_dir(data_dir, &spec.topic, &spec.name);
            let (sub, note) = QueueSub::open(&dir, spec.clone(), &starts, now_ms)?;
            notes.extend(note);
            queues.insert(key.clone(), Arc::new(sub));
        }
        for topic in topics.values() {
            restore_dedup(topic, now_ms)?;
        }
        let broker = Broker {
            data_dir: data_dir.to_owned(),
            meta: Mutex::new((store, state)),
            topics: RwLock::new(topics),
            groups: Mutex::new(groups),
            queues: RwLock::new(queues),
            callbacks_due: Mutex::new(
                requests
                    .scan(|r| {
                        r.callback
                            .as_ref()
                            .is_some_and(|c| c.status == CallbackStatus::Pending)
                    })?
                    .into_iter()
                    .map(|r| (r.callback.map_or(0, |c| c.next_attempt_ms), r.id))
                    .collect(),
            ),
            requests,
            last_expiry_ms: AtomicI64::new(0),
            request_ttl_ms: AtomicI64::new(REQUEST_TTL_MS_DEFAULT),
            listener: RwLock::new(None),
            syncer: Syncer::new(SYNCER_THREADS_DEFAULT).map_err(|e| {
                BrokerError::new(ErrorCode::Internal, format!("start sync threads: {e}"))
            })?,
        };
        let events = TopicConfig {
            retention_bytes: Some(256 * 1024 * 1024),
            segment_bytes: 16 * 1024 * 1024,
            ..TopicConfig::default()
        };
        broker.create_system_topic(EVENTS_TOPIC, 1, events, now_ms)?;
        broker.fail_orphaned_requests(now_ms, &mut notes)?;
        Ok((broker, notes))
    }

    /// A submission stores its record, then publishes its message: a crash
    /// in between leaves a pending record with no message, which no worker
    /// would ever see (and whose submitter never got its ID). So do records
    /// whose message retention or `drop_oldest` removed unread. At open,
    /// every pending record is looked for in its queue, from the
    /// subscription's floors (messages not yet done are at or after them);
    /// those without a message fail, so every record reaches a final state.
    fn fail_orphaned_requests(&self, now_ms: i64, notes: &mut RecoveryNotes) -> Result<()> {
        let mut by_queue: BTreeMap<String, Vec<RequestRecord>> = BTreeMap::new();
        for r in self.requests.scan(|r| r.status == RequestStatus::Pending)? {
            by_queue.entry(r.queue.clone()).or_default().push(r);
        }
        for (queue, records) in by_queue {
            let queued = self.queued_request_ids(&queue)?;
            for r in records {
                if queued.contains(&r.id) {
                    continue;
                }
                notes.push(format!(
                    "request {} in {queue}: its message is not in the queue (the server \
                     stopped while it was submitted, or it was dropped unread); failed",
                    r.id
                ));
                let error = "the request's message was lost before any worker received it \
                             (the server stopped during its submission, or the queue dropped \
                             it unread); submit it again"
                    .to_owned();
                self.finish_request(r, RequestStatus::Failed, None, Some(error), now_ms)?;
            }
        }
        Ok(())
    }

    /// Request IDs of the messages in a request queue not yet done by its
    /// workers (from the subscription's floors to the end).
    fn queued_request_ids(&self, queue: &str) -> Result<std::collections::HashSet<String>> {
        let mut ids = std::collections::HashSet::new();
        let (Ok(topic), Ok(sub)) = (self.topic(queue), self.queue(queue, WORKERS_SUBSCRIPTION))
        else {
            return Ok(ids);
        };
        let floors = sub.floors();
        for (p, log) in topic.partitions.iter().enumerate() {
            let mut offset = floors
                .get(p)
                .copied()
                .unwrap_or(0)
                .max(log.stats().start_offset);
            loop {
                let read = log.read(offset, 1024 * 1024)?;
                if read.bytes.is_empty() || read.next_offset <= offset {
                    break;
                }
                for batch in spool_batch::split_batches(&read.bytes) {
                    let batch = batch?;
                    let h = spool_batch::BatchHeader::parse(batch)?;
                    for r in spool_batch::records(batch, &h) {
                        if let Some(id) = r?
                            .header(REQUEST_ID_HEADER)
                            .and_then(|v| std::str::from_utf8(v).ok())
                        {
                            ids.insert(id.to_owned());
                        }
                    }
                }
                offset = read.next_offset;
            }
        }
        Ok(ids)
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
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, q| q.spec().topic != name);
        let _ = std::fs::remove_dir_all(self.data_dir.join("queues").join(name));
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
            // System topics are listed only when a pattern names them.
            .filter(|(n, _)| match &pattern {
                Some(p) => p.matches(n),
                None => !n.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX),
            })
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
        batch: &[u8],
        now_ms: i64,
    ) -> Result<PendingProduce> {
        let t = self.topic(topic)?;
        // Message IDs, if the producer gave any, for duplicate suppression:
        // read in the validating walk over the records.
        let mut ids: Vec<Option<Vec<u8>>> = Vec::new();
        let header = spool_batch::validate_each(batch, |r| {
            ids.push(r.header(MSG_ID_HEADER).map(<[u8]>::to_vec));
        })?;
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
        let dedup = ids.iter().any(Option::is_some);
        let mut dedup_guard = dedup.then(|| lock(&t.dedup));
        let mut rebuilt: Option<Vec<u8>> = None;
        // Per record of the batch: where its original is, if it has one.
        let mut originals: Vec<Option<(u32, i64)>> = Vec::new();
        // The IDs of the records actually written (all of them unless some
        // were duplicates and the batch is rebuilt without them).
        let mut kept_ids: Vec<Option<Vec<u8>>> = Vec::new();
        if let Some(d) = dedup_guard.as_mut() {
            d.purge(now_ms);
            let known: Vec<Option<(u32, i64)>> = ids
                .iter()
                .map(|id| id.as_ref().and_then(|id| d.ids.get(id).copied()))
                .collect();
            if known.iter().all(Option::is_some) {
                // Every message was stored before: answer with the originals.
                let placed: Vec<(u32, i64)> = known.iter().flatten().copied().collect();
                let first = placed.first().copied().unwrap_or((partition, 0));
                // The range claims "record i is at first + i" only when that
                // is true; otherwise it names the first original alone, so a
                // client sees the count differ from its batch's and asks again
                // in parts (docs/protocol.md, `spool-msg-id`).
                let consecutive = placed
                    .iter()
                    .enumerate()
                    .all(|(i, &(p, o))| p == first.0 && o == first.1 + i as i64);
                let last = if consecutive {
                    placed.last().map_or(first.1, |l| l.1)
                } else {
                    first.1
                };
                // The originals may still be on their way to disk.
                let must_sync = placed.iter().any(|&(p, o)| {
                    t.partitions
                        .get(p as usize)
                        .is_some_and(|log| log.stats().durable_offset <= o)
                });
                let pending = PendingProduce {
                    topic: Arc::clone(&t),
                    partition: first.0,
                    appended: Appended {
                        base_offset: first.1,
                        last_offset: last,
                    },
                    must_sync,
                    placed: Some(placed),
                };
                return Ok(pending);
            }
            if known.iter().any(Option::is_some) {
                // Some were stored before: store only the new ones.
                let mut b = spool_batch::BatchBuilder::new();
                for (r, (id, k)) in spool_batch::records(batch, &header).zip(ids.iter().zip(&known))
                {
                    let r = r?;
                    if k.is_some() {
                        continue;
                    }
                    b.push(&spool_batch::NewRecord {
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect(),
                        timestamp_ms: header.base_timestamp + r.timestamp_delta,
                    })?;
                    kept_ids.push(id.clone());
                }
                rebuilt = Some(b.finish()?);
                originals = known;
            }
        }
        if rebuilt.is_none() {
            kept_ids = ids;
        }
        // The producer's batch was validated above; a rebuilt one is new.
        let validated = rebuilt.is_none();
        let batch: &[u8] = rebuilt.as_deref().unwrap_or(batch);
        let records = kept_ids.len() as u64;
        let (appended, must_sync) = {
            let _admit = limited.then(|| lock(&t.admit));
            if limited {
                self.make_room(&t, &config, records, batch.len() as u64)?;
            }
            let written = if validated {
                log.write_validated(batch, header, now_ms)?
            } else {
                log.write(batch, now_ms)?
            };
            if limited && config.on_full == OnFull::DropOldest {
                self.drop_oldest(&t, &config, &log)?;
            }
            written
        };
        if let Some(d) = dedup_guard.as_mut() {
            let expires = now_ms + config.dedup_window_ms as i64;
            for (i, id) in kept_ids.iter().enumerate() {
                if let Some(id) = id {
                    d.insert(id, partition, appended.base_offset + i as i64, expires);
                }
            }
        }
        drop(dedup_guard);
        // Some records were duplicates: say where every record is, the new
        // ones in order after the base offset.
        let placed = (!originals.is_empty()).then(|| {
            let mut next = appended.base_offset;
            originals
                .iter()
                .map(|o| {
                    o.unwrap_or_else(|| {
                        next += 1;
                        (partition, next - 1)
                    })
                })
                .collect()
        });
        Ok(PendingProduce {
            topic: t,
            partition,
            appended,
            must_sync,
            placed,
        })
    }

    /// Waits until the batch is as durable as the topic promises (shared
    /// fdatasync under `always`) and announces it to readers. Blocking.
    pub fn finish_produce(&self, pending: PendingProduce) -> Result<Produced> {
        if pending.must_sync {
            for (log, end) in sync_targets(&pending) {
                log.sync_to(end)?;
            }
        }
        self.announce_produced(pending)
    }

    /// [`Broker::finish_produce`] without blocking: `done` runs once the
    /// batch is as durable as the topic promises — at once on this thread
    /// when nothing needs syncing, otherwise on a sync thread shared by every
    /// partition (so thousands of produces in flight park no thread each).
    /// `done` must be short: wake a task or send on a channel.
    pub fn finish_produce_then(
        &self,
        pending: PendingProduce,
        done: Box<dyn FnOnce(Result<Produced>) + Send>,
    ) {
        if !pending.must_sync {
            done(self.announce_produced(pending));
            return;
        }
        let logs = sync_targets(&pending);
        let listener = self.listener();
        let join = Arc::new(Mutex::new(SyncJoin {
            remaining: logs.len(),
            error: None,
            finish: Some(Box::new(
                move |result: std::result::Result<(), LogError>| {
                    done(
                        result
                            .map_err(BrokerError::from)
                            .map(|()| Broker::announce(listener.as_deref(), pending)),
                    )
                },
            )),
        }));
        for (log, end) in logs {
            let join = Arc::clone(&join);
            self.syncer
                .sync(&log, end, Box::new(move |r| SyncJoin::arrive(&join, r)));
        }
    }

    /// Tells readers and metrics about a durable produce; its answer.
    fn announce_produced(&self, pending: PendingProduce) -> Result<Produced> {
        Ok(Broker::announce(self.listener().as_deref(), pending))
    }

    fn announce(listener: Option<&dyn AppendListener>, pending: PendingProduce) -> Produced {
        if let Some(l) = listener {
            l.appended(&pending.topic.name, pending.partition);
        }
        let records =
            (pending.appended.last_offset - pending.appended.base_offset + 1).max(0) as u64;
        metrics::counter!("spool_messages_published_total", "topic" => pending.topic.name.clone())
            .increment(records);
        Produced {
            partition: pending.partition,
            base_offset: pending.appended.base_offset,
            last_offset: pending.appended.last_offset,
            placed: pending.placed,
        }
    }

    /// Produce in one blocking call.
    pub fn produce(
        &self,
        topic: &str,
        routing: &Routing,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<Produced> {
        let pending = self.start_produce(topic, routing, batch, now_ms)?;
        self.finish_produce(pending)
    }

    /// Back pressure: refuses (`reject`) or makes space (`drop_oldest`) so the
    /// topic stays within its limits after this batch.
    fn make_room(&self, t: &Topic, config: &TopicConfig, records: u64, bytes: u64) -> Result<()> {
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
                metrics::counter!("spool_queue_full_rejections_total", "topic" => t.name.clone())
                    .increment(1);
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
            // Dropping happens after the write (see `drop_oldest`), so the
            // new batch itself can be trimmed when it alone is over the limit.
            OnFull::DropOldest => Ok(()),
        }
    }

    /// `drop_oldest`: after a write, moves this partition's start forward by
    /// exactly as many messages as the topic is over `max_messages` (even
    /// into the batch just written; readers skip records below the start),
    /// then by whole batches while it is over `max_bytes`.
    fn drop_oldest(&self, t: &Topic, config: &TopicConfig, log: &Log) -> Result<()> {
        let (messages, bytes) = t.depth();
        let stats = log.stats();
        let mut new_start = stats.start_offset;
        if let Some(max) = config.max_messages {
            let over = messages.saturating_sub(max) as i64;
            new_start = (new_start + over).min(stats.next_offset);
        }
        if let Some(max) = config.max_bytes {
            let mut over = bytes.saturating_sub(max);
            let mut at = new_start;
            while over > 0 && at < stats.next_offset {
                let read = log.read(at, 1)?;
                let Some(Ok(batch)) = spool_batch::split_batches(&read.bytes).next() else {
                    break;
                };
                let h = spool_batch::BatchHeader::parse(batch)?;
                over = over.saturating_sub(batch.len() as u64);
                at = h.next_offset();
            }
            new_start = new_start.max(at);
        }
        if new_start > stats.start_offset {
            tracing::debug!(topic = %t.name, from = stats.start_offset, to = new_start, "drop_oldest");
            log.advance_start_offset(new_start)?;
        }
        Ok(())
    }

    /// Under `work_queue` retention, moves each partition's start past what
    /// every interested group has committed.
    fn release_consumed(&self, t: &Topic) -> Result<()> {
        let queue_floors: Vec<Vec<i64>> = self
            .queues_read()
            .values()
            .filter(|q| q.spec().topic == t.name)
            .map(|q| q.floors())
            .collect();
        let groups = lock(&self.groups);
        for (p, log) in t.partitions.iter().enumerate() {
            // Interested consumers: groups on the topic and queue subscriptions.
            let mut low: Option<Option<i64>> = groups.low_water(&(t.name.clone(), p as u32));
            for floors in &queue_floors {
                let floor = floors.get(p).copied();
                low = Some(match (low, floor) {
                    (None, f) => f,
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.min(b)),
                });
            }
            if let Some(Some(low)) = low {
                let s = log.stats();
                let to = low.min(s.next_offset);
                if to > s.start_offset {
                    log.advance_start_offset(to)?;
                }
            }
        }
        Ok(())
    }

    fn queues_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<QueueSub>>> {
        self.queues.read().unwrap_or_else(|p| p.into_inner())
    }

    // ---- queue subscriptions ------------------------------------------------

    /// Creates a queue subscription on a topic.
    pub fn create_queue(&self, spec: QueueSpec, now_ms: i64) -> Result<()> {
        spec.validate()?;
        TopicName::new_system(&spec.name).map_err(|e| {
            BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("subscription name {:?}: {e}", spec.name),
            )
        })?;
        let topic = self.topic(&spec.topic)?;
        if let Some(dlq) = &spec.dead_letter_topic {
            if dlq == &spec.topic {
                return Err(BrokerError::new(
                    ErrorCode::InvalidConfig,
                    "the dead-letter topic must differ from the topic",
                ));
            }
            self.topic(dlq)?;
        }
        let key = format!("{}/{}", spec.topic, spec.name);
        let mut meta = lock(&self.meta);
        if self.queues_read().contains_key(&key) {
            return Err(BrokerError::new(
                ErrorCode::GroupExists,
                format!(
                    "subscription {:?} already exists on topic {:?}",
                    spec.name, spec.topic
                ),
            ));
        }
        let dir = queue_dir(&self.data_dir, &spec.topic, &spec.name);
        let _ = std::fs::remove_dir_all(&dir);
        let starts: Vec<i64> = topic
            .partitions
            .iter()
            .map(|l| l.stats().start_offset)
            .collect();
        let (sub, _) = QueueSub::open(&dir, spec.clone(), &starts, now_ms)?;
        let event = MetaEvent::QueueCreated { spec };
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(sub));
        Ok(())
    }

    /// Creates the subscription with default settings unless it exists.
    pub fn ensure_queue(&self, topic: &str, name: &str, now_ms: i64) -> Result<Arc<QueueSub>> {
        if let Ok(q) = self.queue(topic, name) {
            return Ok(q);
        }
        match self.create_queue(QueueSpec::new(topic, name), now_ms) {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::GroupExists => {}
            Err(e) => return Err(e),
        }
        self.queue(topic, name)
    }

    pub fn delete_queue(&self, topic: &str, name: &str, now_ms: i64) -> Result<()> {
        let key = format!("{topic}/{name}");
        let mut meta = lock(&self.meta);
        if !self.queues_read().contains_key(&key) {
            return Err(unknown_subscription(topic, name));
        }
        let event = MetaEvent::QueueDeleted {
            topic: topic.to_owned(),
            name: name.to_owned(),
        };
        meta.0.append(std::slice::from_ref(&event), now_ms)?;
        meta.1.apply(&event);
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let _ = std::fs::remove_dir_all(queue_dir(&self.data_dir, topic, name));
        Ok(())
    }

    pub fn list_queues(&self, topic: Option<&str>) -> Vec<QueueSpec> {
        self.queues_read()
            .values()
            .map(|q| q.spec())
            .filter(|s| topic.is_none_or(|t| t == s.topic))
            .collect()
    }

    pub fn queue(&self, topic: &str, name: &str) -> Result<Arc<QueueSub>> {
        self.queues_read()
            .get(&format!("{topic}/{name}"))
            .cloned()
            .ok_or_else(|| unknown_subscription(topic, name))
    }

    /// Leases up to `max` messages of a queue subscription.
    pub fn receive(
        &self,
        topic: &str,
        name: &str,
        max: usize,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let t = self.topic(topic)?;
        let q = self.queue(topic, name)?;
        let messages = q.receive(&t.partitions, max, now_ms)?;
        self.mark_running(topic, name, messages, now_ms)
    }

    /// Whether [`Broker::receive`] on this subscription writes only to the
    /// page cache (leases), so an async caller may run it on its own thread
    /// as it runs a produce's write. Otherwise it may wait for an fdatasync:
    /// `at_most_once` marks messages done durably before handing them out,
    /// and a request queue's receives update (and may ack) request records.
    /// "Quick" assumes the topic's recent data is in the page cache, as a
    /// produce assumes its write is; a cold read blocks the caller's thread.
    pub fn receive_is_quick(&self, topic: &str, name: &str) -> bool {
        // A topic with a workers subscription is a request queue: receiving
        // its messages also updates request records (redb commits), through
        // any subscription.
        let request_queue = self.queue(topic, WORKERS_SUBSCRIPTION).is_ok();
        !request_queue
            && self
                .queue(topic, name)
                .is_ok_and(|q| q.mode() == ModeSpec::AtLeastOnce)
    }

    pub fn ack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        // The subscription first: an unknown one answers as it always did.
        let q = self.queue(topic, name)?;
        let durability = self.topic(topic)?.config().durability.to_log();
        q.ack(receipts, durability, now_ms)
    }

    /// [`Broker::ack`] up to its fdatasync wait: applies the acks and writes
    /// their records to the page cache, so that an async caller can run it
    /// on its own thread (as it runs a produce's write) and be told through
    /// [`Broker::finish_ack_then`] when the answer may go out.
    pub fn start_ack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        now_ms: i64,
    ) -> Result<PendingAck> {
        let q = self.queue(topic, name)?;
        let durability = self.topic(topic)?.config().durability.to_log();
        let (results, sync) = q.start_ack(receipts, durability, now_ms)?;
        Ok(PendingAck { results, sync })
    }

    /// Calls `done` with the results of a started ack once they are as
    /// durable as the topic promises: at once if nothing waits for an
    /// fdatasync, else from a syncer thread (so `done` must be short).
    pub fn finish_ack_then(&self, pending: PendingAck, done: AckDone) {
        let PendingAck { results, sync } = pending;
        match sync {
            None => done(Ok(results)),
            Some(ToSync { log, next_offset }) => self.syncer.sync(
                &log,
                next_offset,
                Box::new(move |r| done(r.map(|()| results).map_err(BrokerError::from))),
            ),
        }
    }

    pub fn nack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        delay_ms: u64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Result<()>>> {
        self.queue(topic, name)?
            .nack(receipts, delay_ms, error, now_ms)
    }

    pub fn extend(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        extend_ms: u64,
        now_ms: i64,
    ) -> Result<Vec<Result<i64>>> {
        Ok(self.queue(topic, name)?.extend(receipts, extend_ms, now_ms))
    }

    /// Appends one JSON event to the side channel (`spool.errors`), durably.
    /// Every event carries `time` (RFC 3339, UTC), `time_ms` and `kind`,
    /// plus the fields given.
    pub fn publish_event(&self, kind: &str, fields: &serde_json::Value, now_ms: i64) -> Result<()> {
        let mut event =
            serde_json::json!({"time": rfc3339_utc(now_ms), "time_ms": now_ms, "kind": kind});
        if let (Some(e), Some(f)) = (event.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                e.insert(k.clone(), v.clone());
            }
        }
        let mut b = spool_batch::BatchBuilder::new();
        let value = serde_json::to_vec(&event)
            .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
        b.push(&spool_batch::NewRecord {
            key: Some(kind.as_bytes().to_vec()),
            value: Some(value),
            headers: vec![],
            timestamp_ms: now_ms,
        })?;
        let batch = b.finish()?;
        self.produce(EVENTS_TOPIC, &Routing::Partition(0), &batch, now_ms)?;
        Ok(())
    }

    /// Copies failed-too-often messages to their dead-letter topic (with
    /// headers naming the source) and writes a side-channel event for each.
    fn process_dead_letters(&self, q: &QueueSub, now_ms: i64) -> Result<()> {
        let spec = q.spec();
        let Ok(topic) = self.topic(&spec.topic) else {
            // Deleted since this tick listed its subscriptions: the
            // subscription goes with it, nothing to keep.
            return Ok(());
        };
        let durability = topic.config().durability.to_log();
        let dead = q.housekeeping(durability, now_ms)?;
        if dead.is_empty() {
            return Ok(());
        }
        for (partition, letter) in dead {
            let log = &topic.partitions[partition as usize];
            let read = log.read(letter.offset, 1)?;
            let mut copy = None;
            let mut copy_error: Option<String> = None;
            let mut request_id: Option<String> = None;
            for batch in spool_batch::split_batches(&read.bytes) {
                let batch = batch?;
                let h = spool_batch::BatchHeader::parse(batch)?;
                for r in spool_batch::records(batch, &h) {
                    let r = r?;
                    if h.base_offset + r.offset_delta as i64 != letter.offset {
                        continue;
                    }
                    request_id = r
                        .header(REQUEST_ID_HEADER)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned);
                    let mut headers: Vec<(String, Option<Vec<u8>>)> = r
                        .headers
                        .iter()
                        .map(|hd| (hd.key.to_owned(), hd.value.map(<[u8]>::to_vec)))
                        .collect();
                    headers.retain(|(k, _)| !k.starts_with("spool-dlq-"));
                    let mut add =
                        |k: &str, v: String| headers.push((k.to_owned(), Some(v.into_bytes())));
                    add(DLQ_TOPIC_HEADER, spec.topic.clone());
                    add(DLQ_SUBSCRIPTION_HEADER, spec.name.clone());
                    add(DLQ_PARTITION_HEADER, partition.to_string());
                    add(DLQ_OFFSET_HEADER, letter.offset.to_string());
                    add(DLQ_DELIVERIES_HEADER, letter.deliveries.to_string());
                    add(
                        DLQ_ERROR_HEADER,
                        letter.last_error.clone().unwrap_or_default(),
                    );
                    copy = Some(spool_batch::NewRecord {
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        headers,
                        timestamp_ms: h.base_timestamp + r.timestamp_delta,
                    });
                }
            }
            let mut dlq_offset = None;
            if let (Some(dlq), Some(record)) = (&spec.dead_letter_topic, copy) {
                if self.topic(dlq).is_ok() {
                    let routing = record.key.clone().map_or(Routing::Spread, Routing::Key);
                    let mut b = spool_batch::BatchBuilder::new();
                    // A copy that cannot be stored (e.g. too large with the
                    // extra headers) must not wedge the queue: report it.
                    let copied = b
                        .push(&record)
                        .map_err(BrokerError::from)
                        .and_then(|()| b.finish().map_err(BrokerError::from))
                        .and_then(|batch| self.produce(dlq, &routing, &batch, now_ms));
                    match copied {
                        Ok(produced) => {
                            dlq_offset = Some((produced.partition, produced.base_offset))
                        }
                        Err(e)
                            if e.code == ErrorCode::QueueFull
                                || e.code == ErrorCode::StorageFull =>
                        {
                            return Err(e)
                        }
                        Err(e) => copy_error = Some(e.to_string()),
                    }
                }
            }
            let event = serde_json::json!({
                "topic": spec.topic,
                "subscription": spec.name,
                "partition": partition,
                "offset": letter.offset,
                "deliveries": letter.deliveries,
                "error": letter.last_error,
                "dead_letter_topic": spec.dead_letter_topic,
                "dead_letter_partition": dlq_offset.map(|d| d.0),
                "dead_letter_offset": dlq_offset.map(|d| d.1),
                "copy_error": copy_error,
            });
            self.publish_event("dead_letter", &event, now_ms)?;
            // The record first, then the message (as in complete_request): a
            // crash in between dead-letters the message again, and the record
            // is final already.
            if let Some(id) = request_id.as_deref() {
                if let Some(r) = self.requests.get(id)? {
                    if !r.status.is_final() {
                        let error = letter
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "failed too many times".into());
                        self.finish_request(r, RequestStatus::Failed, None, Some(error), now_ms)?;
                    }
                }
            }
            q.dead_lettered(partition, letter.offset, now_ms)?;
            tracing::warn!(topic = %spec.topic, subscription = %spec.name, partition, offset = letter.offset, deliveries = letter.deliveries, "message dead-lettered");
        }
        Ok(())
    }

    /// Moves dead letters of `topic`/`name` back to their source topic: every
    /// copy in the subscription's dead-letter topic not yet redriven is
    /// republished (without the dead-letter headers). Returns how many.
    pub fn redrive(&self, topic: &str, name: &str, now_ms: i64) -> Result<u64> {
        let spec = self.queue(topic, name)?.spec();
        let Some(dlq) = spec.dead_letter_topic.clone() else {
            return Err(BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("subscription {name:?} on {topic:?} has no dead-letter topic"),
            ));
        };
        let dlq_topic = self.topic(&dlq)?;
        // Redrive progress is kept like a consumer group's committed offsets.
        let cursor = format!("spool.redrive.{topic}.{name}");
        let mut moved = 0u64;
        for (p, log) in dlq_topic.partitions.iter().enumerate() {
            let tp = (dlq.clone(), p as u32);
            let start = lock(&self.groups)
                .committed(&cursor, &tp)
                .unwrap_or(0)
                .max(log.stats().start_offset);
            let mut offset = start;
            loop {
                let read = log.read(offset, 1 << 20)?;
                if read.bytes.is_empty() {
                    break;
                }
                for batch in spool_batch::split_batches(&read.bytes) {
                    let batch = batch?;
                    let h = spool_batch::BatchHeader::parse(batch)?;
                    for r in spool_batch::records(batch, &h) {
                        let r = r?;
                        if h.base_offset + (r.offset_delta as i64) < offset {
                            continue;
                        }
                        let ours = r.header(DLQ_TOPIC_HEADER) == Some(topic.as_bytes())
                            && r.header(DLQ_SUBSCRIPTION_HEADER) == Some(name.as_bytes());
                        if !ours {
                            continue;
                        }
                        let mut b = spool_batch::BatchBuilder::new();
                        b.push(&spool_batch::NewRecord {
                            key: r.key.map(<[u8]>::to_vec),
                            value: r.value.map(<[u8]>::to_vec),
                            headers: r
                                .headers
                                .iter()
                                .filter(|hd| !hd.key.starts_with("spool-dlq-"))
                                .map(|hd| (hd.key.to_owned(), hd.value.map(<[u8]>::to_vec)))
                                .collect(),
                            timestamp_ms: now_ms,
                        })?;
                        let routing = r.key.map_or(Routing::Spread, |k| Routing::Key(k.to_vec()));
                        self.produce(topic, &routing, &b.finish()?, now_ms)?;
                        moved += 1;
                    }
                }
                offset = read.next_offset;
            }
            if offset > start {
                self.persist_commit(&cursor, &[(tp, offset)], now_ms)?;
            }
        }
        Ok(moved)
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
        let queues: Vec<Arc<QueueSub>> = self.queues_read().values().cloned().collect();
        for q in &queues {
            if let Err(e) = self.process_dead_letters(q, now_ms) {
                tracing::error!("dead-lettering for {:?} failed: {e}", q.spec().name);
            }
            q.maybe_snapshot(now_ms)?;
        }
        let topics: Vec<Arc<Topic>> = self.topics_read().values().cloned().collect();
        for t in &topics {
            let config = t.config();
            if let Some(warn) = config.warn_depth {
                let (depth, _) = t.depth();
                let above = depth >= warn;
                if above && !t.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(topic = %t.name, depth, warn_depth = warn, "topic depth crossed its warning level; producers will be refused at max_messages");
                } else if !above && t.warned.swap(false, Ordering::Relaxed) {
                    tracing::info!(topic = %t.name, depth, warn_depth = warn, "topic depth back below its warning level");
                }
            }
            if config.retention == Retention::WorkQueue {
                self.release_consumed(t)?;
            }
            for log in &t.partitions {
                log.apply_retention(now_ms)?;
                log.sync_if_due(now_ms)?;
            }
        }
        self.expire_requests(now_ms)?;
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
        for q in self.queues_read().values() {
            q.flush()?;
        }
        Ok(())
    }
}

/// How often finished request records are checked for expiry.
const REQUEST_EXPIRY_SCAN_MS: i64 = 60_000;

impl Broker {
    /// Request messages handed to a worker: their records become `running`.
    /// A request queue's message whose record is already final is not handed
    /// out but acknowledged: a record is finished before its message is
    /// acknowledged, so a crash between the two brings such messages back.
    fn mark_running(
        &self,
        topic: &str,
        name: &str,
        messages: Vec<LeasedMessage>,
        now_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let mut updated = Vec::new();
        let mut finished = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let Some(id) = m
                .headers
                .iter()
                .find(|(k, _)| k == REQUEST_ID_HEADER)
                .and_then(|(_, v)| v.as_ref())
            else {
                out.push(m);
                continue;
            };
            let Ok(id) = std::str::from_utf8(id) else {
                out.push(m);
                continue;
            };
            match self.requests.get(id)? {
                Some(r)
                    if r.status.is_final() && name == WORKERS_SUBSCRIPTION && r.queue == topic =>
                {
                    finished.push(m.receipt.clone());
                    continue;
                }
                // Final, but seen through another subscription: not ours to drop.
                Some(r) if r.status.is_final() => {}
                Some(mut r) => {
                    r.status = RequestStatus::Running;
                    r.attempts = m.deliveries;
                    r.receipt = Some(m.receipt.clone());
                    r.lease_deadline_ms = Some(m.lease_deadline_ms);
                    r.updated_ms = now_ms;
                    updated.push(r);
                }
                None => {}
            }
            out.push(m);
        }
        if !finished.is_empty() {
            self.ack(topic, name, &finished, now_ms)?;
        }
        if !updated.is_empty() {
            // Not waited for: after a crash the lease is gone anyway, and the
            // view turns an expired `running` back into `pending`.
            let refs: Vec<&RequestRecord> = updated.iter().collect();
            self.requests.put(&refs, false)?;
        }
        Ok(out)
    }

    /// Accepts a request: stores its record (durably) and puts its payload on
    /// the request queue `queue` (created with defaults on first use, with a
    /// `workers` queue subscription). Returns the pending record.
    pub fn submit_request(
        &self,
        queue: &str,
        payload: Vec<u8>,
        json: bool,
        callback_url: Option<String>,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        if queue.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
            return Err(BrokerError::new(
                ErrorCode::ReservedTopicName,
                format!("{queue:?}: names beginning \"spool.\" are reserved for system topics"),
            ));
        }
        if self.topic(queue).is_err() {
            match self.create_topic(queue, 1, TopicConfig::default(), now_ms) {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::TopicExists => {}
                Err(e) => return Err(e),
            }
        }
        self.ensure_queue(queue, WORKERS_SUBSCRIPTION, now_ms)?;
        let id = uuid::Uuid::now_v7().to_string();
        let record = RequestRecord {
            id: id.clone(),
            queue: queue.to_owned(),
            status: RequestStatus::Pending,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.request_ttl_ms.load(Ordering::Relaxed)),
            result: None,
            error: None,
            callback_url,
            callback: None,
            receipt: None,
            lease_deadline_ms: None,
        };
        self.requests.put(&[&record], true)?;
        let mut headers = vec![(REQUEST_ID_HEADER.to_owned(), Some(id.clone().into_bytes()))];
        if json {
            headers.push((
                CONTENT_TYPE_HEADER.to_owned(),
                Some(b"application/json".to_vec()),
            ));
        }
        let mut b = spool_batch::BatchBuilder::new();
        b.push(&spool_batch::NewRecord {
            key: None,
            value: Some(payload),
            headers,
            timestamp_ms: now_ms,
        })?;
        if let Err(e) = self.produce(queue, &Routing::Spread, &b.finish()?, now_ms) {
            // Nothing will ever work on it: take the record back.
            let _ = self.requests.remove(&[id]);
            return Err(e);
        }
        Ok(record)
    }

    /// The record as a client sees it now.
    pub fn get_request(&self, id: &str, now_ms: i64) -> Result<RequestRecord> {
        let r = self.requests.get(id)?.ok_or_else(|| unknown_request(id))?;
        Ok(self.live(r).view(now_ms))
    }

    /// Refreshes a running record's lease deadline from its queue, where
    /// extensions are recorded; a lease that is no longer current reads as
    /// expired.
    fn live(&self, mut r: RequestRecord) -> RequestRecord {
        if r.status == RequestStatus::Running {
            let deadline = r.receipt.as_deref().and_then(|receipt| {
                self.queue(&r.queue, WORKERS_SUBSCRIPTION)
                    .ok()
                    .and_then(|q| q.lease_deadline(receipt))
            });
            r.lease_deadline_ms = Some(deadline.unwrap_or(0));
        }
        r
    }

    fn open_request(&self, id: &str, now_ms: i64) -> Result<RequestRecord> {
        let r = self.live(self.requests.get(id)?.ok_or_else(|| unknown_request(id))?);
        if r.status.is_final() {
            let how = if r.status == RequestStatus::Succeeded {
                "succeeded"
            } else {
                "failed"
            };
            return Err(BrokerError::new(
                ErrorCode::RequestFinished,
                format!("request {id} already {how}; nothing changed"),
            ));
        }
        if r.view(now_ms).status != RequestStatus::Running {
            return Err(BrokerError::new(
                ErrorCode::LeaseExpired,
                format!("request {id} is not held by a worker (its lease expired or it was not received yet); nothing changed"),
            ));
        }
        Ok(r)
    }

    fn finish_request(
        &self,
        mut r: RequestRecord,
        status: RequestStatus,
        result: Option<serde_json::Value>,
        error: Option<String>,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        r.status = status;
        r.expires_ms = now_ms.saturating_add(self.request_ttl_ms.load(Ordering::Relaxed));
        r.result = result;
        r.error = error;
        r.updated_ms = now_ms;
        r.receipt = None;
        r.lease_deadline_ms = None;
        if r.callback_url.is_some() {
            r.callback = Some(CallbackState {
                status: CallbackStatus::Pending,
                attempts: 0,
                next_attempt_ms: now_ms,
                first_attempt_ms: None,
                last_error: None,
            });
        }
        self.requests.put(&[&r], true)?;
        if r.callback.is_some() {
            lock(&self.callbacks_due).insert((now_ms, r.id.clone()));
        }
        if status == RequestStatus::Failed {
            let event = serde_json::json!({
                "id": r.id, "queue": r.queue,
                "attempts": r.attempts, "error": r.error,
            });
            self.publish_event("request_failed", &event, now_ms)?;
        }
        Ok(r)
    }

    /// A worker finished the request: stores the result, then acknowledges
    /// its message. In this order a crash in between leaves a finished record
    /// whose message comes back and is dropped by [`Broker::receive`]; the
    /// other order could leave the message done and the record never final.
    pub fn complete_request(
        &self,
        id: &str,
        result: serde_json::Value,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        let size = result.to_string().len();
        if size > RESULT_BYTES_MAX {
            return Err(BrokerError::new(
                ErrorCode::MessageTooLarge,
                format!("result is {size} bytes; the maximum is {RESULT_BYTES_MAX}"),
            ));
        }
        let r = self.open_request(id, now_ms)?;
        let receipt = r.receipt.clone().unwrap_or_default();
        let queue = r.queue.clone();
        let done = self.finish_request(r, RequestStatus::Succeeded, Some(result), None, now_ms)?;
        self.settle_request_message(&queue, &receipt, now_ms)?;
        Ok(done)
    }

    /// Acknowledges a finished request's message. A lease that ran out in the
    /// meantime is fine: the message comes back and `receive` drops it.
    fn settle_request_message(&self, queue: &str, receipt: &str, now_ms: i64) -> Result<()> {
        let results = self.ack(
            queue,
            WORKERS_SUBSCRIPTION,
            std::slice::from_ref(&receipt.to_owned()),
            now_ms,
        )?;
        for r in results {
            if let Err(e) = r {
                tracing::debug!(%queue, "finished request's message not acknowledged now: {e}");
            }
        }
        Ok(())
    }

    /// A worker failed the request: retried with the queue's backoff when
    /// `retry` (until max deliveries, then failed), otherwise failed for good.
    pub fn fail_request(
        &self,
        id: &str,
        error: &str,
        retry: bool,
        now_ms: i64,
    ) -> Result<RequestRecord> {
        let error: String = error.chars().take(RESULT_BYTES_MAX / 4).collect();
        let mut r = self.open_request(id, now_ms)?;
        let receipt = r.receipt.clone().unwrap_or_default();
        if retry {
            self.nack(
                &r.queue,
                WORKERS_SUBSCRIPTION,
                std::slice::from_ref(&receipt),
                0,
                Some(&error),
                now_ms,
            )?
            .remove(0)?;
            r.status = RequestStatus::Pending;
            r.error = Some(error);
            r.receipt = None;
            r.lease_deadline_ms = None;
            r.updated_ms = now_ms;
            self.requests.put(&[&r], true)?;
            return Ok(r);
        }
        let queue = r.queue.clone();
        let done = self.finish_request(r, RequestStatus::Failed, None, Some(error), now_ms)?;
        self.settle_request_message(&queue, &receipt, now_ms)?;
        Ok(done)
    }

    /// Finished requests whose callback is due now.
    pub fn due_callbacks(&self, now_ms: i64) -> Result<Vec<RequestRecord>> {
        let due: Vec<(i64, String)> = {
            let mut set = lock(&self.callbacks_due);
            let later = set.split_off(&(now_ms + 1, String::new()));
            std::mem::replace(&mut *set, later).into_iter().collect()
        };
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(r) = self.requests.get(&id)? {
                if r.callback
                    .as_ref()
                    .is_some_and(|c| c.status == CallbackStatus::Pending)
                {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Records a callback attempt. A failure is retried at `retry_at_ms`
    /// unless `give_up`, which marks the callback failed and writes a
    /// side-channel event.
    pub fn callback_outcome(
        &self,
        id: &str,
        outcome: std::result::Result<(), String>,
        retry_at_ms: i64,
        give_up: bool,
        now_ms: i64,
    ) -> Result<()> {
        let Some(mut r) = self.requests.get(id)? else {
            return Ok(());
        };
        let Some(c) = r.callback.as_mut() else {
            return Ok(());
        };
        c.attempts += 1;
        c.first_attempt_ms.get_or_insert(now_ms);
        let mut event = None;
        match outcome {
            Ok(()) => {
                c.status = CallbackStatus::Delivered;
                c.last_error = None;
            }
            Err(e) if give_up => {
                c.status = CallbackStatus::Failed;
                event = Some(serde_json::json!({
                    "id": r.id, "callback_url": r.callback_url,
                    "attempts": c.attempts, "error": e,
                }));
                c.last_error = Some(e);
            }
            Err(e) => {
                c.last_error = Some(e);
                c.next_attempt_ms = retry_at_ms;
                lock(&self.callbacks_due).insert((retry_at_ms, r.id.clone()));
            }
        }
        self.requests.put(&[&r], true)?;
        if let Some(event) = event {
            self.publish_event("callback_failed", &event, now_ms)?;
        }
        Ok(())
    }

    /// Sets how long finished request records are kept (from when they finish).
    pub fn set_request_ttl_ms(&self, ttl_ms: i64) {
        self.request_ttl_ms.store(ttl_ms.max(1), Ordering::Relaxed);
    }

    /// Counts of request records by status: pending, running, succeeded, failed.
    pub fn request_counts(&self) -> Result<[u64; 4]> {
        self.requests.counts()
    }

    /// Removes finished records past their expiry (checked once a minute).
    fn expire_requests(&self, now_ms: i64) -> Result<()> {
        if now_ms - self.last_expiry_ms.load(Ordering::Relaxed) < REQUEST_EXPIRY_SCAN_MS {
            return Ok(());
        }
        self.last_expiry_ms.store(now_ms, Ordering::Relaxed);
        let expired: Vec<String> = self
            .requests
            .scan(|r| r.expires_ms <= now_ms && r.status.is_final())?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if !expired.is_empty() {
            self.requests.remove(&expired)?;
        }
        Ok(())
    }
}

/// One consumer group's position on one partition, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    pub lag: u64,
}

impl Broker {
    /// Lag (end offset − committed offset) of every group on every partition it committed.
    pub fn group_lags(&self) -> Vec<GroupLag> {
        let committed: Vec<(String, TopicPartition, i64)> = lock(&self.groups)
            .all_committed()
            .filter(|(g, _, _)| !g.starts_with("spool."))
            .map(|(g, tp, o)| (g.to_owned(), tp.clone(), o))
            .collect();
        committed
            .into_iter()
            .filter_map(|(group, (topic, partition), committed)| {
                let (_, end) = self.offsets(&topic, partition).ok()?;
                Some(GroupLag {
                    group,
                    topic,
                    partition,
                    committed,
                    lag: (end - committed).max(0) as u64,
                })
            })
            .collect()
    }

    /// Every queue subscription, for metrics.
    pub fn queue_subs(&self) -> Vec<Arc<QueueSub>> {
        self.queues_read().values().cloned().collect()
    }

    /// A queue subscription's backlog: messages of its topic not yet done
    /// (acknowledged or dead-lettered), over all partitions.
    pub fn queue_lag(&self, q: &QueueSub) -> u64 {
        self.topic(&q.spec().topic)
            .map(|t| {
                t.partitions
                    .iter()
                    .zip(q.floors())
                    .map(|(log, floor)| (log.stats().end_offset - floor).max(0) as u64)
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// `now_ms` as an RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339_utc(now_ms: i64) -> String {
    let secs = now_ms.div_euclid(1000);
    let ms = now_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What must be on disk before a produce is acknowledged: the batch's own
/// partition to its end, and the partitions holding the originals of any
/// suppressed duplicates (unkeyed batches are spread), which may still be on
/// their way to disk.
fn sync_targets(pending: &PendingProduce) -> Vec<(Arc<Log>, i64)> {
    let mut ends: BTreeMap<u32, i64> = BTreeMap::new();
    ends.insert(pending.partition, pending.appended.next_offset());
    for &(p, o) in pending.placed.iter().flatten() {
        let end = ends.entry(p).or_default();
        *end = (*end).max(o + 1);
    }
    ends.into_iter()
        .filter_map(|(p, end)| Some((Arc::clone(pending.topic.partitions.get(p as usize)?), end)))
        .collect()
}

/// Several partitions synced for one produce: the last to finish answers.
struct SyncJoin {
    remaining: usize,
    error: Option<LogError>,
    finish: Option<SyncDone>,
}

impl SyncJoin {
    fn arrive(join: &Mutex<SyncJoin>, result: std::result::Result<(), LogError>) {
        let finish = {
            let mut j = lock(join);
            if let Err(e) = result {
                j.error.get_or_insert(e);
            }
            j.remaining -= 1;
            if j.remaining > 0 {
                return;
            }
            j.finish.take().map(|f| (f, j.error.take()))
        };
        if let Some((finish, error)) = finish {
            finish(error.map_or(Ok(()), Err));
        }
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(super::rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_utc(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            super::rfc3339_utc(1_795_478_400_000),
            "2026-11-24T00:00:00.000Z"
        );
    }
}

#[cfg(test)]
mod orphan_tests {
    use super::*;

    /// The crash window of a submission: the record is stored, the message
    /// never published. After a reopen that record has failed (with an
    /// event on the error stream), while a properly queued one is still
    /// pending and is delivered.
    #[test]
    fn a_record_whose_message_never_made_it_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (queued_id, orphan_id) = {
            let (broker, _) = Broker::open(dir.path(), 1_000).unwrap();
            let queued = broker
                .submit_request("jobs", b"{}".to_vec(), true, None, 1_000)
                .unwrap();
            let mut orphan = queued.clone();
            orphan.id = uuid::Uuid::now_v7().to_string();
            broker.requests.put(&[&orphan], true).unwrap();
            broker.flush().unwrap();
            (queued.id, orphan.id)
        };

        let (broker, notes) = Broker::open(dir.path(), 2_000).unwrap();
        assert!(
            notes.iter().any(|n| n.contains(&orphan_id)),
            "the operator is told: {notes:?}"
        );
        let orphan = broker.get_request(&orphan_id, 2_000).unwrap();
        assert_eq!(orphan.status, RequestStatus::Failed);
        assert!(orphan.error.unwrap().contains("submit it again"));
        let queued = broker.get_request(&queued_id, 2_000).unwrap();
        assert_eq!(queued.status, RequestStatus::Pending);

        let events = broker.topic(EVENTS_TOPIC).unwrap().partitions[0]
            .read(0, 1 << 20)
            .unwrap();
        let text = String::from_utf8_lossy(&events.bytes);
        assert!(text.contains(&orphan_id), "request_failed event published");

        // Reopening again changes nothing more.
        drop(broker);
        let (broker, notes) = Broker::open(dir.path(), 3_000).unwrap();
        assert!(!notes.iter().any(|n| n.contains("request ")), "{notes:?}");
        let queued = broker.get_request(&queued_id, 3_000).unwrap();
        assert_eq!(queued.status, RequestStatus::Pending);
    }
}
