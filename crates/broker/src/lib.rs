//! Spool's broker: topics with partitions over the durable log, produce with
//! back pressure, fetch, consumer groups and push cursors. It knows nothing of
//! the network, HTTP or async runtimes; time arrives as `now_ms`.
//!
//! - [`Broker`] owns topics ([`Topic`]), produce ([`Broker::start_produce`] +
//!   [`Broker::finish_produce`]), fetch, group calls and [`Broker::tick`].
//! - [`group::Coordinator`] is the consumer-group state machine (pure).
//! - [`push::PushCursor`] tracks a push subscription's positions and credit.
//! - [`meta`] persists topic definitions and committed offsets as an event log.
//! - [`BrokerError`] carries a stable [`spool_types::ErrorCode`] to the front ends.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod broker;
mod config;
mod error;
pub mod group;
pub mod meta;
pub mod offsets;
pub mod push;
mod records;
pub mod requests;
pub mod subscription;

pub use broker::{
    AckDone, AppendListener, Assignment, Broker, CommitDone, GroupInfo, GroupLag, NewRequest,
    OffsetReset, PartitionInfo, PendingAck, PendingProduce, Produced, RecoveryNotes, Routing,
    Topic, TopicDescription, DLQ_DELIVERIES_HEADER, DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER, DLQ_SUBSCRIPTION_HEADER, DLQ_TOPIC_HEADER, EMPTY_GROUP_RETENTION_MS,
    EVENTS_TOPIC, MESSAGE_ID_HEADER, QUEUE_FULL_RETRY_AFTER_MS,
};
pub use config::{OnFull, Retention, TopicConfig, TopicConfigPatch, TopicDurability};
pub use error::{BrokerError, Result};
pub use group::StartFrom;
