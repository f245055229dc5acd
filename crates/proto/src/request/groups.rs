//! Consumer groups: membership and committed offsets (ops 30–34).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use crate::common::{GroupStart, PartitionOffset, TopicPartition};
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
