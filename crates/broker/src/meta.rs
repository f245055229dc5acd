//! Broker metadata as an event log: topic and queue-subscription
//! definitions (and, from older versions, committed offsets) are appended
//! as JSON events to a dedicated [`Log`] under `meta/` (durability
//! `always`) and replayed on start. A periodic snapshot event holds the whole
//! state, after which the log's start offset moves past older events, so
//! replay stays short. This is also the stream a replicated metadata group
//! will carry later.

use crate::config::TopicConfig;
use crate::error::{BrokerError, Result};
use crate::records::walk_json;
use crate::subscription::{SubscriptionKey, SubscriptionSpec};
use serde::{Deserialize, Serialize};
use spool_batch::{BatchBuilder, NewRecord};
use spool_log::{Log, LogConfig, RecoveryReport};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::path::Path;

/// Events after the last snapshot before a new snapshot is written.
pub const META_SNAPSHOT_EVERY_EVENTS: u64 = 10_000;

/// Segment size of the metadata log.
pub const META_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub partitions: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
    /// A cluster's topic: its partition logs are Raft logs (`spool-log`
    /// entry mode), written by the replication layer, never by the
    /// broker (docs/cluster.md). Absent in single-node metadata.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated: bool,
}

/// Everything the metadata log describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub topics: BTreeMap<String, TopicMeta>,
    /// group → "topic/partition" → committed offset (next offset to consume).
    pub offsets: BTreeMap<String, BTreeMap<String, i64>>,
    /// Queue subscription settings (stored under the name `queues`, keys
    /// written `topic/name`).
    #[serde(default, rename = "queues")]
    pub subscriptions: BTreeMap<SubscriptionKey, SubscriptionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetaEvent {
    TopicCreated {
        name: String,
        meta: TopicMeta,
    },
    TopicAltered {
        name: String,
        config: TopicConfig,
    },
    TopicDeleted {
        name: String,
    },
    /// Written by versions before committed offsets had a log of their
    /// own (`crate::offsets`); still read, never written.
    OffsetsCommitted {
        group: String,
        offsets: Vec<(String, u32, i64)>,
    },
    /// Stored as `queue_created` (its name before subscriptions were
    /// called so throughout).
    #[serde(rename = "queue_created")]
    SubscriptionCreated {
        spec: SubscriptionSpec,
    },
    #[serde(rename = "queue_deleted")]
    SubscriptionDeleted {
        topic: String,
        name: String,
    },
    /// A subscription's settings changed (`Broker::alter_subscription`):
    /// the whole new spec, so replay needs nothing but this event.
    SubscriptionAltered {
        spec: SubscriptionSpec,
    },
    Snapshot {
        state: MetaState,
    },
}

pub fn tp_key(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

/// Splits a "topic/partition" key (topic names never contain '/').
pub fn parse_tp_key(key: &str) -> Option<(String, u32)> {
    let (topic, partition) = key.rsplit_once('/')?;
    Some((topic.to_owned(), partition.parse().ok()?))
}

impl MetaState {
    pub fn apply(&mut self, event: &MetaEvent) {
        match event {
            MetaEvent::TopicCreated { name, meta } => {
                self.topics.insert(name.clone(), meta.clone());
            }
            MetaEvent::TopicAltered { name, config } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.config = config.clone();
                }
            }
            MetaEvent::TopicDeleted { name } => {
                self.topics.remove(name);
                self.subscriptions.retain(|key, _| &key.topic != name);
                for offsets in self.offsets.values_mut() {
                    offsets.retain(|k, _| parse_tp_key(k).is_none_or(|(t, _)| &t != name));
                }
            }
            MetaEvent::OffsetsCommitted { group, offsets } => {
                let g = self.offsets.entry(group.clone()).or_default();
                for (topic, partition, offset) in offsets {
                    g.insert(tp_key(topic, *partition), *offset);
                }
            }
            MetaEvent::SubscriptionCreated { spec } => {
                self.subscriptions.insert(spec.key(), spec.clone());
            }
            MetaEvent::SubscriptionDeleted { topic, name } => {
                self.subscriptions
                    .remove(&SubscriptionKey::new(topic, name));
            }
            MetaEvent::SubscriptionAltered { spec } => {
                if let Some(s) = self.subscriptions.get_mut(&spec.key()) {
                    *s = spec.clone();
                }
            }
            MetaEvent::Snapshot { state } => *self = state.clone(),
        }
    }
}

/// The metadata log and the running count that decides snapshots.
pub struct MetaStore {
    log: Log,
    events_since_snapshot: u64,
}

impl MetaStore {
    /// Opens `dir` and replays it into a state.
    pub fn open(dir: &Path) -> Result<(MetaStore, MetaState, RecoveryReport)> {
        // Small segments so snapshots let old events be deleted soon.
        // Strict: metadata is appended one fdatasync'd event at a time, so
        // a crash tears at most the last batch; a bad batch with more after
        // it is damage, and cutting there would forget topics (whose data
        // would then be set aside as unknown). Refuse and say where.
        let config = LogConfig {
            segment_bytes: META_SEGMENT_BYTES,
            strict_recovery: true,
            ..LogConfig::default()
        };
        let (log, report) = Log::open(dir, config)?;
        let mut state = MetaState::default();
        let events = walk_json(&log, "metadata event", |event: MetaEvent| {
            state.apply(&event)
        })?;
        Ok((
            MetaStore {
                log,
                events_since_snapshot: events,
            },
            state,
            report,
        ))
    }

    /// Appends events as one atomic, durable batch.
    pub fn append(&mut self, events: &[MetaEvent], now_ms: i64) -> Result<()> {
        let mut b = BatchBuilder::new();
        for e in events {
            let value = serde_json::to_vec(e)
                .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
            b.push(&NewRecord::value(value, now_ms))?;
        }
        let batch = b.finish()?;
        // Synced whatever the log's policy says: a metadata change is
        // acknowledged only once it would survive a power loss.
        let (appended, _) = self.log.write(&batch, now_ms)?;
        self.log.sync_to(appended.next_offset())?;
        self.events_since_snapshot += events.len() as u64;
        Ok(())
    }

    pub fn wants_snapshot(&self) -> bool {
        self.events_since_snapshot >= META_SNAPSHOT_EVERY_EVENTS
    }

    /// Writes the whole state as one event and drops everything before it.
    pub fn snapshot(&mut self, state: &MetaState, now_ms: i64) -> Result<()> {
        let offset = self.log.stats().next_offset;
        self.append(
            &[MetaEvent::Snapshot {
                state: state.clone(),
            }],
            now_ms,
        )?;
        self.log.advance_start_offset(offset)?;
        self.events_since_snapshot = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subscriptions are stored as `queue_created` events and, in
    /// snapshots, under `queues` keyed `topic/name`: metadata written before
    /// the code called them subscriptions reads the same, and is written
    /// back unchanged.
    #[test]
    fn stored_subscription_events_and_snapshots_keep_their_format() {
        let spec = SubscriptionSpec::new("orders", "billing");
        let created = MetaEvent::SubscriptionCreated { spec: spec.clone() };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["event"], "queue_created");
        assert_eq!(serde_json::from_value::<MetaEvent>(json).unwrap(), created);

        let mut state = MetaState::default();
        state.apply(&created);
        let json = serde_json::to_value(MetaEvent::Snapshot {
            state: state.clone(),
        })
        .unwrap();
        assert!(json["state"]["queues"]["orders/billing"].is_object());
        let back: MetaEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, MetaEvent::Snapshot { state });

        let deleted = MetaEvent::SubscriptionDeleted {
            topic: "orders".into(),
            name: "billing".into(),
        };
        assert_eq!(
            serde_json::to_value(&deleted).unwrap()["event"],
            "queue_deleted"
        );
        // An alteration replaces the spec of a subscription that exists,
        // and of no other.
        let mut altered_spec = spec.clone();
        altered_spec.max_deliveries = 2;
        altered_spec.push_endpoint = Some("http://127.0.0.1:9/in".into());
        let altered = MetaEvent::SubscriptionAltered {
            spec: altered_spec.clone(),
        };
        let json = serde_json::to_value(&altered).unwrap();
        assert_eq!(json["event"], "subscription_altered");
        assert_eq!(json["spec"]["max_deliveries"], 2);
        assert_eq!(serde_json::from_value::<MetaEvent>(json).unwrap(), altered);
        let mut state = MetaState::default();
        state.apply(&altered);
        assert!(state.subscriptions.is_empty());
        state.apply(&created);
        state.apply(&altered);
        assert_eq!(state.subscriptions[&spec.key()], altered_spec);

        let bad = serde_json::json!({"event": "snapshot", "state": {
            "topics": {}, "offsets": {}, "queues": {"no-slash": spec}}});
        assert!(serde_json::from_value::<MetaEvent>(bad).is_err());
    }
}
