//! JSON shapes of the HTTP API and their conversion to broker calls.
//! Values travel as UTF-8 `value` or binary `value_base64` (keys likewise).

use super::{ApiError, ApiResult};
use crate::ops::FetchedPartition;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use spool_batch::NewRecord;
use spool_broker::subscription::{
    BackoffSpec, LeasedMessage, ModeSpec, SubscriptionPatch, SubscriptionSpec, DELIVER_AT_HEADER,
};
use spool_broker::{
    OnFull, Retention, TopicConfig, TopicDescription, TopicDurability, MESSAGE_ID_HEADER,
};
use std::collections::BTreeMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: Option<u32>,
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: Option<String>,
    pub retention: Option<String>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: Option<String>,
    pub interval_ms: Option<u32>,
    pub segment_bytes: Option<u64>,
    pub dedup_window_ms: Option<u64>,
    pub warn_depth: Option<u64>,
}

impl CreateTopic {
    pub fn into_config(self) -> ApiResult<(TopicConfig, u32)> {
        let mut c = TopicConfig {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            ..TopicConfig::default()
        };
        c.on_full = match self.on_full.as_deref() {
            None | Some("reject") => OnFull::Reject,
            Some("drop_oldest") | Some("drop-oldest") => OnFull::DropOldest,
            Some(o) => {
                return Err(ApiError::invalid(format!(
                    "on_full {o:?}: use \"reject\" or \"drop_oldest\""
                )))
            }
        };
        c.retention = match self.retention.as_deref() {
            None | Some("limits") => Retention::Limits,
            Some("work_queue") | Some("work-queue") => Retention::WorkQueue,
            Some(o) => {
                return Err(ApiError::invalid(format!(
                    "retention {o:?}: use \"limits\" or \"work_queue\""
                )))
            }
        };
        c.durability = match self.durability.as_deref() {
            None | Some("always") => TopicDurability::Always,
            Some("interval") => TopicDurability::Interval {
                interval_ms: self.interval_ms.unwrap_or(100),
            },
            Some("never") => TopicDurability::Never,
            Some(o) => {
                return Err(ApiError::invalid(format!(
                    "durability {o:?}: use \"always\", \"interval\" or \"never\""
                )))
            }
        };
        if let Some(v) = self.segment_bytes {
            c.segment_bytes = v;
        }
        if let Some(v) = self.dedup_window_ms {
            c.dedup_window_ms = v;
        }
        c.warn_depth = self.warn_depth;
        Ok((c, self.partitions.unwrap_or(1)))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub pattern: Option<String>,
}

#[derive(Deserialize)]
pub struct FetchQuery {
    pub partition: Option<u32>,
    pub offset: Option<i64>,
    pub max_bytes: Option<usize>,
    /// How long to wait for messages when there are none (long poll).
    pub wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub value: Option<String>,
    pub value_base64: Option<String>,
    pub key: Option<String>,
    pub key_base64: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub partition: Option<u32>,
    /// Duplicate suppression: a repeated ID within the window is not stored again.
    pub message_id: Option<String>,
    pub delay_ms: Option<u64>,
    pub deliver_at_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
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
            .map(|d| now_ms + d.min(i64::MAX as u64 / 2) as i64));
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

/// A value as JSON: UTF-8 text as `value`, anything else as `value_base64`.
fn put_bytes(obj: &mut serde_json::Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(name.to_owned(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.to_owned(), json!(s));
            }
            Err(_) => {
                obj.insert(format!("{name}_base64"), json!(B64.encode(b)));
            }
        },
    }
}

fn headers_json(headers: &[(String, Option<&[u8]>)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in headers {
        let v = v.map(|v| match std::str::from_utf8(v) {
            Ok(s) => json!(s),
            Err(_) => json!({ "base64": B64.encode(v) }),
        });
        map.insert(k.clone(), v.unwrap_or(Value::Null));
    }
    Value::Object(map)
}

pub fn leased(m: &LeasedMessage) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("receipt".into(), json!(m.receipt));
    obj.insert("partition".into(), json!(m.partition));
    obj.insert("offset".into(), json!(m.offset));
    put_bytes(&mut obj, "key", m.key.as_deref());
    put_bytes(&mut obj, "value", m.value.as_deref());
    let headers: Vec<(String, Option<&[u8]>)> = m
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_deref()))
        .collect();
    obj.insert("headers".into(), headers_json(&headers));
    obj.insert("deliveries".into(), json!(m.deliveries));
    obj.insert("timestamp_ms".into(), json!(m.timestamp_ms));
    obj.insert("lease_deadline_ms".into(), json!(m.lease_deadline_ms));
    Value::Object(obj)
}

/// Messages of a fetch, skipping records below the asked offset.
pub fn fetched(partition: u32, read: &FetchedPartition, from: i64) -> ApiResult<Value> {
    let mut messages = Vec::new();
    for batch in spool_batch::split_batches(&read.batches) {
        let batch = batch.map_err(|e| ApiError(e.into()))?;
        let h = spool_batch::BatchHeader::parse(batch).map_err(|e| ApiError(e.into()))?;
        for r in spool_batch::records(batch, &h) {
            let r = r.map_err(|e| ApiError(e.into()))?;
            let offset = h.base_offset + r.offset_delta as i64;
            if offset < from {
                continue;
            }
            let mut obj = serde_json::Map::new();
            obj.insert("partition".into(), json!(partition));
            obj.insert("offset".into(), json!(offset));
            obj.insert(
                "timestamp_ms".into(),
                json!(h.base_timestamp + r.timestamp_delta),
            );
            put_bytes(&mut obj, "key", r.key);
            put_bytes(&mut obj, "value", r.value);
            let headers: Vec<(String, Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|hd| (hd.key.to_owned(), hd.value))
                .collect();
            obj.insert("headers".into(), headers_json(&headers));
            messages.push(Value::Object(obj));
        }
    }
    Ok(json!({
        "messages": messages,
        "next_offset": read.next_offset,
        "start_offset": read.start_offset,
        "end_offset": read.end_offset,
    }))
}

pub fn describe(d: &TopicDescription) -> Value {
    let partitions: Vec<Value> = d
        .partitions
        .iter()
        .map(|p| json!({"partition": p.partition, "start_offset": p.start_offset, "end_offset": p.end_offset, "messages": p.messages, "bytes": p.bytes}))
        .collect();
    json!({"name": d.name, "config": d.config, "partitions": partitions})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub name: String,
    pub kind: Option<String>,
    pub ack_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    pub dead_letter_topic: Option<String>,
    pub backoff_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub mode: Option<String>,
    pub ordered: Option<bool>,
    pub push_endpoint: Option<String>,
    pub max_in_flight: Option<u32>,
}

impl CreateSubscription {
    pub fn into_spec(self, topic: &str) -> ApiResult<SubscriptionSpec> {
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
        spec.mode = match self.mode.as_deref() {
            None | Some("at_least_once") => ModeSpec::AtLeastOnce,
            Some("at_most_once") => ModeSpec::AtMostOnce,
            Some(o) => {
                return Err(ApiError::invalid(format!(
                    "mode {o:?}: use \"at_least_once\" or \"at_most_once\""
                )))
            }
        };
        spec.ordered = self.ordered.unwrap_or(false);
        spec.push_endpoint = self.push_endpoint;
        if let Some(n) = self.max_in_flight {
            spec.push_max_in_flight = n;
        }
        Ok(spec)
    }
}

/// PATCH on a subscription: only the fields present change; `null`
/// removes the dead-letter topic or the push endpoint. The mode and
/// ordering are fixed at creation, so they are unknown fields here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterSubscription {
    pub ack_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub dead_letter_topic: Option<Option<String>>,
    pub backoff_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub push_endpoint: Option<Option<String>>,
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

pub fn spec(s: &SubscriptionSpec) -> Value {
    json!({
        "topic": s.topic, "name": s.name, "kind": "queue", "ack_timeout_ms": s.ack_timeout_ms,
        "max_deliveries": s.max_deliveries, "dead_letter_topic": s.dead_letter_topic,
        "backoff": s.backoff, "mode": s.mode, "ordered": s.ordered,
        "push_endpoint": s.push_endpoint, "max_in_flight": s.push_max_in_flight,
    })
}

/// A subscription as the list shows it: its settings and its load (the
/// same fields `spool subscription list` prints).
pub fn subscription(s: &SubscriptionSpec, load: &crate::ops::SubscriptionLoad) -> Value {
    let mut v = spec(s);
    v["leased"] = json!(load.leased);
    v["outstanding"] = json!(load.outstanding);
    v["lag"] = json!(load.lag);
    v["redeliveries"] = json!(load.redeliveries);
    v["dead_letters"] = json!(load.dead_letters);
    v
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    pub max: Option<u32>,
    pub wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipts {
    pub receipts: Vec<String>,
    pub delay_ms: Option<u64>,
    pub error: Option<String>,
    pub extend_ms: Option<u64>,
}

/// A topic settings change: the fields of `CreateTopic` except `name` and
/// `partitions`, each optional (0 clears a limit).
pub fn alter_patch(v: &Value) -> ApiResult<spool_broker::TopicConfigPatch> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("expected a JSON object"))?;
    let mut p = spool_broker::TopicConfigPatch::default();
    for (k, val) in obj {
        let num = || {
            val.as_u64()
                .ok_or_else(|| ApiError::invalid(format!("{k}: expected a whole number")))
        };
        let text = || {
            val.as_str()
                .ok_or_else(|| ApiError::invalid(format!("{k}: expected a string")))
        };
        match k.as_str() {
            "max_messages" => p.max_messages = Some(num()?),
            "max_bytes" => p.max_bytes = Some(num()?),
            "retention_bytes" => p.retention_bytes = Some(num()?),
            "retention_ms" => p.retention_ms = Some(num()?),
            "segment_bytes" => p.segment_bytes = Some(num()?),
            "dedup_window_ms" => p.dedup_window_ms = Some(num()?),
            "warn_depth" => p.warn_depth = Some(num()?),
            "on_full" => {
                p.on_full = Some(match text()? {
                    "reject" => OnFull::Reject,
                    "drop_oldest" | "drop-oldest" => OnFull::DropOldest,
                    o => {
                        return Err(ApiError::invalid(format!(
                            "on_full {o:?}: use \"reject\" or \"drop_oldest\""
                        )))
                    }
                })
            }
            "retention" => {
                p.retention = Some(match text()? {
                    "limits" => Retention::Limits,
                    "work_queue" | "work-queue" => Retention::WorkQueue,
                    o => {
                        return Err(ApiError::invalid(format!(
                            "retention {o:?}: use \"limits\" or \"work_queue\""
                        )))
                    }
                })
            }
            "durability" => {
                p.durability = Some(match text()? {
                    "always" => TopicDurability::Always,
                    "interval" => TopicDurability::Interval {
                        interval_ms: obj
                            .get("interval_ms")
                            .and_then(Value::as_u64)
                            .unwrap_or(100)
                            .min(u32::MAX as u64) as u32,
                    },
                    "never" => TopicDurability::Never,
                    o => {
                        return Err(ApiError::invalid(format!(
                            "durability {o:?}: use \"always\", \"interval\" or \"never\""
                        )))
                    }
                })
            }
            "interval_ms" => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown topic setting {other:?}"
                )))
            }
        }
    }
    Ok(p)
}
