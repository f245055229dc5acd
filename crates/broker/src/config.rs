//! Topic settings: limits (back pressure), retention and durability.

use crate::error::{BrokerError, Result};
use serde::{Deserialize, Serialize};
use spool_log::{Durability, LogConfig};
use spool_types::limits::{
    PARTITIONS_MAX, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use spool_types::ErrorCode;

/// What a full topic does with a new batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the batch with `QUEUE_FULL`; nothing of it is written.
    #[default]
    Reject,
    /// Accept the batch and discard the oldest messages to make room.
    DropOldest,
}

/// When stored messages are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Kept until the size/age retention limits remove them.
    #[default]
    Limits,
    /// Released once every consumer group on the topic has consumed them,
    /// so `max_messages`/`max_bytes` bound the depth of the queue.
    WorkQueue,
}

/// Durability as stored in topic metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum TopicDurability {
    #[default]
    Always,
    Interval {
        interval_ms: u32,
    },
    Never,
}

impl TopicDurability {
    pub fn to_log(self) -> Durability {
        match self {
            TopicDurability::Always => Durability::Always,
            TopicDurability::Interval { interval_ms } => Durability::Interval { interval_ms },
            TopicDurability::Never => Durability::Never,
        }
    }
}

/// The full settings of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: OnFull,
    pub retention: Retention,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: TopicDurability,
    pub segment_bytes: u64,
    /// Window in which a repeated message ID (header `spool-msg-id`) is
    /// recognised as a duplicate and not stored again.
    #[serde(default = "default_dedup_window_ms")]
    pub dedup_window_ms: u64,
    /// Depth (retained messages) at which a warning is logged, so operators
    /// hear before producers are refused.
    #[serde(default)]
    pub warn_depth: Option<u64>,
}

/// Default duplicate-suppression window: 2 minutes.
pub const DEDUP_WINDOW_MS_DEFAULT: u64 = 120_000;
pub use spool_types::limits::DEDUP_WINDOW_MS_MAX;

fn default_dedup_window_ms() -> u64 {
    DEDUP_WINDOW_MS_DEFAULT
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            max_messages: None,
            max_bytes: None,
            on_full: OnFull::Reject,
            retention: Retention::Limits,
            retention_bytes: None,
            retention_ms: None,
            durability: TopicDurability::Always,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            dedup_window_ms: DEDUP_WINDOW_MS_DEFAULT,
            warn_depth: None,
        }
    }
}

/// A partial change to a topic's settings: `Some` fields replace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigPatch {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: Option<OnFull>,
    pub retention: Option<Retention>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub durability: Option<TopicDurability>,
    pub segment_bytes: Option<u64>,
    pub dedup_window_ms: Option<u64>,
    pub warn_depth: Option<u64>,
}

impl TopicConfig {
    pub fn apply(&self, patch: &TopicConfigPatch) -> TopicConfig {
        // Zero clears an optional limit, so limits can be removed again.
        let limit = |new: Option<u64>, old: Option<u64>| match new {
            Some(0) => None,
            Some(v) => Some(v),
            None => old,
        };
        TopicConfig {
            max_messages: limit(patch.max_messages, self.max_messages),
            max_bytes: limit(patch.max_bytes, self.max_bytes),
            on_full: patch.on_full.unwrap_or(self.on_full),
            retention: patch.retention.unwrap_or(self.retention),
            retention_bytes: limit(patch.retention_bytes, self.retention_bytes),
            retention_ms: limit(patch.retention_ms, self.retention_ms),
            durability: patch.durability.unwrap_or(self.durability),
            segment_bytes: patch.segment_bytes.unwrap_or(self.segment_bytes),
            dedup_window_ms: patch.dedup_window_ms.unwrap_or(self.dedup_window_ms),
            warn_depth: limit(patch.warn_depth, self.warn_depth),
        }
    }

    /// The settings with every optional limit given as 0 read as "no
    /// limit", as everywhere else (flags, the binary protocol, alter): a
    /// `max_messages` of 0 taken literally would make a topic that is
    /// always full.
    pub fn normalized(mut self) -> TopicConfig {
        for limit in [
            &mut self.max_messages,
            &mut self.max_bytes,
            &mut self.retention_bytes,
            &mut self.retention_ms,
            &mut self.warn_depth,
        ] {
            if *limit == Some(0) {
                *limit = None;
            }
        }
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BrokerError::new(ErrorCode::InvalidConfig, m));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}"
            ));
        }
        if self.dedup_window_ms > DEDUP_WINDOW_MS_MAX {
            return bad(format!(
                "dedup_window_ms must be at most {DEDUP_WINDOW_MS_MAX}"
            ));
        }
        if let TopicDurability::Interval { interval_ms: 0 } = self.durability {
            return bad("durability interval_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The log settings for one partition of this topic.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            durability: self.durability.to_log(),
            segment_bytes: self.segment_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            ..LogConfig::default()
        }
    }
}

pub fn validate_partitions(partitions: u32) -> Result<()> {
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(BrokerError::new(
            ErrorCode::InvalidConfig,
            format!("partitions must be between 1 and {PARTITIONS_MAX}, not {partitions}"),
        ));
    }
    Ok(())
}
