//! The JSON answers of the HTTP API: one type per shape, serialised by the
//! handlers and described (with `utoipa`) in `/openapi.json` from these same
//! types, so the document cannot drift from what is sent.
//!
//! Bytes travel as UTF-8 text where they are, else base64: a key or value
//! that is not UTF-8 is `null` in `key`/`value` and given in
//! `key_base64`/`value_base64`; a header value that is not UTF-8 is
//! `{"base64": "…"}`.

use super::{ApiError, ApiResult};
use crate::ops::{FetchedPartition, SubscriptionLoad};
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use spool_broker::requests::{CallbackState, CallbackStatus, RequestRecord};
use spool_broker::subscription::{BackoffSpec, LeasedMessage, ModeSpec, SubscriptionSpec};
use spool_broker::{
    Assignment, GroupInfo, OnFull, Retention, TopicConfig, TopicDescription, TopicDurability,
};
use std::collections::BTreeMap;
use utoipa::ToSchema;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `GET /healthz`, `GET /readyz`.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"status": "ok"})))]
pub struct Health {
    pub status: String,
}

/// A topic as created or listed.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"name": "orders", "partitions": 3})))]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

/// `GET /v1/topics`.
#[derive(Serialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

/// What a full topic does with a new batch.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum OnFullView {
    /// Refuse the batch with `QUEUE_FULL` (429).
    Reject,
    /// Accept it and discard the oldest messages.
    DropOldest,
}

/// When stored messages are released.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RetentionView {
    /// By the size and age limits.
    Limits,
    /// Once every consumer group and subscription has consumed them.
    WorkQueue,
}

/// When a write is on disk before it is acknowledged.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum DurabilityView {
    /// fdatasync before every acknowledgement.
    Always,
    /// fdatasync every `interval_ms`.
    Interval { interval_ms: u32 },
    /// Left to the operating system.
    Never,
}

/// A topic's effective settings.
#[derive(Serialize, ToSchema)]
pub struct TopicConfigView {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: OnFullView,
    pub retention: RetentionView,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: DurabilityView,
    pub segment_bytes: u64,
    pub dedup_window_ms: u64,
    pub warn_depth: Option<u64>,
}

impl From<&TopicConfig> for TopicConfigView {
    fn from(c: &TopicConfig) -> Self {
        TopicConfigView {
            max_messages: c.max_messages,
            max_bytes: c.max_bytes,
            on_full: match c.on_full {
                OnFull::Reject => OnFullView::Reject,
                OnFull::DropOldest => OnFullView::DropOldest,
            },
            retention: match c.retention {
                Retention::Limits => RetentionView::Limits,
                Retention::WorkQueue => RetentionView::WorkQueue,
            },
            retention_bytes: c.retention_bytes,
            retention_ms: c.retention_ms,
            durability: match c.durability {
                TopicDurability::Always => DurabilityView::Always,
                TopicDurability::Interval { interval_ms } => {
                    DurabilityView::Interval { interval_ms }
                }
                TopicDurability::Never => DurabilityView::Never,
            },
            segment_bytes: c.segment_bytes,
            dedup_window_ms: c.dedup_window_ms,
            warn_depth: c.warn_depth,
        }
    }
}

/// One partition of a described topic.
#[derive(Serialize, ToSchema)]
pub struct PartitionView {
    pub partition: u32,
    /// First offset still stored.
    pub start_offset: i64,
    /// The offset the next message will get.
    pub end_offset: i64,
    pub messages: u64,
    pub bytes: u64,
}

/// `GET`/`PATCH /v1/topics/{topic}`: settings, offsets and depth.
#[derive(Serialize, ToSchema)]
pub struct TopicView {
    pub name: String,
    pub config: TopicConfigView,
    pub partitions: Vec<PartitionView>,
}

impl From<&TopicDescription> for TopicView {
    fn from(d: &TopicDescription) -> Self {
        let partitions = d
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                messages: p.messages,
                bytes: p.bytes,
            })
            .collect();
        TopicView {
            name: d.name.clone(),
            config: (&d.config).into(),
            partitions,
        }
    }
}

/// Where one published message was stored.
#[derive(Serialize, ToSchema)]
pub struct Placed {
    pub partition: u32,
    pub offset: i64,
    /// Present (true) when the message was a duplicate of one stored
    /// before with the same `message_id`: `offset` is the original's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `POST /v1/topics/{topic}/messages`: one entry per message, in order.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"offsets": [{"partition": 0, "offset": 41}]})))]
pub struct Published {
    pub offsets: Vec<Placed>,
}

/// A header value: UTF-8 text, `{"base64": …}` when it is not, `null` for
/// a header without one.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum HeaderValueView {
    Text(String),
    Binary { base64: String },
    Absent,
}

/// Header name to value.
pub type HeadersView = BTreeMap<String, HeaderValueView>;

fn text_or_b64(bytes: Option<&[u8]>) -> (Option<String>, Option<String>) {
    match bytes.map(|b| (std::str::from_utf8(b), b)) {
        None => (None, None),
        Some((Ok(s), _)) => (Some(s.to_owned()), None),
        Some((Err(_), b)) => (None, Some(B64.encode(b))),
    }
}

fn headers_view(headers: &[(String, Option<&[u8]>)]) -> HeadersView {
    headers
        .iter()
        .map(|(k, v)| {
            let v = match v {
                None => HeaderValueView::Absent,
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => HeaderValueView::Text(s.to_owned()),
                    Err(_) => HeaderValueView::Binary {
                        base64: B64.encode(b),
                    },
                },
            };
            (k.clone(), v)
        })
        .collect()
}

/// A message read from a partition.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The key as text; `null` when there is none or it is not UTF-8.
    pub key: Option<String>,
    /// The key in base64, present only when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The value as text; `null` when there is none or it is not UTF-8.
    pub value: Option<String>,
    /// The value in base64, present only when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    #[schema(value_type = BTreeMap<String, HeaderValueView>)]
    pub headers: HeadersView,
}

/// `GET /v1/topics/{topic}/messages`.
#[derive(Serialize, ToSchema)]
pub struct Fetched {
    pub messages: Vec<MessageView>,
    /// Where to read next.
    pub next_offset: i64,
    pub start_offset: i64,
    pub end_offset: i64,
}

/// Messages of a fetch, skipping records below the asked offset.
pub fn fetched(partition: u32, read: &FetchedPartition, from: i64) -> ApiResult<Fetched> {
    let mut messages = Vec::new();
    for batch in spool_batch::split_batches(&read.batches) {
        let batch = batch.map_err(|e| ApiError(e.into()))?;
        let h =
            spool_batch::BatchHeader::parse_with_control(batch).map_err(|e| ApiError(e.into()))?;
        if h.is_control() {
            // A replicated log's Raft bookkeeping: no records.
            continue;
        }
        for r in spool_batch::records(batch, &h) {
            let r = r.map_err(|e| ApiError(e.into()))?;
            let offset = h.base_offset + r.offset_delta as i64;
            if offset < from {
                continue;
            }
            let (key, key_base64) = text_or_b64(r.key);
            let (value, value_base64) = text_or_b64(r.value);
            let headers: Vec<(String, Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|hd| (hd.key.to_owned(), hd.value))
                .collect();
            messages.push(MessageView {
                partition,
                offset,
                timestamp_ms: h.base_timestamp + r.timestamp_delta,
                key,
                key_base64,
                value,
                value_base64,
                headers: headers_view(&headers),
            });
        }
    }
    Ok(Fetched {
        messages,
        next_offset: read.next_offset,
        start_offset: read.start_offset,
        end_offset: read.end_offset,
    })
}

/// One event of the side channel (`spool.errors`).
#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub offset: i64,
    /// The event document (`null` if it is not JSON).
    pub event: Value,
}

/// `GET /v1/events`.
#[derive(Serialize, ToSchema)]
pub struct Events {
    pub events: Vec<EventView>,
    pub next_offset: i64,
}

/// A message leased from a queue subscription.
#[derive(Serialize, ToSchema)]
pub struct LeasedView {
    /// Names this lease in ack, nack and extend.
    pub receipt: String,
    pub partition: u32,
    pub offset: i64,
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    #[schema(value_type = BTreeMap<String, HeaderValueView>)]
    pub headers: HeadersView,
    /// Times handed out, this one included.
    pub deliveries: u32,
    pub timestamp_ms: i64,
    /// Ms since the Unix epoch when the lease lapses.
    pub lease_deadline_ms: i64,
}

impl From<&LeasedMessage> for LeasedView {
    fn from(m: &LeasedMessage) -> Self {
        let (key, key_base64) = text_or_b64(m.key.as_deref());
        let (value, value_base64) = text_or_b64(m.value.as_deref());
        let headers: Vec<(String, Option<&[u8]>)> = m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_deref()))
            .collect();
        LeasedView {
            receipt: m.receipt.clone(),
            partition: m.partition,
            offset: m.offset,
            key,
            key_base64,
            value,
            value_base64,
            headers: headers_view(&headers),
            deliveries: m.deliveries,
            timestamp_ms: m.timestamp_ms,
            lease_deadline_ms: m.lease_deadline_ms,
        }
    }
}

/// `POST …/receive`.
#[derive(Serialize, ToSchema)]
pub struct Received {
    pub messages: Vec<LeasedView>,
}

/// The outcome for one receipt of an ack, nack or extend.
#[derive(Serialize, ToSchema)]
pub struct ReceiptResult {
    pub receipt: String,
    pub ok: bool,
    /// The new lease deadline (extend only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_deadline_ms: Option<i64>,
    /// The stable error code when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST …/ack`, `…/nack`, `…/extend`: one result per receipt, in order.
#[derive(Serialize, ToSchema)]
pub struct ReceiptResults {
    pub results: Vec<ReceiptResult>,
}

/// `POST …/redrive`.
#[derive(Serialize, ToSchema)]
pub struct Redriven {
    /// Dead letters moved back to the topic.
    pub moved: u64,
}

/// A subscription as created.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"name": "billing", "kind": "queue"})))]
pub struct SubscriptionCreated {
    pub name: String,
    pub kind: super::json::SubscriptionKind,
}

/// How redeliveries are delayed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BackoffView {
    Fixed { delay_ms: u64 },
    Exponential { initial_ms: u64, max_ms: u64 },
}

/// A queue subscription's settings and load.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub topic: String,
    pub name: String,
    /// Always `queue` (stream subscriptions are consumer groups).
    pub kind: String,
    pub ack_timeout_ms: u64,
    pub max_deliveries: u32,
    pub dead_letter_topic: Option<String>,
    pub backoff: BackoffView,
    pub mode: super::json::Mode,
    pub ordered: bool,
    pub push_endpoint: Option<String>,
    pub max_in_flight: u32,
    /// Messages leased now.
    pub leased: u64,
    /// Messages not yet acknowledged.
    pub outstanding: u64,
    pub lag: u64,
    pub redeliveries: u64,
    pub dead_letters: u64,
}

impl SubscriptionView {
    pub fn new(s: &SubscriptionSpec, load: &SubscriptionLoad) -> Self {
        SubscriptionView {
            topic: s.topic.clone(),
            name: s.name.clone(),
            kind: "queue".to_owned(),
            ack_timeout_ms: s.ack_timeout_ms,
            max_deliveries: s.max_deliveries,
            dead_letter_topic: s.dead_letter_topic.clone(),
            backoff: match s.backoff {
                BackoffSpec::Fixed { delay_ms } => BackoffView::Fixed { delay_ms },
                BackoffSpec::Exponential { initial_ms, max_ms } => {
                    BackoffView::Exponential { initial_ms, max_ms }
                }
            },
            mode: match s.mode {
                ModeSpec::AtLeastOnce => super::json::Mode::AtLeastOnce,
                ModeSpec::AtMostOnce => super::json::Mode::AtMostOnce,
            },
            ordered: s.ordered,
            push_endpoint: s.push_endpoint.clone(),
            max_in_flight: s.push_max_in_flight,
            leased: load.leased,
            outstanding: load.outstanding,
            lag: load.lag,
            redeliveries: load.redeliveries,
            dead_letters: load.dead_letters,
        }
    }
}

/// `GET /v1/topics/{topic}/subscriptions`.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// A topic, a partition and an offset.
#[derive(Serialize, ToSchema)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
}

/// A member's assignment: `POST /v1/groups/{group}/join` and `…/heartbeat`.
#[derive(Serialize, ToSchema)]
pub struct AssignmentView {
    pub member_id: String,
    pub generation: u32,
    /// Partitions held, each with the offset to read from.
    pub assignment: Vec<PartitionOffset>,
}

impl From<Assignment> for AssignmentView {
    fn from(a: Assignment) -> Self {
        let assignment = a
            .partitions
            .into_iter()
            .map(|(topic, partition, offset)| PartitionOffset {
                topic,
                partition,
                offset,
            })
            .collect();
        AssignmentView {
            member_id: a.member_id,
            generation: a.generation,
            assignment,
        }
    }
}

/// `POST /v1/groups/{group}/commit`: an empty object.
#[derive(Serialize, ToSchema, Default)]
pub struct Committed {}

/// A committed offset (`null`: nothing committed).
#[derive(Serialize, ToSchema)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: Option<i64>,
}

/// `GET /v1/groups/{group}/offsets`.
#[derive(Serialize, ToSchema)]
pub struct CommittedOffsets {
    pub offsets: Vec<CommittedOffset>,
}

/// `POST /v1/groups/{group}/reset-offsets`: the new offsets.
#[derive(Serialize, ToSchema)]
pub struct ResetOffsets {
    pub offsets: Vec<PartitionOffset>,
}

/// A topic and partition.
#[derive(Serialize, ToSchema)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// A group member and the partitions it holds.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub member_id: String,
    pub assignment: Vec<TopicPartition>,
}

/// A group's position on one partition.
#[derive(Serialize, ToSchema)]
pub struct GroupPartitionView {
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    pub end_offset: i64,
    pub lag: u64,
}

/// A consumer group: members with their partitions, committed offsets, lag.
#[derive(Serialize, ToSchema)]
pub struct GroupView {
    pub group: String,
    pub generation: u32,
    pub members: Vec<MemberView>,
    pub partitions: Vec<GroupPartitionView>,
}

impl From<&GroupInfo> for GroupView {
    fn from(g: &GroupInfo) -> Self {
        let members = g
            .members
            .iter()
            .map(|(id, held)| MemberView {
                member_id: id.clone(),
                assignment: held
                    .iter()
                    .map(|(t, p)| TopicPartition {
                        topic: t.clone(),
                        partition: *p,
                    })
                    .collect(),
            })
            .collect();
        let partitions = g
            .partitions
            .iter()
            .map(|l| GroupPartitionView {
                topic: l.topic.clone(),
                partition: l.partition,
                committed: l.committed,
                end_offset: l.end_offset,
                lag: l.lag,
            })
            .collect();
        GroupView {
            group: g.group.clone(),
            generation: g.generation,
            members,
            partitions,
        }
    }
}

/// `GET /v1/groups`.
#[derive(Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

/// A request record's status.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatusView {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl From<spool_types::RequestStatus> for RequestStatusView {
    fn from(s: spool_types::RequestStatus) -> Self {
        use spool_types::RequestStatus as S;
        match s {
            S::Pending => RequestStatusView::Pending,
            S::Running => RequestStatusView::Running,
            S::Succeeded => RequestStatusView::Succeeded,
            S::Failed => RequestStatusView::Failed,
        }
    }
}

/// `POST /v1/requests` (202): the new record's ID and status.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"id": "0190f3c2a1b07c3e9d2f4a5b6c7d8e9f", "status": "pending"})))]
pub struct Submitted {
    pub id: String,
    pub status: RequestStatusView,
}

/// A callback's delivery state.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatusView {
    Pending,
    Delivered,
    Failed,
}

/// Delivery of a request's callback.
#[derive(Serialize, ToSchema)]
pub struct CallbackView {
    pub status: CallbackStatusView,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub first_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
}

impl From<&CallbackState> for CallbackView {
    fn from(c: &CallbackState) -> Self {
        CallbackView {
            status: match c.status {
                CallbackStatus::Pending => CallbackStatusView::Pending,
                CallbackStatus::Delivered => CallbackStatusView::Delivered,
                CallbackStatus::Failed => CallbackStatusView::Failed,
            },
            attempts: c.attempts,
            next_attempt_ms: c.next_attempt_ms,
            first_attempt_ms: c.first_attempt_ms,
            last_error: c.last_error.clone(),
        }
    }
}

/// A request record (`GET /v1/requests/{id}`, complete, fail).
#[derive(Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub queue: String,
    pub status: RequestStatusView,
    /// Deliveries to workers so far.
    pub attempts: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the finished record is forgotten; `null` until it finishes.
    pub expires_ms: Option<i64>,
    /// The worker's result (succeeded only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
}

impl From<&RequestRecord> for RequestView {
    fn from(r: &RequestRecord) -> Self {
        RequestView {
            id: r.id.clone(),
            queue: r.queue.clone(),
            status: r.status.into(),
            attempts: r.attempts,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            expires_ms: r.status.is_final().then_some(r.expires_ms),
            result: r.result.clone(),
            error: r.error.clone(),
            callback_url: r.callback_url.clone(),
            callback: r.callback.as_ref().map(CallbackView::from),
        }
    }
}

/// An error (RFC 9457 `application/problem+json`) with the stable code the
/// binary protocol uses too.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "type": "https://spool.dev/errors/UNKNOWN_TOPIC", "title": "UNKNOWN_TOPIC",
    "status": 404, "detail": "no topic \"orders\"", "code": "UNKNOWN_TOPIC",
    "code_number": 300, "retry_after_ms": null
})))]
pub struct Problem {
    /// `https://spool.dev/errors/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The code's name.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The stable code (see the `code` enum); programs branch on this.
    pub code: String,
    /// The code's number in the binary protocol.
    pub code_number: u16,
    /// When retrying may succeed (also as `Retry-After`, in seconds).
    pub retry_after_ms: Option<u64>,
}
