//! Value types shared by several messages: topic configuration, routing,
//! start positions, (topic, partition[, offset]) tuples, and the queue
//! subscription settings and leased messages shared by requests, responses
//! and pushes.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

wire_enum! {
    /// What a full topic does with a new message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OnFull: tag("config.on_full") {
        /// Refuse the produce with `QUEUE_FULL`.
        Reject = 0,
        /// Delete the oldest messages to make room.
        DropOldest = 1,
    }
}

wire_enum! {
    /// When messages are removed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Retention: tag("config.retention") {
        /// Only by the size and age limits.
        Limits = 0,
        /// Also once every consumer has acknowledged them.
        WorkQueue = 1,
    }
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

impl Codec for Durability {
    // Tag alone (Always, Never).
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            Durability::Always => w.u8(0),
            Durability::Interval { interval_ms } => {
                w.u8(1);
                w.u32(interval_ms);
            }
            Durability::Never => w.u8(2),
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("config.durability")? {
            (0, _) => Ok(Durability::Always),
            (1, _) => Ok(Durability::Interval {
                interval_ms: r.u32("config.durability.interval_ms")?,
            }),
            (2, _) => Ok(Durability::Never),
            (v, at) => Err(Reader::invalid("config.durability", at, v.into())),
        }
    }
}

/// Extension tag: duplicate-suppression window in ms (u64, big-endian).
pub const CONFIG_TAG_DEDUP_WINDOW_MS: u16 = 1;
/// Extension tag: depth at which the server warns (u64, big-endian; 0 = off).
pub const CONFIG_TAG_WARN_DEPTH: u16 = 2;
/// `replicas` (u64): in CreateTopic on a cluster, how many nodes hold each
/// partition (default: 3, or every node of a smaller cluster). Set once, at
/// creation; a single-node server refuses any value but 1.
pub const CONFIG_TAG_REPLICAS: u16 = 3;

wire_struct! {
    /// An unrecognised trailing configuration field, kept so a server can
    /// refuse it by tag (a config setting silently ignored would surprise
    /// the user).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ConfigExtension {
        pub tag: u16 => u16("config.extension.tag"),
        pub value: Bytes => bytes("config.extension.value"),
    }
}

wire_struct! {
    /// Topic settings. In CreateTopic and AlterTopic an absent field means
    /// "default" and "unchanged" respectively; a TopicDescription has them
    /// all.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct TopicConfig {
        pub max_messages: Option<u64> => opt_u64("config.max_messages"),
        pub max_bytes: Option<u64> => opt_u64("config.max_bytes"),
        pub on_full: Option<OnFull> => opt("config.on_full"),
        pub retention: Option<Retention> => opt("config.retention"),
        pub retention_bytes: Option<u64> => opt_u64("config.retention_bytes"),
        pub retention_ms: Option<u64> => opt_u64("config.retention_ms"),
        pub durability: Option<Durability> => opt("config.durability"),
        pub segment_bytes: Option<u64> => opt_u64("config.segment_bytes"),
        /// Tagged fields added after protocol version 1. This version
        /// defines none; servers should answer any with `INVALID_CONFIG`.
        pub extensions: Vec<ConfigExtension> => array("config.extensions", ARRAY_LEN_MAX),
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

wire_enum! {
    /// Where a consumer-group member starts on a partition with no
    /// committed offset.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum GroupStart: tag("join_group.start") {
        Earliest = 0,
        Latest = 1,
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

wire_struct! {
    /// A partition of a topic.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct TopicPartition {
        pub topic: String => string("topic"),
        pub partition: u32 => u32("partition"),
    }
}

wire_struct! {
    /// A position in a partition: an assignment's start, or an offset to
    /// commit.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct PartitionOffset {
        pub topic: String => string("topic"),
        pub partition: u32 => u32("partition"),
        pub offset: u64 => u64("offset"),
    }
}

wire_enum! {
    /// The two kinds of subscription over a stored topic.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SubscriptionKind: tag("subscription.kind") {
        /// A work queue: competing consumers, per-message leases and acks.
        Queue = 0,
        /// A consumer group (ordered stream processing, committed offsets).
        Stream = 1,
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

wire_enum! {
    /// When a queue subscription counts a message as done.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum DeliveryMode: tag("subscription.mode") {
        /// Redelivered until acknowledged.
        #[default]
        AtLeastOnce = 0,
        /// Acknowledged as it is handed out; never redelivered.
        AtMostOnce = 1,
    }
}

wire_struct! {
    /// One message leased from a queue subscription (Receive and
    /// QueueDeliver).
    ///
    /// Key, value and header values are slices of the received frame, not
    /// copies.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LeasedMessage {
        /// Names this lease in Ack, Nack and ExtendLease.
        pub receipt: String => string("message.receipt"),
        pub partition: u32 => u32("message.partition"),
        pub offset: u64 => u64("message.offset"),
        pub timestamp_ms: i64 => i64("message.timestamp_ms"),
        /// How many times the message has been handed out, this time
        /// included.
        pub deliveries: u32 => u32("message.deliveries"),
        /// Ms since the Unix epoch after which the lease lapses and the
        /// message may go to another consumer.
        pub lease_deadline_ms: i64 => i64("message.lease_deadline_ms"),
        pub key: Option<Bytes> => opt_bytes("message.key"),
        pub value: Option<Bytes> => opt_bytes("message.value"),
        /// Record headers in stored order; keys may repeat.
        pub headers: Vec<(String, Option<Bytes>)> => array("message.headers", ARRAY_LEN_MAX),
    }
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
