//! Value types shared by several messages: topic configuration, routing,
//! start positions, (topic, partition[, offset]) tuples, and the queue
//! subscription settings and leased messages shared by requests, responses
//! and pushes.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

/// What a full topic does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnFull {
    /// Refuse the produce with `QUEUE_FULL`.
    Reject,
    /// Delete the oldest messages to make room.
    DropOldest,
}

/// When messages are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retention {
    /// Only by the size and age limits.
    Limits,
    /// Also once every consumer has acknowledged them.
    WorkQueue,
}

/// When appended data is flushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Before acknowledging each produce.
    Always,
    /// At most this long after the append.
    Interval { interval_ms: u32 },
    /// Left to the operating system.
    Never,
}

/// Extension tag: duplicate-suppression window in ms (u64, big-endian).
pub const CONFIG_TAG_DEDUP_WINDOW_MS: u16 = 1;
/// Extension tag: depth at which the server warns (u64, big-endian; 0 = off).
pub const CONFIG_TAG_WARN_DEPTH: u16 = 2;

/// An unrecognised trailing configuration field, kept so a server can refuse
/// it by tag (a config setting silently ignored would surprise the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigExtension {
    pub tag: u16,
    pub value: Bytes,
}

/// Topic settings. In CreateTopic and AlterTopic an absent field means
/// "default" and "unchanged" respectively; a TopicDescription has them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: Option<OnFull>,
    pub retention: Option<Retention>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: Option<Durability>,
    pub segment_bytes: Option<u64>,
    /// Tagged fields added after protocol version 1. This version defines
    /// none; servers should answer any with `INVALID_CONFIG`.
    pub extensions: Vec<ConfigExtension>,
}

fn put_opt_u64(w: &mut Writer<'_>, v: Option<u64>) {
    w.presence(v.is_some());
    if let Some(v) = v {
        w.u64(v);
    }
}

fn get_opt_u64(r: &mut Reader, what: &'static str) -> Result<Option<u64>, DecodeError> {
    if r.presence(what)? {
        r.u64(what).map(Some)
    } else {
        Ok(None)
    }
}

impl Codec for ConfigExtension {
    const MIN_BYTES: usize = 2 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.tag);
        w.bytes("config.extension.value", &self.value)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConfigExtension {
            tag: r.u16("config.extension.tag")?,
            value: r.bytes("config.extension.value")?,
        })
    }
}

impl Codec for TopicConfig {
    // Eight absent presence bytes and an empty extension count.
    const MIN_BYTES: usize = 8 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        put_opt_u64(w, self.max_messages);
        put_opt_u64(w, self.max_bytes);
        w.presence(self.on_full.is_some());
        if let Some(on_full) = self.on_full {
            w.u8(match on_full {
                OnFull::Reject => 0,
                OnFull::DropOldest => 1,
            });
        }
        w.presence(self.retention.is_some());
        if let Some(retention) = self.retention {
            w.u8(match retention {
                Retention::Limits => 0,
                Retention::WorkQueue => 1,
            });
        }
        put_opt_u64(w, self.retention_bytes);
        put_opt_u64(w, self.retention_ms);
        w.presence(self.durability.is_some());
        match self.durability {
            None => {}
            Some(Durability::Always) => w.u8(0),
            Some(Durability::Interval { interval_ms }) => {
                w.u8(1);
                w.u32(interval_ms);
            }
            Some(Durability::Never) => w.u8(2),
        }
        put_opt_u64(w, self.segment_bytes);
        w.array("config.extensions", &self.extensions, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let max_messages = get_opt_u64(r, "config.max_messages")?;
        let max_bytes = get_opt_u64(r, "config.max_bytes")?;
        let on_full = if r.presence("config.on_full")? {
            Some(match r.tag("config.on_full")? {
                (0, _) => OnFull::Reject,
                (1, _) => OnFull::DropOldest,
                (v, at) => return Err(Reader::invalid("config.on_full", at, v.into())),
            })
        } else {
            None
        };
        let retention = if r.presence("config.retention")? {
            Some(match r.tag("config.retention")? {
                (0, _) => Retention::Limits,
                (1, _) => Retention::WorkQueue,
                (v, at) => return Err(Reader::invalid("config.retention", at, v.into())),
            })
        } else {
            None
        };
        let retention_bytes = get_opt_u64(r, "config.retention_bytes")?;
        let retention_ms = get_opt_u64(r, "config.retention_ms")?;
        let durability = if r.presence("config.durability")? {
            Some(match r.tag("config.durability")? {
                (0, _) => Durability::Always,
                (1, _) => Durability::Interval {
                    interval_ms: r.u32("config.durability.interval_ms")?,
                },
                (2, _) => Durability::Never,
                (v, at) => return Err(Reader::invalid("config.durability", at, v.into())),
            })
        } else {
            None
        };
        let segment_bytes = get_opt_u64(r, "config.segment_bytes")?;
        let extensions = r.array("config.extensions", ARRAY_LEN_MAX)?;
        Ok(TopicConfig {
            max_messages,
            max_bytes,
            on_full,
            retention,
            retention_bytes,
            retention_ms,
            durability,
            segment_bytes,
            extensions,
        })
    }
}

/// Where a produced batch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// This partition.
    Partition(u32),
    /// The partition this key hashes to (Kafka's default murmur2
    /// partitioner, so keys land where Kafka's Java client puts them).
    Key(Bytes),
    /// Whichever partition the server picks to spread load.
    Spread,
}

impl Codec for Routing {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            Routing::Partition(p) => {
                w.u8(0);
                w.u32(*p);
            }
            Routing::Key(key) => {
                w.u8(1);
                w.bytes("produce.routing.key", key)?;
            }
            Routing::Spread => w.u8(2),
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("produce.routing")? {
            (0, _) => Ok(Routing::Partition(r.u32("produce.routing.partition")?)),
            (1, _) => Ok(Routing::Key(r.bytes("produce.routing.key")?)),
            (2, _) => Ok(Routing::Spread),
            (v, at) => Err(Reader::invalid("produce.routing", at, v.into())),
        }
    }
}

/// Where a consumer-group member starts on a partition with no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupStart {
    Earliest,
    Latest,
}

impl Codec for GroupStart {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(match self {
            GroupStart::Earliest => 0,
            GroupStart::Latest => 1,
        });
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("join_group.start")? {
            (0, _) => Ok(GroupStart::Earliest),
            (1, _) => Ok(GroupStart::Latest),
            (v, at) => Err(Reader::invalid("join_group.start", at, v.into())),
        }
    }
}

/// Where a push subscription starts (when its group has no committed offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeStart {
    Earliest,
    Latest,
    /// This offset on every partition.
    Offset(u64),
}

impl Codec for SubscribeStart {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            SubscribeStart::Earliest => w.u8(0),
            SubscribeStart::Latest => w.u8(1),
            SubscribeStart::Offset(offset) => {
                w.u8(2);
                w.u64(*offset);
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("subscribe.start")? {
            (0, _) => Ok(SubscribeStart::Earliest),
            (1, _) => Ok(SubscribeStart::Latest),
            (2, _) => Ok(SubscribeStart::Offset(r.u64("subscribe.start.offset")?)),
            (v, at) => Err(Reader::invalid("subscribe.start", at, v.into())),
        }
    }
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl Codec for TopicPartition {
    const MIN_BYTES: usize = 2 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("topic", &self.topic)?;
        w.u32(self.partition);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(TopicPartition {
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
        })
    }
}

/// A position in a partition: an assignment's start, or an offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl Codec for PartitionOffset {
    const MIN_BYTES: usize = 2 + 4 + 8;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("topic", &self.topic)?;
        w.u32(self.partition);
        w.u64(self.offset);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(PartitionOffset {
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
        })
    }
}

/// Encodes a group assignment (Joined and HeartbeatOk share the layout).
pub(crate) fn put_assignment(
    w: &mut Writer<'_>,
    assignment: &[PartitionOffset],
) -> Result<(), EncodeError> {
    w.array("assignment", assignment, ARRAY_LEN_MAX)
}

pub(crate) fn get_assignment(r: &mut Reader) -> Result<Vec<PartitionOffset>, DecodeError> {
    r.array("assignment", ARRAY_LEN_MAX)
}

/// The two kinds of subscription over a stored topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// A work queue: competing consumers, per-message leases and acks.
    Queue,
    /// A consumer group (ordered stream processing, committed offsets).
    Stream,
}

impl Codec for SubscriptionKind {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(match self {
            SubscriptionKind::Queue => 0,
            SubscriptionKind::Stream => 1,
        });
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("subscription.kind")? {
            (0, _) => Ok(SubscriptionKind::Queue),
            (1, _) => Ok(SubscriptionKind::Stream),
            (v, at) => Err(Reader::invalid("subscription.kind", at, v.into())),
        }
    }
}

/// How long a failed (nacked or expired) message waits before redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// The same delay after every failure.
    Fixed { delay_ms: u64 },
    /// `initial_ms` doubled per earlier delivery, capped at `max_ms`.
    Exponential { initial_ms: u64, max_ms: u64 },
}

impl Codec for Backoff {
    // Tag plus the smaller variant's one u64.
    const MIN_BYTES: usize = 1 + 8;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            Backoff::Fixed { delay_ms } => {
                w.u8(0);
                w.u64(delay_ms);
            }
            Backoff::Exponential { initial_ms, max_ms } => {
                w.u8(1);
                w.u64(initial_ms);
                w.u64(max_ms);
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("subscription.backoff")? {
            (0, _) => Ok(Backoff::Fixed {
                delay_ms: r.u64("subscription.backoff.delay_ms")?,
            }),
            (1, _) => Ok(Backoff::Exponential {
                initial_ms: r.u64("subscription.backoff.initial_ms")?,
                max_ms: r.u64("subscription.backoff.max_ms")?,
            }),
            (v, at) => Err(Reader::invalid("subscription.backoff", at, v.into())),
        }
    }
}

/// When a queue subscription counts a message as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeliveryMode {
    /// Redelivered until acknowledged.
    #[default]
    AtLeastOnce,
    /// Acknowledged as it is handed out; never redelivered.
    AtMostOnce,
}

impl Codec for DeliveryMode {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(match self {
            DeliveryMode::AtLeastOnce => 0,
            DeliveryMode::AtMostOnce => 1,
        });
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("subscription.mode")? {
            (0, _) => Ok(DeliveryMode::AtLeastOnce),
            (1, _) => Ok(DeliveryMode::AtMostOnce),
            (v, at) => Err(Reader::invalid("subscription.mode", at, v.into())),
        }
    }
}

/// One message leased from a queue subscription (Receive and QueueDeliver).
///
/// Key, value and header values are slices of the received frame, not
/// copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    /// Names this lease in Ack, Nack and ExtendLease.
    pub receipt: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    /// How many times the message has been handed out, this time included.
    pub deliveries: u32,
    /// Ms since the Unix epoch after which the lease lapses and the message
    /// may go to another consumer.
    pub lease_deadline_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Record headers in stored order; keys may repeat.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl LeasedMessage {
    /// Bytes this message adds to a Messages or QueueDeliver body, so a
    /// server can fill a frame without overflowing it. A whole Messages
    /// frame is `4 + 7 + 2 + 4 + sum(encoded_len)` bytes, a QueueDeliver
    /// frame `4 + 7 + 4 + sum(encoded_len)`.
    pub fn encoded_len(&self) -> usize {
        let opt = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        Self::MIN_BYTES
            + self.receipt.len()
            + opt(&self.key)
            + opt(&self.value)
            + self
                .headers
                .iter()
                .map(|h| <(String, Option<Bytes>)>::MIN_BYTES + h.0.len() + opt(&h.1))
                .sum::<usize>()
    }
}

/// A record header: `string key`, `opt_bytes value`.
impl Codec for (String, Option<Bytes>) {
    const MIN_BYTES: usize = 2 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("message.headers.key", &self.0)?;
        w.opt_bytes("message.headers.value", self.1.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((
            r.string("message.headers.key")?,
            r.opt_bytes("message.headers.value")?,
        ))
    }
}

impl Codec for LeasedMessage {
    const MIN_BYTES: usize = 2 + 4 + 8 + 8 + 4 + 8 + 4 + 4 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("message.receipt", &self.receipt)?;
        w.u32(self.partition);
        w.u64(self.offset);
        w.i64(self.timestamp_ms);
        w.u32(self.deliveries);
        w.i64(self.lease_deadline_ms);
        w.opt_bytes("message.key", self.key.as_deref())?;
        w.opt_bytes("message.value", self.value.as_deref())?;
        w.array("message.headers", &self.headers, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LeasedMessage {
            receipt: r.string("message.receipt")?,
            partition: r.u32("message.partition")?,
            offset: r.u64("message.offset")?,
            timestamp_ms: r.i64("message.timestamp_ms")?,
            deliveries: r.u32("message.deliveries")?,
            lease_deadline_ms: r.i64("message.lease_deadline_ms")?,
            key: r.opt_bytes("message.key")?,
            value: r.opt_bytes("message.value")?,
            headers: r.array("message.headers", ARRAY_LEN_MAX)?,
        })
    }
}
