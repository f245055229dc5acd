//! JSON request bodies of the topic, message and subscription routes and
//! their conversion to broker calls; each also describes itself in
//! `/openapi.json` (`ToSchema`). Values travel as UTF-8 `value` or binary
//! `value_base64` (keys likewise).

use super::{ApiError, ApiResult};
use base64::Engine;
use serde::{Deserialize, Serialize};
use spool_batch::NewRecord;
use spool_broker::subscription::{
    BackoffSpec, ModeSpec, SubscriptionPatch, SubscriptionSpec, DELIVER_AT_HEADER,
};
use spool_broker::{
    OnFull, Retention, TopicConfig, TopicConfigPatch, TopicDurability, MESSAGE_ID_HEADER,
};
use std::collections::BTreeMap;
use utoipa::ToSchema;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// The schema's bounds below are these limits, written out for the macro.
const _: () = assert!(spool_types::limits::PARTITIONS_MAX == 1024);
const _: () = assert!(spool_types::limits::TOPIC_NAME_LEN_MAX == 249);
const _: () = assert!(spool_types::limits::GROUP_NAME_LEN_MAX == 249);
const _: () = assert!(spool_types::limits::SEGMENT_BYTES_MIN == 1024);
const _: () = assert!(spool_types::limits::SEGMENT_BYTES_MAX == 2_147_483_647);
const _: () = assert!(spool_types::limits::DEDUP_WINDOW_MS_MAX == 86_400_000);

/// What a full topic does with a new batch (`drop-oldest` is accepted too).
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum OnFullName {
    /// Refuse the batch with `QUEUE_FULL` (429); nothing of it is written.
    Reject,
    /// Accept it and discard the oldest messages to make room.
    #[serde(alias = "drop-oldest")]
    DropOldest,
}

impl From<OnFullName> for OnFull {
    fn from(v: OnFullName) -> OnFull {
        match v {
            OnFullName::Reject => OnFull::Reject,
            OnFullName::DropOldest => OnFull::DropOldest,
        }
    }
}

/// When stored messages are released (`work-queue` is accepted too).
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RetentionName {
    /// Kept until the size and age limits remove them.
    Limits,
    /// Released once every consumer has consumed them.
    #[serde(alias = "work-queue")]
    WorkQueue,
}

impl From<RetentionName> for Retention {
    fn from(v: RetentionName) -> Retention {
        match v {
            RetentionName::Limits => Retention::Limits,
            RetentionName::WorkQueue => Retention::WorkQueue,
        }
    }
}

/// When a write is on disk before it is acknowledged.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityName {
    /// fdatasync before every acknowledgement (the default).
    Always,
    /// fdatasync every `interval_ms` (default 100).
    Interval,
    /// Left to the operating system.
    Never,
}

fn durability(name: DurabilityName, interval_ms: Option<u32>) -> TopicDurability {
    match name {
        DurabilityName::Always => TopicDurability::Always,
        DurabilityName::Interval => TopicDurability::Interval {
            interval_ms: interval_ms.unwrap_or(100),
        },
        DurabilityName::Never => TopicDurability::Never,
    }
}

/// `POST /v1/topics`: a new topic and its settings (all but `name`
/// optional; no limit unless given).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "orders", "partitions": 3, "max_messages": 100000,
    "on_full": "reject", "retention": "limits", "retention_ms": 604800000})))]
pub struct CreateTopic {
    /// Letters, digits, `.`, `_` and `-`; names starting `spool.` are reserved.
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub name: String,
    /// Default 1.
    #[schema(minimum = 1, maximum = 1024)]
    pub partitions: Option<u32>,
    /// On a cluster: nodes holding each partition (default 3, or every
    /// node of a smaller cluster). A single-node server takes only 1.
    #[schema(minimum = 1)]
    pub replicas: Option<u32>,
    /// Most messages kept; past it `on_full` applies.
    pub max_messages: Option<u64>,
    /// Most bytes kept; past it `on_full` applies.
    pub max_bytes: Option<u64>,
    /// Default `reject`.
    pub on_full: Option<OnFullName>,
    /// Default `limits`.
    pub retention: Option<RetentionName>,
    /// Oldest segments are deleted past this many bytes.
    pub retention_bytes: Option<u64>,
    /// Messages older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Default `always`.
    pub durability: Option<DurabilityName>,
    /// With `durability: interval`: how often to fdatasync (default 100).
    #[schema(minimum = 1)]
    pub interval_ms: Option<u32>,
    /// Size of a log segment file.
    #[schema(minimum = 1024, maximum = 2147483647)]
    pub segment_bytes: Option<u64>,
    /// Window in which a repeated `message_id` is not stored again.
    #[schema(maximum = 86400000)]
    pub dedup_window_ms: Option<u64>,
    /// Depth at which a warning is logged and reported.
    pub warn_depth: Option<u64>,
}

impl CreateTopic {
    pub fn into_config(self) -> (TopicConfig, u32) {
        let mut c = TopicConfig {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            warn_depth: self.warn_depth,
            ..TopicConfig::default()
        };
        c.on_full = self.on_full.map_or(OnFull::Reject, OnFull::from);
        c.retention = self.retention.map_or(Retention::Limits, Retention::from);
        c.durability = durability(
            self.durability.unwrap_or(DurabilityName::Always),
            self.interval_ms,
        );
        if let Some(v) = self.segment_bytes {
            c.segment_bytes = v;
        }
        if let Some(v) = self.dedup_window_ms {
            c.dedup_window_ms = v;
        }
        (c, self.partitions.unwrap_or(1))
    }
}

/// `PATCH /v1/topics/{topic}`: the settings to change, as in create;
/// 0 clears a limit, absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"warn_depth": 5000, "retention_ms": 86400000})))]
pub struct AlterTopic {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: Option<OnFullName>,
    pub retention: Option<RetentionName>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: Option<DurabilityName>,
    /// With `durability: interval` (default 100); ignored without it.
    #[schema(minimum = 1)]
    pub interval_ms: Option<u32>,
    #[schema(minimum = 1024, maximum = 2147483647)]
    pub segment_bytes: Option<u64>,
    #[schema(maximum = 86400000)]
    pub dedup_window_ms: Option<u64>,
    pub warn_depth: Option<u64>,
}

impl AlterTopic {
    pub fn into_patch(self) -> TopicConfigPatch {
        TopicConfigPatch {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            on_full: self.on_full.map(OnFull::from),
            retention: self.retention.map(Retention::from),
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            durability: self.durability.map(|d| durability(d, self.interval_ms)),
            segment_bytes: self.segment_bytes,
            dedup_window_ms: self.dedup_window_ms,
            warn_depth: self.warn_depth,
        }
    }
}

/// One message to publish. Give the value as `value` (UTF-8) or
/// `value_base64`, not both; the key likewise.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"value": "{\"order\":42}", "key": "customer-7",
    "headers": {"source": "web"}, "message_id": "order-42"})))]
pub struct Message {
    pub value: Option<String>,
    pub value_base64: Option<String>,
    /// Messages with one key go to one partition (and, on an `ordered`
    /// subscription, are delivered in order).
    pub key: Option<String>,
    pub key_base64: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The partition to store it in (else chosen by key, or spread).
    pub partition: Option<u32>,
    /// Duplicate suppression: a repeated ID within the topic's
    /// `dedup_window_ms` is not stored again (its answer is marked
    /// `duplicate`).
    pub message_id: Option<String>,
    /// Deliver to queue subscriptions no sooner than this many ms from now.
    pub delay_ms: Option<u64>,
    /// Deliver to queue subscriptions no sooner than this time (ms since
    /// the Unix epoch); wins over `delay_ms`.
    pub deliver_at_ms: Option<i64>,
}

/// `POST /v1/topics/{topic}/messages`: stored as one atomic batch per
/// partition.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"messages": [{"value": "{\"order\":42}", "key": "customer-7",
    "message_id": "order-42"}, {"value_base64": "AAEC", "delay_ms": 60000}]})))]
pub struct Publish {
    /// At least one.
    #[schema(min_items = 1)]
    pub messages: Vec<Message>,
}

fn bytes_field(
    text: Option<String>,
    b64: Option<String>,
    what: &str,
) -> ApiResult<Option<Vec<u8>>> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "give either {what} or {what}_base64, not both"
        ))),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => B64
            .decode(b.as_bytes())
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{what}_base64: {e}"))),
        (None, None) => Ok(None),
    }
}

impl Message {
    pub fn into_record(self, now_ms: i64) -> ApiResult<(Option<u32>, NewRecord)> {
        let value = bytes_field(self.value, self.value_base64, "value")?;
        let key = bytes_field(self.key, self.key_base64, "key")?;
        let mut headers: Vec<(String, Option<Vec<u8>>)> = self
            .headers
            .into_iter()
            .map(|(k, v)| (k, Some(v.into_bytes())))
            .collect();
        if let Some(id) = self.message_id {
            headers.push((MESSAGE_ID_HEADER.to_owned(), Some(id.into_bytes())));
        }
        let deliver_at = self.deliver_at_ms.or(self
            .delay_ms
            .map(|d| now_ms.saturating_add(d.min(i64::MAX as u64 / 2) as i64)));
        if let Some(at) = deliver_at {
            headers.push((
                DELIVER_AT_HEADER.to_owned(),
                Some(at.to_string().into_bytes()),
            ));
        }
        Ok((
            self.partition,
            NewRecord {
                key,
                value,
                headers,
                timestamp_ms: now_ms,
            },
        ))
    }
}

/// The messages of a publish as records, each with the partition it
/// names (if any), in request order.
pub fn records(req: Publish, now_ms: i64) -> ApiResult<Vec<(Option<u32>, NewRecord)>> {
    req.messages
        .into_iter()
        .map(|m| m.into_record(now_ms))
        .collect()
}

/// A subscription's kind.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionKind {
    /// Leases, acks, retries, dead letters (the default).
    #[default]
    Queue,
    /// Offsets read in order (consumer-group style); the queue settings
    /// do not apply.
    Stream,
}

/// Delivery guarantee of a queue subscription.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Leased, redelivered until acknowledged (the default).
    AtLeastOnce,
    /// Acknowledged as it is handed out.
    AtMostOnce,
}

/// `POST /v1/topics/{topic}/subscriptions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "billing", "ack_timeout_ms": 30000, "max_deliveries": 5,
    "dead_letter_topic": "orders.dlq", "backoff_ms": 1000, "backoff_max_ms": 60000,
    "ordered": true})))]
pub struct CreateSubscription {
    /// Any printable characters (no control characters).
    #[schema(
        min_length = 1,
        max_length = 249,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    pub name: String,
    /// Default `queue`.
    pub kind: Option<SubscriptionKind>,
    /// A lease lapses this long after it is handed out (default 30000).
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before a message becomes a dead letter (default 5).
    pub max_deliveries: Option<u32>,
    /// Where dead letters go (else they stay, for redrive).
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub dead_letter_topic: Option<String>,
    /// Delay before a redelivery (fixed, or the first of an exponential
    /// series with `backoff_max_ms`).
    pub backoff_ms: Option<u64>,
    /// Makes the backoff exponential, up to this.
    pub backoff_max_ms: Option<u64>,
    /// Default `at_least_once`.
    pub mode: Option<Mode>,
    /// One message per key at a time, in order.
    pub ordered: Option<bool>,
    /// Push messages to this URL (signed POSTs; host must be allowed).
    pub push_endpoint: Option<String>,
    /// Pushes in flight at once.
    pub max_in_flight: Option<u32>,
}

impl CreateSubscription {
    pub fn into_spec(self, topic: &str) -> SubscriptionSpec {
        let mut spec = SubscriptionSpec::new(topic, &self.name);
        if let Some(v) = self.ack_timeout_ms {
            spec.ack_timeout_ms = v;
        }
        if let Some(v) = self.max_deliveries {
            spec.max_deliveries = v;
        }
        spec.dead_letter_topic = self.dead_letter_topic;
        spec.backoff = match (self.backoff_ms, self.backoff_max_ms) {
            (None, _) => BackoffSpec::Fixed { delay_ms: 0 },
            (Some(d), None) => BackoffSpec::Fixed { delay_ms: d },
            (Some(d), Some(max)) => BackoffSpec::Exponential {
                initial_ms: d,
                max_ms: max,
            },
        };
        spec.mode = match self.mode {
            None | Some(Mode::AtLeastOnce) => ModeSpec::AtLeastOnce,
            Some(Mode::AtMostOnce) => ModeSpec::AtMostOnce,
        };
        spec.ordered = self.ordered.unwrap_or(false);
        spec.push_endpoint = self.push_endpoint;
        if let Some(n) = self.max_in_flight {
            spec.push_max_in_flight = n;
        }
        spec
    }
}

/// `POST …/receive` (the body may be empty: defaults).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"max": 10, "wait_ms": 20000})))]
pub struct Receive {
    /// Most messages to lease (1–1000, default 10).
    pub max: Option<u32>,
    /// Wait up to this long when there are none (long poll; at most 300000).
    #[schema(maximum = 300000)]
    pub wait_ms: Option<u64>,
}

/// `POST …/ack`: the leases to acknowledge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"receipts": ["0-41-1a2b3c"]})))]
pub struct Ack {
    /// Receipts from `receive`.
    pub receipts: Vec<String>,
}

/// `POST …/nack`: leases to give back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"receipts": ["0-41-1a2b3c"], "delay_ms": 5000, "error": "db down"})))]
pub struct Nack {
    pub receipts: Vec<String>,
    /// Redeliver no sooner than this (default 0).
    pub delay_ms: Option<u64>,
    /// Why (kept with a dead letter).
    pub error: Option<String>,
}

/// `POST …/extend`: leases to lengthen.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"receipts": ["0-41-1a2b3c"], "extend_ms": 60000})))]
pub struct Extend {
    pub receipts: Vec<String>,
    /// The new lease lasts this long from now (default 30000).
    pub extend_ms: Option<u64>,
}

/// `PATCH /v1/topics/{topic}/subscriptions/{sub}`: only the fields present
/// change; `null` removes the dead-letter topic or the push endpoint. The
/// mode and ordering are fixed at creation, so they are unknown fields
/// here.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"max_deliveries": 3, "dead_letter_topic": null})))]
pub struct AlterSubscription {
    /// A lease lapses this long after it is handed out (new leases).
    #[schema(minimum = 1)]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before a message becomes a dead letter.
    pub max_deliveries: Option<u32>,
    /// Where dead letters go; `null`: nowhere (they stay, for redrive).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub dead_letter_topic: Option<Option<String>>,
    /// Delay before a redelivery (fixed, or the first of an exponential
    /// series with `backoff_max_ms`).
    pub backoff_ms: Option<u64>,
    /// Makes the backoff exponential, up to this (needs `backoff_ms`).
    pub backoff_max_ms: Option<u64>,
    /// Push messages to this URL (host must be allowed); `null`: stop
    /// pushing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub push_endpoint: Option<Option<String>>,
    /// Pushes in flight at once.
    pub max_in_flight: Option<u32>,
}

/// A field that is present, possibly `null` (an absent one stays `None`
/// through `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl AlterSubscription {
    pub fn into_patch(self) -> ApiResult<SubscriptionPatch> {
        let backoff =
            match (self.backoff_ms, self.backoff_max_ms) {
                (None, None) => None,
                (None, Some(_)) => return Err(ApiError::invalid(
                    "backoff_max_ms needs backoff_ms (the first step of the exponential backoff)",
                )),
                (Some(delay_ms), None) => Some(BackoffSpec::Fixed { delay_ms }),
                (Some(initial_ms), Some(max_ms)) => {
                    Some(BackoffSpec::Exponential { initial_ms, max_ms })
                }
            };
        Ok(SubscriptionPatch {
            ack_timeout_ms: self.ack_timeout_ms,
            max_deliveries: self.max_deliveries,
            dead_letter_topic: self.dead_letter_topic,
            backoff,
            push_endpoint: self.push_endpoint,
            push_max_in_flight: self.max_in_flight,
        })
    }
}
