//! Consumer groups: membership and committed offsets (ops 30–34).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use super::Body;
use crate::common::{GroupStart, PartitionOffset, TopicPartition};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    pub group: String,
    /// `None` on first join; the server assigns one.
    pub member_id: Option<String>,
    /// Topic names or wildcard patterns.
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    pub start: GroupStart,
}

impl Body for JoinGroup {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("join_group.group", &self.group)?;
        w.opt_string("join_group.member_id", self.member_id.as_deref())?;
        w.string_array("join_group.topics", &self.topics, SUBSCRIPTION_TOPICS_MAX)?;
        w.u32(self.session_timeout_ms);
        self.start.encode(w)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(JoinGroup {
            group: r.string("join_group.group")?,
            member_id: r.opt_string("join_group.member_id")?,
            topics: r.string_array("join_group.topics", SUBSCRIPTION_TOPICS_MAX)?,
            session_timeout_ms: r.u32("join_group.session_timeout_ms")?,
            start: GroupStart::decode(r)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
}

impl Body for Heartbeat {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("heartbeat.group", &self.group)?;
        w.string("heartbeat.member_id", &self.member_id)?;
        w.u32(self.generation);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Heartbeat {
            group: r.string("heartbeat.group")?,
            member_id: r.string("heartbeat.member_id")?,
            generation: r.u32("heartbeat.generation")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroup {
    pub group: String,
    pub member_id: String,
}

impl Body for LeaveGroup {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("leave_group.group", &self.group)?;
        w.string("leave_group.member_id", &self.member_id)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LeaveGroup {
            group: r.string("leave_group.group")?,
            member_id: r.string("leave_group.member_id")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffsets {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    /// The next offset to consume on each partition.
    pub offsets: Vec<PartitionOffset>,
}

impl Body for CommitOffsets {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("commit_offsets.group", &self.group)?;
        w.string("commit_offsets.member_id", &self.member_id)?;
        w.u32(self.generation);
        w.array("commit_offsets.offsets", &self.offsets, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CommitOffsets {
            group: r.string("commit_offsets.group")?,
            member_id: r.string("commit_offsets.member_id")?,
            generation: r.u32("commit_offsets.generation")?,
            offsets: r.array("commit_offsets.offsets", ARRAY_LEN_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOffsets {
    pub group: String,
    pub partitions: Vec<TopicPartition>,
}

impl Body for FetchOffsets {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("fetch_offsets.group", &self.group)?;
        w.array("fetch_offsets.partitions", &self.partitions, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchOffsets {
            group: r.string("fetch_offsets.group")?,
            partitions: r.array("fetch_offsets.partitions", ARRAY_LEN_MAX)?,
        })
    }
}
