//! Opening a data directory: topics, queues and request records recovered,
//! unknown topic directories set aside, orphaned requests failed.

use super::groups::Groups;
use super::request_ops::Requests;
use super::subscriptions::Subscriptions;
use super::topics::Dedup;
use super::topics::Topics;
use super::*;
use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use crate::group::{Coordinator, TopicPartition};
use crate::meta::{parse_tp_key, MetaStore, TopicMeta};
use crate::offsets::{Committed, OffsetStore};
use crate::records::{walk_records, Walk};
use crate::requests::{RequestRecord, RequestStatus, REQUEST_ID_HEADER, WORKERS_SUBSCRIPTION};
use crate::subscription::Subscription;
use spool_log::{Log, Syncer, SYNCER_THREADS_DEFAULT};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

pub(super) fn topic_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("topics").join(name)
}

pub(super) fn open_topic(
    data_dir: &Path,
    name: &str,
    meta: &TopicMeta,
    notes: &mut RecoveryNotes,
) -> Result<Topic> {
    let mut partitions = Vec::with_capacity(meta.partitions as usize);
    for p in 0..meta.partitions {
        let dir = topic_dir(data_dir, name).join(p.to_string());
        let mut log_config = meta.config.log_config();
        log_config.entry_mode = meta.replicated;
        let (log, report) = Log::open(&dir, log_config)?;
        if !report.is_clean() {
            notes.push(format!("{name}/{p}: {report}"));
        }
        partitions.push(Arc::new(log));
    }
    Ok(Topic {
        name: name.to_owned(),
        // Normalized: a 0 limit stored by an older HTTP API meant "always
        // full" by accident; it reads as "none" everywhere, so it is none.
        config: RwLock::new(meta.config.clone().normalized()),
        partitions,
        replicated: meta.replicated,
        spread: AtomicU32::new(0),
        admit: Mutex::new(()),
        dedup: Mutex::new(Dedup::default()),
        warned: std::sync::atomic::AtomicBool::new(false),
    })
}

pub(super) fn subscription_dir(data_dir: &Path, topic: &str, name: &str) -> PathBuf {
    data_dir.join("queues").join(topic).join(name)
}

/// Rebuilds the duplicate-suppression index from the last window of each partition.
pub(super) fn restore_dedup(topic: &Topic, now_ms: i64) -> Result<()> {
    let window = topic.config().dedup_window_ms as i64;
    let mut dedup = lock(&topic.dedup);
    for (p, log) in topic.partitions.iter().enumerate() {
        let Some(offset) = log.offset_for_timestamp(now_ms - window)? else {
            continue;
        };
        walk_records(log, offset, 1 << 20, |at| {
            if let Some(id) = at.record.header(MESSAGE_ID_HEADER) {
                dedup.insert(id, p as u32, at.offset, at.timestamp_ms + window);
            }
            Ok(Walk::Continue)
        })?;
    }
    dedup.purge(now_ms);
    Ok(())
}

/// Where topic directories unknown to the metadata are moved on open.
pub const ORPHANED_DIR: &str = "orphaned";

/// Moves an unknown topic directory to `<data_dir>/orphaned/` and says so.
pub(super) fn set_aside(data_dir: &Path, dir: &Path, name: &str, now_ms: i64) -> String {
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
        // Offsets committed before they had a log of their own are in the
        // metadata; the offsets log, replayed over them, has the rest.
        let earlier: Committed = state
            .offsets
            .iter()
            .map(|(group, offsets)| {
                let parsed = offsets
                    .iter()
                    .filter_map(|(k, o)| parse_tp_key(k).map(|tp| (tp, *o)))
                    .collect();
                (group.clone(), parsed)
            })
            .collect();
        let (offsets, committed, report) = OffsetStore::open(&data_dir.join("offsets"), earlier)?;
        if !report.is_clean() {
            notes.push(format!("committed offsets: {report}"));
        }
        let mut coordinator = Coordinator::new();
        for (group, offsets) in committed {
            let offsets: Vec<(TopicPartition, i64)> = offsets.into_iter().collect();
            coordinator.apply_commit(&group, &offsets);
        }
        let requests = Requests::open(&data_dir.join("requests.redb"))?;
        let mut subscriptions = Vec::new();
        for spec in state.subscriptions.values() {
            let Some(topic) = topics.get(&spec.topic) else {
                continue;
            };
            let starts: Vec<i64> = topic
                .partitions
                .iter()
                .map(|l| l.stats().start_offset)
                .collect();
            let dir = subscription_dir(data_dir, &spec.topic, &spec.name);
            let (sub, note) = Subscription::open(&dir, spec.clone(), &starts, now_ms)?;
            notes.extend(note);
            subscriptions.push(sub);
        }
        for topic in topics.values() {
            restore_dedup(topic, now_ms)?;
        }
        let broker = Broker {
            data_dir: data_dir.to_owned(),
            meta: Mutex::new(Meta { store, state }),
            topics: Topics::new(topics),
            subscriptions: Subscriptions::new(subscriptions),
            groups: Groups::new(coordinator, offsets),
            requests,
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
        broker.create_system_topic(EVENTS_TOPIC, events, now_ms)?;
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
    pub(super) fn fail_orphaned_requests(
        &self,
        now_ms: i64,
        notes: &mut RecoveryNotes,
    ) -> Result<()> {
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
                self.finish_request(
                    &r.id,
                    None,
                    RequestStatus::Failed,
                    None,
                    Some(error),
                    now_ms,
                )?;
            }
        }
        Ok(())
    }

    /// Request IDs of the messages in a request queue not yet done by its
    /// workers (from the subscription's floors to the end).
    pub(super) fn queued_request_ids(
        &self,
        queue: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let mut ids = std::collections::HashSet::new();
        let (Ok(topic), Ok(sub)) = (
            self.topic(queue),
            self.subscription(queue, WORKERS_SUBSCRIPTION),
        ) else {
            return Ok(ids);
        };
        let floors = sub.floors();
        for (p, log) in topic.partitions.iter().enumerate() {
            let floor = floors.get(p).copied().unwrap_or(0);
            let from = floor.max(log.stats().start_offset);
            walk_records(log, from, 1 << 20, |at| {
                let id = at.record.header(REQUEST_ID_HEADER);
                if let Some(id) = id.and_then(|v| std::str::from_utf8(v).ok()) {
                    ids.insert(id.to_owned());
                }
                Ok(Walk::Continue)
            })?;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod orphan_tests {
    use super::*;
    use crate::requests::RequestChange;

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
            let orphan = broker
                .requests
                .change(RequestChange::Submitted { record: orphan })
                .unwrap();
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
