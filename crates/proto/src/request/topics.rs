//! Topic administration (ops 10–14).

use super::Body;
use crate::common::TopicConfig;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
}

impl Body for CreateTopic {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("create_topic.name", &self.name)?;
        w.u32(self.partitions);
        self.config.encode(w)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateTopic {
            name: r.string("create_topic.name")?,
            partitions: r.u32("create_topic.partitions")?,
            config: TopicConfig::decode(r)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopic {
    pub name: String,
}

impl Body for DeleteTopic {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("delete_topic.name", &self.name)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteTopic {
            name: r.string("delete_topic.name")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTopics {
    /// A topic pattern (`orders.*`); `None` lists every topic.
    pub pattern: Option<String>,
}

impl Body for ListTopics {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.opt_string("list_topics.pattern", self.pattern.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListTopics {
            pattern: r.opt_string("list_topics.pattern")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopic {
    pub name: String,
}

impl Body for DescribeTopic {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("describe_topic.name", &self.name)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeTopic {
            name: r.string("describe_topic.name")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTopic {
    pub name: String,
    /// Only the present fields change.
    pub config: TopicConfig,
}

impl Body for AlterTopic {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("alter_topic.name", &self.name)?;
        self.config.encode(w)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AlterTopic {
            name: r.string("alter_topic.name")?,
            config: TopicConfig::decode(r)?,
        })
    }
}
