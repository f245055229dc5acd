//! Topics: their settings and logs, create/delete/alter/list/describe, and
//! reading a partition.

use super::open::{open_topic, topic_dir};
use super::*;
use crate::config::{validate_partitions, TopicConfig, TopicConfigPatch};
use crate::error::{name_error, BrokerError, Result};
use crate::meta::{MetaEvent, TopicMeta};
use spool_log::{Log, ReadBatches};
use spool_types::{ErrorCode, TopicName, TopicPattern};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

/// One topic: its settings and one log per partition.
pub struct Topic {
    pub name: String,
    pub(super) config: RwLock<TopicConfig>,
    pub partitions: Vec<Arc<Log>>,
    /// See [`crate::meta::TopicMeta::replicated`].
    pub replicated: bool,
    pub(super) spread: AtomicU32,
    /// Serialises the limit check with the write, so concurrent producers
    /// cannot together overshoot `max_messages`/`max_bytes`.
    pub(super) admit: Mutex<()>,
    /// Recently seen message IDs, for duplicate suppression.
    pub(super) dedup: Mutex<Dedup>,
    /// Whether the depth was at or above `warn_depth` at the last check.
    pub(super) warned: std::sync::atomic::AtomicBool,
}

/// Message IDs seen within the topic's dedup window.
#[derive(Default)]
pub(super) struct Dedup {
    pub(super) ids: HashMap<Vec<u8>, (u32, i64)>,
    pub(super) expiry: VecDeque<(i64, Vec<u8>)>,
}

impl Dedup {
    pub(super) fn purge(&mut self, now_ms: i64) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now_ms {
                break;
            }
            if let Some((_, id)) = self.expiry.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
    pub(super) fn insert(&mut self, id: &[u8], partition: u32, offset: i64, expires_ms: i64) {
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

/// Every topic by name. The one owner of the map: changes happen under
/// the metadata lock, after the change is in the metadata log.
#[derive(Default)]
pub(super) struct Topics(RwLock<BTreeMap<String, Arc<Topic>>>);

impl Topics {
    pub(super) fn new(topics: BTreeMap<String, Arc<Topic>>) -> Topics {
        Topics(RwLock::new(topics))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, name: &str) -> Result<Arc<Topic>> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::unknown_topic(name))
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    pub(super) fn insert(&self, topic: Topic) {
        self.write().insert(topic.name.clone(), Arc::new(topic));
    }

    pub(super) fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    pub(super) fn all(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// Names and partition counts of the topics `keep` accepts, by name.
    pub(super) fn partition_counts(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, u32)> {
        self.read()
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect()
    }

    /// Every topic's partition count, as group assignment needs it.
    pub(super) fn catalog(&self) -> Catalog {
        self.partition_counts(|_| true).into_iter().collect()
    }
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

impl Broker {
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<()> {
        let topic = TopicName::new(name).map_err(|e| name_error("topic", name, e))?;
        self.create_topic_inner(topic, partitions, config, false, now_ms)
    }

    /// Creates this node's copy of a cluster's topic (its partition logs in
    /// entry mode), as the cluster's metadata says; a topic of that name
    /// that is already replicated is left as it is.
    pub fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<()> {
        if let Ok(t) = self.topic(name) {
            if t.replicated && t.partitions.len() == partitions as usize {
                return Ok(());
            }
        }
        let topic = TopicName::new(name).map_err(|e| name_error("topic", name, e))?;
        self.create_topic_inner(topic, partitions, config, true, now_ms)
    }

    /// The log of one partition (the replication layer writes a replicated
    /// topic's logs through Raft).
    pub fn partition_log(&self, topic: &str, partition: u32) -> Result<Arc<Log>> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                BrokerError::new(
                    ErrorCode::UnknownPartition,
                    format!("topic {topic:?} has no partition {partition}"),
                )
            })
    }

    /// Creates a `spool.`-prefixed topic for the server's own use, unless
    /// it exists.
    pub fn create_system_topic(&self, name: &str, config: TopicConfig, now_ms: i64) -> Result<()> {
        let topic = TopicName::new_system(name).map_err(|e| name_error("topic", name, e))?;
        if self.topics.contains(name) {
            return Ok(());
        }
        self.create_topic_inner(topic, 1, config, false, now_ms)
    }

    pub(super) fn create_topic_inner(
        &self,
        topic: TopicName,
        partitions: u32,
        config: TopicConfig,
        replicated: bool,
        now_ms: i64,
    ) -> Result<()> {
        validate_partitions(partitions)?;
        let config = config.normalized();
        config.validate()?;
        let name = topic.as_str().to_owned();
        let mut meta = lock(&self.meta);
        if self.topics.contains(&name) {
            return Err(BrokerError::new(
                ErrorCode::TopicExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let tmeta = TopicMeta {
            partitions,
            config,
            created_ms: now_ms,
            replicated,
        };
        // Any leftover directory is from a deleted incarnation of this name.
        let dir = topic_dir(&self.data_dir, &name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                BrokerError::new(ErrorCode::StorageError, format!("{}: {e}", dir.display()))
            })?;
        }
        // A creation that fails half way (out of descriptors or disk space
        // while opening partitions, or at the metadata write) leaves no
        // directory behind: the name stays free, and no restart finds a
        // topic directory the metadata does not know.
        let remove_half_made = |e: BrokerError| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let mut notes = Vec::new();
        let opened =
            open_topic(&self.data_dir, &name, &tmeta, &mut notes).map_err(remove_half_made)?;
        let event = MetaEvent::TopicCreated {
            name: name.clone(),
            meta: tmeta,
        };
        if let Err(e) = meta.change(event, now_ms) {
            drop(opened);
            return Err(remove_half_made(e));
        }
        self.topics.insert(opened);
        drop(meta);
        self.groups.topics_changed(&self.topics.catalog());
        if let Some(l) = self.listener() {
            l.topics_changed();
        }
        Ok(())
    }

    pub fn delete_topic(&self, name: &str, now_ms: i64) -> Result<()> {
        if name.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX) {
            // The server writes them and relies on them (`spool.errors`
            // carries every dead letter's and failed request's event).
            return Err(BrokerError::new(
                ErrorCode::ReservedTopicName,
                format!("topic {name:?} is a system topic and cannot be deleted"),
            ));
        }
        let mut meta = lock(&self.meta);
        if !self.topics.contains(name) {
            return Err(BrokerError::unknown_topic(name));
        }
        let event = MetaEvent::TopicDeleted {
            name: name.to_owned(),
        };
        meta.change(event, now_ms)?;
        self.topics.remove(name);
        drop(meta);
        // A topic created again under this name starts with no offsets.
        self.groups
            .topic_deleted(name, &self.topics.catalog(), now_ms)?;
        // Readers holding a log keep their file handles; the files go now.
        let _ = std::fs::remove_dir_all(topic_dir(&self.data_dir, name));
        self.subscriptions.remove_topic(name);
        let _ = std::fs::remove_dir_all(self.data_dir.join("queues").join(name));
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
        meta.change(event, now_ms)?;
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
        // System topics are listed only when a pattern names them.
        Ok(self.topics.partition_counts(|n| match &pattern {
            Some(p) => p.matches(n),
            None => !n.starts_with(spool_types::names::SYSTEM_TOPIC_PREFIX),
        }))
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
        self.topics
            .partition_counts(|n| patterns.iter().any(|p| p.matches(n)))
            .into_iter()
            .flat_map(|(n, count)| (0..count).map(move |p| (n.clone(), p)))
            .collect()
    }
}
