//! [`Broker`]: the facade over the broker's concerns, one module each —
//! `topics` (settings, logs, reads), `produce` (validation, duplicate
//! suppression, back pressure, durability), `groups` (consumer groups and
//! committed offsets), `queues` (queue subscriptions: leases, acks, nacks),
//! `dead_letters` (dead letters, redrive and the side channel),
//! `request_ops` (asynchronous request records), `housekeeping` (the tick)
//! and `open` (recovery of a data directory). Thread-safe and synchronous;
//! callers in an async runtime run blocking parts (fsync waits) on blocking
//! threads. Time arrives as `now_ms`.

mod dead_letters;
mod groups;
mod housekeeping;
mod open;
mod produce;
mod request_ops;
mod subscriptions;
mod topics;

pub use groups::{
    Assignment, CommitDone, GroupInfo, GroupLag, OffsetReset, EMPTY_GROUP_RETENTION_MS,
};
pub use housekeeping::rfc3339_utc;
pub use produce::{PendingProduce, Produced};
pub use request_ops::NewRequest;
pub use subscriptions::{AckDone, PendingAck};
pub use topics::{PartitionInfo, Topic, TopicDescription};

use crate::error::{BrokerError, Result};
use crate::group::Catalog;
use crate::meta::{MetaEvent, MetaState, MetaStore};
use spool_log::{Log, Syncer};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The side channel: a system topic of JSON events operators can read
/// (dead letters, failed callbacks, …), so failures never vanish.
pub const EVENTS_TOPIC: &str = "spool.errors";

pub use spool_types::headers::{
    DLQ_DELIVERIES_HEADER, DLQ_ERROR_HEADER, DLQ_HEADER_PREFIX, DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER, DLQ_SUBSCRIPTION_HEADER, DLQ_TOPIC_HEADER, MESSAGE_ID_HEADER,
};

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

/// Told whenever something a waiter may be waiting for becomes ready, so a
/// front end can wake long polls and push subscriptions without polling:
/// the broker calls it itself, whichever front end made the change.
pub trait AppendListener: Send + Sync {
    /// New records are visible on a partition.
    fn appended(&self, topic: &str, partition: u32);
    /// The set of topics changed (pattern subscribers pick up new topics).
    fn topics_changed(&self) {}
    /// Leases were settled on a partition in a way that can make a message
    /// ready without any append: a nack (its message is ready again, now or
    /// after its delay), an ack in an ordered queue (the next message of its
    /// key), a request retried by its worker. Wakes the same waiters as an
    /// append unless a listener says otherwise.
    fn settled(&self, topic: &str, partition: u32) {
        self.appended(topic, partition);
    }
    /// A request record reached a final status (succeeded or failed).
    fn request_finished(&self, _id: &str) {}
}

/// What `open` found and repaired, one line per finding.
pub type RecoveryNotes = Vec<String>;

/// The facade: one field per concern, each owned by its module (fields
/// private there, so other modules go through its methods). Operations
/// that span concerns — a dead letter is a produce, a queue change and
/// maybe a request change — are `impl Broker` blocks in the module of the
/// concern they serve.
pub struct Broker {
    data_dir: PathBuf,
    /// Topic and subscription definitions: the metadata log and its state.
    meta: Mutex<Meta>,
    topics: topics::Topics,
    subscriptions: subscriptions::Subscriptions,
    groups: groups::Groups,
    requests: request_ops::Requests,
    listener: RwLock<Option<Arc<dyn AppendListener>>>,
    /// Waits for fdatasyncs on behalf of [`Broker::finish_produce_then`].
    syncer: Syncer,
}

/// The metadata: its event log and the state the log describes. Every
/// change goes through [`Meta::change`] — written durably, then applied —
/// so the two never disagree; a replicated metadata group takes its place
/// there.
struct Meta {
    store: MetaStore,
    state: MetaState,
}

impl Meta {
    /// Records one metadata change: durably in the log, then in the state.
    fn change(&mut self, event: MetaEvent, now_ms: i64) -> Result<()> {
        self.store.append(std::slice::from_ref(&event), now_ms)?;
        self.state.apply(&event);
        Ok(())
    }

    /// Writes a snapshot of the state when enough events have piled up
    /// since the last, so replay at open stays short.
    fn snapshot_if_due(&mut self, now_ms: i64) -> Result<()> {
        if self.store.wants_snapshot() {
            self.store.snapshot(&self.state, now_ms)?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
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

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics.get(name)
    }

    /// Descriptors the logs hold open between calls: every topic
    /// partition's and subscription state log's active segment, and the
    /// metadata and offsets logs'. Sealed segments' files are opened when
    /// read, in a cache of at most [`spool_log::SEALED_FILES_OPEN_MAX`];
    /// the request store's one file is not counted.
    pub fn open_log_files(&self) -> usize {
        let partitions: usize = (self.topics.all().iter())
            .flat_map(|t| t.partitions.iter())
            .map(|log| log.open_files())
            .sum();
        let subscriptions: usize = (self.subscriptions.all().iter())
            .map(|s| s.open_files())
            .sum();
        partitions + subscriptions + 2 * spool_log::SEGMENT_FILES
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
}
