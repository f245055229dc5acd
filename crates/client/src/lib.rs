//! Async Rust client for Spool (tokio): admin calls, a batching producer, a
//! consumer-group member, a group-less topic reader and a push subscriber,
//! all over the binary protocol in `docs/protocol.md`.
//!
//! Key types:
//! - [`Client`] / [`ClientOptions`]: one TCP connection with the Hello
//!   handshake done; requests are pipelined and answers matched by
//!   correlation id. Admin calls: [`Client::create_topic`],
//!   [`Client::delete_topic`], [`Client::list_topics`],
//!   [`Client::describe_topic`], [`Client::alter_topic`], [`Client::ping`].
//! - [`Producer`] / [`Message`] / [`Delivered`]: batches per partition with
//!   linger and size limits, keeps a window of produce requests in flight,
//!   and reports each message's own offset or its batch's error;
//!   [`Producer::send_batch`] queues many messages with one future for all.
//! - [`decode_records`] / [`next_offset_after`]: fetched batches into
//!   records, and where the next fetch starts.
//! - [`GroupConsumer`]: join, `poll`, `commit`, `close`, with the safe
//!   partition hand-off the broker's group coordinator expects.
//! - [`TopicReader`]: reads all partitions of a name or pattern directly
//!   (no group), picking up topics created later, with its next fetch
//!   already on the way while the last answer is handled.
//! - [`Subscriber`]: a push subscription that grants credit back as the
//!   application takes deliveries.
//! - Work queues: [`Client::create_subscription`] ([`SubscriptionOptions`]),
//!   [`Client::receive`] leases [`LeasedMessage`]s, settled by receipt with
//!   [`Client::ack`], [`Client::nack`], [`Client::extend`]; dead letters go
//!   back with [`Client::redrive`]; [`QueueSubscriber`] is push delivery of
//!   leases with automatic credit.
//! - Request records: [`Client::submit_request`], [`Client::get_request`],
//!   [`Client::complete_request`], [`Client::fail_request`].
//! - Tokens (admin only): [`Client::create_token`] ([`TokenGrants`]),
//!   [`Client::list_tokens`], [`Client::revoke_token`]. A client presents
//!   its own token in [`ClientOptions::token`].
//! - [`Connect`] / [`Remote`]: where connections come from; the embedded
//!   broker (`spool-embedded`) implements the same trait, so code written
//!   against `impl Connect` runs on the in-app queue or a server unchanged.
//! - [`ClientError`]: I/O, protocol, local-check and server errors; a server
//!   error keeps its wire code, message and retry hint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spool_client::ClientError> {
//! use spool_client::{Client, ClientOptions, Message, Producer, ProducerOptions, TopicConfig};
//! let client = Client::connect("127.0.0.1:7420", ClientOptions::default()).await?;
//! client.create_topic("orders", 3, TopicConfig::default()).await?;
//! let producer = Producer::new(client.clone(), ProducerOptions::default());
//! let delivered = producer
//!     .send("orders", Message::new("hello").with_key("customer-7"))
//!     .await?
//!     .await?;
//! println!("stored at {}/{}", delivered.partition, delivered.offset);
//! # Ok(()) }
//! ```

mod client;
mod connect;
mod consumer;
mod error;
mod fetcher;
mod groups;
mod producer;
mod queue_subscriber;
mod reader;
mod records;
mod requests;
mod subscriber;
mod subscription;
mod subscriptions;
mod tls;
mod tokens;

pub use client::{Client, ClientOptions, CONNECT_TIMEOUT};
pub use connect::{Connect, Remote};
pub use consumer::{GroupConsumer, GroupOptions};
pub use error::ClientError;
pub use fetcher::TopicPartition;
pub use producer::{
    BatchDeliveryFuture, Delivered, DeliveryFuture, Message, Producer, ProducerOptions,
    DELIVER_AT_HEADER, MESSAGE_ID_HEADER,
};
pub use queue_subscriber::{QueueSubscribeOptions, QueueSubscriber};
pub use reader::{ReadStart, TopicReader};
pub use records::{decode_records, next_offset_after, ConsumedRecord, DecodedBatches};
pub use requests::{RequestStatus, CONTENT_TYPE_HEADER, REQUEST_ID_HEADER, WORKERS_SUBSCRIPTION};
pub use subscriber::{Delivery, SubscribeOptions, Subscriber};
pub use subscriptions::{
    ReceiptResults, SubscriptionChanges, SubscriptionOptions, MAX_DELIVERIES_DEFAULT,
};
pub use tls::TlsOptions;
pub use tokens::TokenGrants;

pub use serde_json;
pub use spool_proto::{
    Backoff, DeliveryMode, Durability, GroupDescription, GroupMember, GroupPartition, GroupStart,
    LeasedMessage, OffsetTarget, OnFull, PartitionInfo, PartitionOffset, Retention, SettingChange,
    SubscribeStart, SubscriptionInfo, SubscriptionKind, SubscriptionPush, TokenInfo, TopicConfig,
    TopicDescription, TopicSummary, WireCode, WireError,
};
pub use spool_types::ErrorCode;
