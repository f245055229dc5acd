//! Value types shared by several messages: topic configuration, routing,
//! start positions and (topic, partition[, offset]) tuples.

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
