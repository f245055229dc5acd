//! Consumer groups: membership and committed offsets (ops 30–34), and
//! their administration (ops 35–38).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use crate::common::{GroupStart, PartitionOffset, TopicPartition};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JoinGroup {
        pub group: String => string("join_group.group"),
        /// `None` on first join; the server assigns one.
        pub member_id: Option<String> => opt_string("join_group.member_id"),
        /// Topic names or wildcard patterns.
        pub topics: Vec<String> => string_array("join_group.topics", SUBSCRIPTION_TOPICS_MAX),
        pub session_timeout_ms: u32 => u32("join_group.session_timeout_ms"),
        pub start: GroupStart => codec,
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Heartbeat {
        pub group: String => string("heartbeat.group"),
        pub member_id: String => string("heartbeat.member_id"),
        pub generation: u32 => u32("heartbeat.generation"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LeaveGroup {
        pub group: String => string("leave_group.group"),
        pub member_id: String => string("leave_group.member_id"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CommitOffsets {
        pub group: String => string("commit_offsets.group"),
        pub member_id: String => string("commit_offsets.member_id"),
        pub generation: u32 => u32("commit_offsets.generation"),
        /// The next offset to consume on each partition.
        pub offsets: Vec<PartitionOffset> => array("commit_offsets.offsets", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FetchOffsets {
        pub group: String => string("fetch_offsets.group"),
        pub partitions: Vec<TopicPartition> => array("fetch_offsets.partitions", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    /// Describes one consumer group: members, assignment, committed
    /// offsets and lag.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DescribeGroup {
        pub group: String => string("describe_group.group"),
    }
}

/// Where RESET_OFFSETS moves a group on each partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetTarget {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// This offset, clamped into each partition's range.
    Offset(u64),
    /// The first stored batch with a message at or after this time, in ms
    /// since the Unix epoch (the end where there is none).
    Timestamp(i64),
}

impl Codec for OffsetTarget {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            OffsetTarget::Earliest => w.u8(0),
            OffsetTarget::Latest => w.u8(1),
            OffsetTarget::Offset(offset) => {
                w.u8(2);
                w.u64(offset);
            }
            OffsetTarget::Timestamp(ms) => {
                w.u8(3);
                w.i64(ms);
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("reset_offsets.to")? {
            (0, _) => Ok(OffsetTarget::Earliest),
            (1, _) => Ok(OffsetTarget::Latest),
            (2, _) => Ok(OffsetTarget::Offset(r.u64("reset_offsets.to.offset")?)),
            (3, _) => Ok(OffsetTarget::Timestamp(
                r.i64("reset_offsets.to.timestamp_ms")?,
            )),
            (v, at) => Err(Reader::invalid("reset_offsets.to", at, v.into())),
        }
    }
}

wire_struct! {
    /// Sets a group's committed offsets on every partition of a topic;
    /// only while the group has no members.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ResetOffsets {
        pub group: String => string("reset_offsets.group"),
        pub topic: String => string("reset_offsets.topic"),
        pub to: OffsetTarget => codec,
    }
}

wire_struct! {
    /// Deletes a group without members, and its committed offsets.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DeleteGroup {
        pub group: String => string("delete_group.group"),
    }
}
