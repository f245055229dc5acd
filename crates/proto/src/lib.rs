//! The Spool binary protocol codec: turns bytes into frames and frames into
//! typed messages, and back. It does no I/O; the server and client own the
//! sockets and call into this crate with buffers.
//!
//! Key types and functions:
//! - [`decode_frame`] / [`peek_frame_size`]: split a read buffer into
//!   [`Frame`]s (length prefix + [`FrameKind`], op, correlation id, body),
//!   refusing oversized lengths before anything is allocated.
//! - [`Request`], [`Response`] (a [`ResponseBody`] or a [`WireError`]) and
//!   [`Push`]: `decode(op, body)` and `encode(correlation_id, &mut BytesMut)`.
//! - [`Op`]: the operation-code table.
//! - [`FrameError`], [`DecodeError`], [`EncodeError`]: what went wrong, each
//!   mapping to a `spool_types::ErrorCode` to send back.
//!
//! Decoding never panics on any input and never allocates more than the
//! input could justify; record batches are sliced out of the input `Bytes`
//! without copying. The wire format is specified in `docs/protocol.md`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// First, so that the layout macros are in scope in the modules below.
#[macro_use]
mod macros;

mod cluster;
mod common;
mod error;
mod frame;
mod op;
mod push;
mod request;
mod response;
mod wire;

pub use cluster::{ClusterNode, ClusterPartition, ClusterStatus};
pub use common::{
    Backoff, ConfigExtension, DeliveryMode, Durability, GroupStart, LeasedMessage, OnFull,
    PartitionOffset, Retention, Routing, SubscribeStart, SubscriptionKind, TopicConfig,
    TopicPartition,
};
pub use common::{CONFIG_TAG_DEDUP_WINDOW_MS, CONFIG_TAG_REPLICAS, CONFIG_TAG_WARN_DEPTH};
pub use error::{DecodeError, EncodeError, FrameError, WireCode, WireError};
pub use frame::{
    decode_frame, peek_frame_size, starts_like_tls, Frame, FrameKind, WriteGather,
    FRAME_HEADER_BYTES, LENGTH_PREFIX_BYTES,
};
pub use op::Op;
pub use push::{Deliver, Push, QueueDeliver};
pub use request::{
    Ack, AlterSubscription, AlterTopic, CommitOffsets, CompleteRequest, CreateSubscription,
    CreateToken, CreateTopic, Credit, DeleteGroup, DeleteSubscription, DeleteTopic, DescribeGroup,
    DescribeTopic, ExtendLease, FailRequest, Fetch, FetchOffsets, FetchPartition, GetRequest,
    Heartbeat, Hello, JoinGroup, LeaveGroup, ListSubscriptions, ListTopics, Nack, OffsetTarget,
    Produce, Receive, Redrive, Request, ResetOffsets, RevokeToken, SettingChange, SubmitRequest,
    Subscribe, SubscribeQueue, Unsubscribe,
};
pub use response::{
    CommittedOffset, Fetched, FetchedPartition, GroupDescription, GroupMember, GroupPartition,
    HeartbeatOk, HelloOk, Joined, PartitionInfo, Produced, Response, ResponseBody,
    SubscriptionInfo, SubscriptionPush, TokenCreated, TokenInfo, TopicDescription, TopicSummary,
};
pub use spool_types::limits::FRAME_BYTES_MAX;
pub use wire::SHARED_BYTES_MIN;

/// The newest protocol version this build speaks. Version 2 added the
/// push settings to ListSubscriptions' `SubscriptionInfo`.
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest protocol version this build still speaks: a server accepts
/// clients of `PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION`, and a client
/// servers of that range.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// The first version whose `SubscriptionInfo` and `CreateSubscription`
/// carry the push settings.
pub const VERSION_SUBSCRIPTION_PUSH: u16 = 2;

/// First field of the Hello body: "SPOL" in ASCII. Lets a server tell a
/// Spool client from something else that connected to the port.
pub const MAGIC: u32 = 0x5350_4F4C;

/// Most entries in any array on the wire, except topic lists in JoinGroup
/// and Subscribe, which are capped at
/// `spool_types::limits::SUBSCRIPTION_TOPICS_MAX`. Together with the
/// remaining-bytes check it bounds what one frame can make a decoder
/// allocate.
pub const ARRAY_LEN_MAX: usize = 65_536;
