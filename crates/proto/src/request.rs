//! Requests: client-to-server frames (kind 0).

use bytes::{Bytes, BytesMut};
use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;
use std::fmt;

use crate::common::{
    Backoff, DeliveryMode, GroupStart, PartitionOffset, Routing, SubscribeStart, SubscriptionKind,
    TopicConfig, TopicPartition,
};
use crate::error::{DecodeError, EncodeError};
use crate::frame::{encode_frame, encode_frame_parts, FrameKind};
use crate::op::{op_for, Op};
use crate::wire::{Codec, Reader, Writer};
use crate::{ARRAY_LEN_MAX, MAGIC};

/// The handshake; must be the first frame on a connection.
///
/// The magic ([`MAGIC`]) is written by the encoder and checked by the
/// decoder, so it is not a field.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    pub client_id: String,
    /// Credential, if the server requires one.
    pub token: Option<String>,
}

impl Hello {
    /// The version a server speaking `server_min..=server_max` should pick:
    /// the highest both sides support, or `None` (answer
    /// `UNSUPPORTED_VERSION`).
    pub fn negotiate(&self, server_min: u16, server_max: u16) -> Option<u16> {
        let high = self.max_version.min(server_max);
        let low = self.min_version.max(server_min);
        (low <= high).then_some(high)
    }
}

// Written by hand so the token never reaches a log through `{:?}`.
impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("client_id", &self.client_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopic {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTopics {
    /// A topic pattern (`orders.*`); `None` lists every topic.
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopic {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterTopic {
    pub name: String,
    /// Only the present fields change.
    pub config: TopicConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    pub topic: String,
    pub routing: Routing,
    /// One Kafka RecordBatch v2, opaque here (validated by the server).
    pub batch: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// How long to wait for data if none is available (long poll).
    pub max_wait_ms: u32,
    /// Cap on the whole response's batch bytes.
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Cap on this partition's batch bytes.
    pub max_bytes: u32,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroup {
    pub group: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffsets {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    /// The next offset to consume on each partition.
    pub offsets: Vec<PartitionOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOffsets {
    pub group: String,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Chosen by the client, unique on the connection; pushes carry it.
    pub subscription_id: u32,
    /// Topic names or wildcard patterns.
    pub topics: Vec<String>,
    /// Consumer group whose committed offsets to start from, if any.
    pub group: Option<String>,
    pub start: SubscribeStart,
    /// Initial message credit.
    pub credit_messages: u32,
    /// Initial byte credit.
    pub credit_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub subscription_id: u32,
    /// Added to the subscription's message credit.
    pub messages: u32,
    /// Added to the subscription's byte credit.
    pub bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub subscription_id: u32,
}

/// Creates a subscription on a topic. For [`SubscriptionKind::Stream`] the
/// queue settings are ignored: stream subscriptions are consumer groups,
/// created implicitly by JoinGroup, so the server only validates the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSubscription {
    pub topic: String,
    pub name: String,
    pub kind: SubscriptionKind,
    /// How long a lease lasts before the message may go to another consumer.
    pub ack_timeout_ms: u32,
    /// Deliveries after which a failing message is dead-lettered; 0 = unlimited.
    pub max_deliveries: u32,
    pub dead_letter_topic: Option<String>,
    pub backoff: Backoff,
    pub mode: DeliveryMode,
    /// At most one message per record key in flight, each key in order.
    pub ordered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteSubscription {
    pub topic: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSubscriptions {
    /// `None` lists the subscriptions of every topic.
    pub topic: Option<String>,
}

/// Leases messages from a queue subscription (pull, with long poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receive {
    pub topic: String,
    pub name: String,
    /// Most messages to lease.
    pub max: u32,
    /// How long to wait for a message if none is ready.
    pub wait_ms: u32,
}

/// Acknowledges leased messages: they are done and never delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub topic: String,
    pub name: String,
    pub receipts: Vec<String>,
}

/// Gives leased messages back for redelivery (a failure: counts towards
/// max deliveries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub topic: String,
    pub name: String,
    pub receipts: Vec<String>,
    /// Earliest redelivery, from now; the backoff applies if it is longer.
    pub delay_ms: u32,
    /// Why processing failed; carried into dead-letter headers and events.
    pub error: Option<String>,
}

/// Moves lease deadlines to now + `extend_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendLease {
    pub topic: String,
    pub name: String,
    pub receipts: Vec<String>,
    pub extend_ms: u32,
}

/// Republishes a subscription's dead letters to its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub topic: String,
    pub name: String,
}

/// Push delivery of leased messages from a queue subscription, under the
/// same credit rules as [`Subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeQueue {
    /// Chosen by the client, unique on the connection; pushes carry it.
    pub subscription_id: u32,
    pub topic: String,
    pub name: String,
    pub credit_messages: u32,
    pub credit_bytes: u32,
}

/// Hands in an asynchronous request: its payload goes on the request queue
/// `queue` (created on first use, with a `workers` queue subscription) and
/// a record tracks it. Answered at once with the request's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    pub queue: String,
    /// The bytes a worker receives, unchanged.
    pub payload: Bytes,
    /// The payload is JSON text (workers see `spool-content-type:
    /// application/json`).
    pub json: bool,
    /// Where the final record is POSTed, if anywhere.
    pub callback_url: Option<String>,
}

/// Reads a request record, optionally waiting for it to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub id: String,
    /// 0 answers at once; otherwise the answer waits until the record is
    /// final or this long has passed.
    pub wait_ms: u32,
}

/// A worker finished a request: its result is stored and its message
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteRequest {
    pub id: String,
    /// The result as JSON text. A `text` field (u32 length), since results
    /// may be far larger than a `string`'s 64 KiB.
    pub result_json: String,
}

/// A worker failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRequest {
    pub id: String,
    /// Why; a `text` field like [`CompleteRequest::result_json`].
    pub error: String,
    /// Try again (with the queue's backoff, up to its max deliveries)
    /// rather than fail for good.
    pub retry: bool,
}

/// Makes an access token (admin only). The server answers with the token
/// itself, the only time it is ever shown; it keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    /// Unique among the server's tokens; names it in `ListTokens`,
    /// `RevokeToken` and the logs.
    pub name: String,
    /// Topic names or patterns the token may publish to (and submit
    /// requests on).
    pub produce: Vec<String>,
    /// Topic names or patterns the token may consume from.
    pub consume: Vec<String>,
    /// Everything else too: topics, subscriptions, tokens.
    pub admin: bool,
}

/// Withdraws a token (admin only); connections using it are refused from
/// their next request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeToken {
    pub name: String,
}

/// A decoded request body. New ops will add variants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    Hello(Hello),
    CreateTopic(CreateTopic),
    DeleteTopic(DeleteTopic),
    ListTopics(ListTopics),
    DescribeTopic(DescribeTopic),
    AlterTopic(AlterTopic),
    Produce(Produce),
    Fetch(Fetch),
    JoinGroup(JoinGroup),
    Heartbeat(Heartbeat),
    LeaveGroup(LeaveGroup),
    CommitOffsets(CommitOffsets),
    FetchOffsets(FetchOffsets),
    Subscribe(Subscribe),
    Credit(Credit),
    Unsubscribe(Unsubscribe),
    CreateSubscription(CreateSubscription),
    DeleteSubscription(DeleteSubscription),
    ListSubscriptions(ListSubscriptions),
    Receive(Receive),
    Ack(Ack),
    Nack(Nack),
    ExtendLease(ExtendLease),
    Redrive(Redrive),
    SubscribeQueue(SubscribeQueue),
    SubmitRequest(SubmitRequest),
    GetRequest(GetRequest),
    CompleteRequest(CompleteRequest),
    FailRequest(FailRequest),
    CreateToken(CreateToken),
    /// Lists the tokens (admin only), never their secrets.
    ListTokens,
    RevokeToken(RevokeToken),
    Ping,
}

impl Request {
    pub fn op(&self) -> Op {
        match self {
            Request::Hello(_) => Op::Hello,
            Request::CreateTopic(_) => Op::CreateTopic,
            Request::DeleteTopic(_) => Op::DeleteTopic,
            Request::ListTopics(_) => Op::ListTopics,
            Request::DescribeTopic(_) => Op::DescribeTopic,
            Request::AlterTopic(_) => Op::AlterTopic,
            Request::Produce(_) => Op::Produce,
            Request::Fetch(_) => Op::Fetch,
            Request::JoinGroup(_) => Op::JoinGroup,
            Request::Heartbeat(_) => Op::Heartbeat,
            Request::LeaveGroup(_) => Op::LeaveGroup,
            Request::CommitOffsets(_) => Op::CommitOffsets,
            Request::FetchOffsets(_) => Op::FetchOffsets,
            Request::Subscribe(_) => Op::Subscribe,
            Request::Credit(_) => Op::Credit,
            Request::Unsubscribe(_) => Op::Unsubscribe,
            Request::CreateSubscription(_) => Op::CreateSubscription,
            Request::DeleteSubscription(_) => Op::DeleteSubscription,
            Request::ListSubscriptions(_) => Op::ListSubscriptions,
            Request::Receive(_) => Op::Receive,
            Request::Ack(_) => Op::Ack,
            Request::Nack(_) => Op::Nack,
            Request::ExtendLease(_) => Op::ExtendLease,
            Request::Redrive(_) => Op::Redrive,
            Request::SubscribeQueue(_) => Op::SubscribeQueue,
            Request::SubmitRequest(_) => Op::SubmitRequest,
            Request::GetRequest(_) => Op::GetRequest,
            Request::CompleteRequest(_) => Op::CompleteRequest,
            Request::FailRequest(_) => Op::FailRequest,
            Request::CreateToken(_) => Op::CreateToken,
            Request::ListTokens => Op::ListTokens,
            Request::RevokeToken(_) => Op::RevokeToken,
            Request::Ping => Op::Ping,
        }
    }

    /// Decodes the body of a request frame with this op. Byte fields
    /// (`Produce::batch`, routing keys) are slices of `body`, not copies.
    pub fn decode(op: u16, body: Bytes) -> Result<Request, DecodeError> {
        let op = op_for(op, FrameKind::Request)?;
        let mut r = Reader::new(body);
        let request = match op {
            Op::Hello => Request::Hello(Hello::decode(&mut r)?),
            Op::CreateTopic => Request::CreateTopic(CreateTopic::decode(&mut r)?),
            Op::DeleteTopic => Request::DeleteTopic(DeleteTopic {
                name: r.string("delete_topic.name")?,
            }),
            Op::ListTopics => Request::ListTopics(ListTopics {
                pattern: r.opt_string("list_topics.pattern")?,
            }),
            Op::DescribeTopic => Request::DescribeTopic(DescribeTopic {
                name: r.string("describe_topic.name")?,
            }),
            Op::AlterTopic => Request::AlterTopic(AlterTopic {
                name: r.string("alter_topic.name")?,
                config: TopicConfig::decode(&mut r)?,
            }),
            Op::Produce => Request::Produce(Produce {
                topic: r.string("produce.topic")?,
                routing: Routing::decode(&mut r)?,
                batch: r.bytes("produce.batch")?,
            }),
            Op::Fetch => Request::Fetch(Fetch {
                max_wait_ms: r.u32("fetch.max_wait_ms")?,
                max_bytes: r.u32("fetch.max_bytes")?,
                partitions: r.array("fetch.partitions", ARRAY_LEN_MAX)?,
            }),
            Op::JoinGroup => Request::JoinGroup(JoinGroup {
                group: r.string("join_group.group")?,
                member_id: r.opt_string("join_group.member_id")?,
                topics: r.string_array("join_group.topics", SUBSCRIPTION_TOPICS_MAX)?,
                session_timeout_ms: r.u32("join_group.session_timeout_ms")?,
                start: GroupStart::decode(&mut r)?,
            }),
            Op::Heartbeat => Request::Heartbeat(Heartbeat {
                group: r.string("heartbeat.group")?,
                member_id: r.string("heartbeat.member_id")?,
                generation: r.u32("heartbeat.generation")?,
            }),
            Op::LeaveGroup => Request::LeaveGroup(LeaveGroup {
                group: r.string("leave_group.group")?,
                member_id: r.string("leave_group.member_id")?,
            }),
            Op::CommitOffsets => Request::CommitOffsets(CommitOffsets {
                group: r.string("commit_offsets.group")?,
                member_id: r.string("commit_offsets.member_id")?,
                generation: r.u32("commit_offsets.generation")?,
                offsets: r.array("commit_offsets.offsets", ARRAY_LEN_MAX)?,
            }),
            Op::FetchOffsets => Request::FetchOffsets(FetchOffsets {
                group: r.string("fetch_offsets.group")?,
                partitions: r.array("fetch_offsets.partitions", ARRAY_LEN_MAX)?,
            }),
            Op::Subscribe => Request::Subscribe(Subscribe {
                subscription_id: r.u32("subscribe.subscription_id")?,
                topics: r.string_array("subscribe.topics", SUBSCRIPTION_TOPICS_MAX)?,
                group: r.opt_string("subscribe.group")?,
                start: SubscribeStart::decode(&mut r)?,
                credit_messages: r.u32("subscribe.credit_messages")?,
                credit_bytes: r.u32("subscribe.credit_bytes")?,
            }),
            Op::Credit => Request::Credit(Credit {
                subscription_id: r.u32("credit.subscription_id")?,
                messages: r.u32("credit.messages")?,
                bytes: r.u32("credit.bytes")?,
            }),
            Op::Unsubscribe => Request::Unsubscribe(Unsubscribe {
                subscription_id: r.u32("unsubscribe.subscription_id")?,
            }),
            Op::CreateSubscription => {
                Request::CreateSubscription(CreateSubscription::decode(&mut r)?)
            }
            Op::DeleteSubscription => Request::DeleteSubscription(DeleteSubscription {
                topic: r.string("delete_subscription.topic")?,
                name: r.string("delete_subscription.name")?,
            }),
            Op::ListSubscriptions => Request::ListSubscriptions(ListSubscriptions {
                topic: r.opt_string("list_subscriptions.topic")?,
            }),
            Op::Receive => Request::Receive(Receive {
                topic: r.string("receive.topic")?,
                name: r.string("receive.name")?,
                max: r.u32("receive.max")?,
                wait_ms: r.u32("receive.wait_ms")?,
            }),
            Op::Ack => Request::Ack(Ack {
                topic: r.string("ack.topic")?,
                name: r.string("ack.name")?,
                receipts: r.string_array("ack.receipts", ARRAY_LEN_MAX)?,
            }),
            Op::Nack => Request::Nack(Nack {
                topic: r.string("nack.topic")?,
                name: r.string("nack.name")?,
                receipts: r.string_array("nack.receipts", ARRAY_LEN_MAX)?,
                delay_ms: r.u32("nack.delay_ms")?,
                error: r.opt_string("nack.error")?,
            }),
            Op::ExtendLease => Request::ExtendLease(ExtendLease {
                topic: r.string("extend_lease.topic")?,
                name: r.string("extend_lease.name")?,
                receipts: r.string_array("extend_lease.receipts", ARRAY_LEN_MAX)?,
                extend_ms: r.u32("extend_lease.extend_ms")?,
            }),
            Op::Redrive => Request::Redrive(Redrive {
                topic: r.string("redrive.topic")?,
                name: r.string("redrive.name")?,
            }),
            Op::SubscribeQueue => Request::SubscribeQueue(SubscribeQueue {
                subscription_id: r.u32("subscribe_queue.subscription_id")?,
                topic: r.string("subscribe_queue.topic")?,
                name: r.string("subscribe_queue.name")?,
                credit_messages: r.u32("subscribe_queue.credit_messages")?,
                credit_bytes: r.u32("subscribe_queue.credit_bytes")?,
            }),
            Op::SubmitRequest => Request::SubmitRequest(SubmitRequest {
                queue: r.string("submit_request.queue")?,
                payload: r.bytes("submit_request.payload")?,
                json: r.bool("submit_request.json")?,
                callback_url: r.opt_string("submit_request.callback_url")?,
            }),
            Op::GetRequest => Request::GetRequest(GetRequest {
                id: r.string("get_request.id")?,
                wait_ms: r.u32("get_request.wait_ms")?,
            }),
            Op::CompleteRequest => Request::CompleteRequest(CompleteRequest {
                id: r.string("complete_request.id")?,
                result_json: r.text("complete_request.result_json")?,
            }),
            Op::FailRequest => Request::FailRequest(FailRequest {
                id: r.string("fail_request.id")?,
                error: r.text("fail_request.error")?,
                retry: r.bool("fail_request.retry")?,
            }),
            Op::CreateToken => Request::CreateToken(CreateToken {
                name: r.string("create_token.name")?,
                produce: r.string_array("create_token.produce", SUBSCRIPTION_TOPICS_MAX)?,
                consume: r.string_array("create_token.consume", SUBSCRIPTION_TOPICS_MAX)?,
                admin: r.bool("create_token.admin")?,
            }),
            Op::ListTokens => Request::ListTokens,
            Op::RevokeToken => Request::RevokeToken(RevokeToken {
                name: r.string("revoke_token.name")?,
            }),
            Op::Ping => Request::Ping,
            // op_for only returns request ops; push ops cannot reach here.
            Op::Deliver | Op::SubscriptionClosed | Op::QueueDeliver => {
                return Err(DecodeError::UnknownOp {
                    op: op.as_u16(),
                    kind: FrameKind::Request,
                })
            }
        };
        r.finish(op.name())?;
        Ok(request)
    }

    /// Appends this request as one whole frame. On error `buf` is unchanged.
    pub fn encode(&self, correlation_id: u32, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(
            buf,
            FrameKind::Request,
            self.op().as_u16(),
            correlation_id,
            |w| self.encode_body(w),
        )
    }

    /// The frame [`Request::encode`] writes, as parts to be written in
    /// order: a large produced batch is a part of its own, shared with the
    /// caller's buffer, not copied.
    pub fn encode_parts(&self, correlation_id: u32) -> Result<Vec<Bytes>, EncodeError> {
        encode_frame_parts(
            FrameKind::Request,
            self.op().as_u16(),
            correlation_id,
            |w| self.encode_body(w),
        )
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            Request::Hello(m) => m.encode(w),
            Request::CreateTopic(m) => m.encode(w),
            Request::DeleteTopic(m) => w.string("delete_topic.name", &m.name),
            Request::ListTopics(m) => w.opt_string("list_topics.pattern", m.pattern.as_deref()),
            Request::DescribeTopic(m) => w.string("describe_topic.name", &m.name),
            Request::AlterTopic(m) => {
                w.string("alter_topic.name", &m.name)?;
                m.config.encode(w)
            }
            Request::Produce(m) => {
                w.string("produce.topic", &m.topic)?;
                m.routing.encode(w)?;
                w.shared_bytes("produce.batch", &m.batch)
            }
            Request::Fetch(m) => {
                w.u32(m.max_wait_ms);
                w.u32(m.max_bytes);
                w.array("fetch.partitions", &m.partitions, ARRAY_LEN_MAX)
            }
            Request::JoinGroup(m) => {
                w.string("join_group.group", &m.group)?;
                w.opt_string("join_group.member_id", m.member_id.as_deref())?;
                w.string_array("join_group.topics", &m.topics, SUBSCRIPTION_TOPICS_MAX)?;
                w.u32(m.session_timeout_ms);
                m.start.encode(w)
            }
            Request::Heartbeat(m) => {
                w.string("heartbeat.group", &m.group)?;
                w.string("heartbeat.member_id", &m.member_id)?;
                w.u32(m.generation);
                Ok(())
            }
            Request::LeaveGroup(m) => {
                w.string("leave_group.group", &m.group)?;
                w.string("leave_group.member_id", &m.member_id)
            }
            Request::CommitOffsets(m) => {
                w.string("commit_offsets.group", &m.group)?;
                w.string("commit_offsets.member_id", &m.member_id)?;
                w.u32(m.generation);
                w.array("commit_offsets.offsets", &m.offsets, ARRAY_LEN_MAX)
            }
            Request::FetchOffsets(m) => {
                w.string("fetch_offsets.group", &m.group)?;
                w.array("fetch_offsets.partitions", &m.partitions, ARRAY_LEN_MAX)
            }
            Request::Subscribe(m) => {
                w.u32(m.subscription_id);
                w.string_array("subscribe.topics", &m.topics, SUBSCRIPTION_TOPICS_MAX)?;
                w.opt_string("subscribe.group", m.group.as_deref())?;
                m.start.encode(w)?;
                w.u32(m.credit_messages);
                w.u32(m.credit_bytes);
                Ok(())
            }
            Request::Credit(m) => {
                w.u32(m.subscription_id);
                w.u32(m.messages);
                w.u32(m.bytes);
                Ok(())
            }
            Request::Unsubscribe(m) => {
                w.u32(m.subscription_id);
                Ok(())
            }
            Request::CreateSubscription(m) => m.encode(w),
            Request::DeleteSubscription(m) => {
                w.string("delete_subscription.topic", &m.topic)?;
                w.string("delete_subscription.name", &m.name)
            }
            Request::ListSubscriptions(m) => {
                w.opt_string("list_subscriptions.topic", m.topic.as_deref())
            }
            Request::Receive(m) => {
                w.string("receive.topic", &m.topic)?;
                w.string("receive.name", &m.name)?;
                w.u32(m.max);
                w.u32(m.wait_ms);
                Ok(())
            }
            Request::Ack(m) => {
                w.string("ack.topic", &m.topic)?;
                w.string("ack.name", &m.name)?;
                w.string_array("ack.receipts", &m.receipts, ARRAY_LEN_MAX)
            }
            Request::Nack(m) => {
                w.string("nack.topic", &m.topic)?;
                w.string("nack.name", &m.name)?;
                w.string_array("nack.receipts", &m.receipts, ARRAY_LEN_MAX)?;
                w.u32(m.delay_ms);
                w.opt_string("nack.error", m.error.as_deref())
            }
            Request::ExtendLease(m) => {
                w.string("extend_lease.topic", &m.topic)?;
                w.string("extend_lease.name", &m.name)?;
                w.string_array("extend_lease.receipts", &m.receipts, ARRAY_LEN_MAX)?;
                w.u32(m.extend_ms);
                Ok(())
            }
            Request::Redrive(m) => {
                w.string("redrive.topic", &m.topic)?;
                w.string("redrive.name", &m.name)
            }
            Request::SubscribeQueue(m) => {
                w.u32(m.subscription_id);
                w.string("subscribe_queue.topic", &m.topic)?;
                w.string("subscribe_queue.name", &m.name)?;
                w.u32(m.credit_messages);
                w.u32(m.credit_bytes);
                Ok(())
            }
            Request::SubmitRequest(m) => {
                w.string("submit_request.queue", &m.queue)?;
                w.bytes("submit_request.payload", &m.payload)?;
                w.bool(m.json);
                w.opt_string("submit_request.callback_url", m.callback_url.as_deref())
            }
            Request::GetRequest(m) => {
                w.string("get_request.id", &m.id)?;
                w.u32(m.wait_ms);
                Ok(())
            }
            Request::CompleteRequest(m) => {
                w.string("complete_request.id", &m.id)?;
                w.text("complete_request.result_json", &m.result_json)
            }
            Request::FailRequest(m) => {
                w.string("fail_request.id", &m.id)?;
                w.text("fail_request.error", &m.error)?;
                w.bool(m.retry);
                Ok(())
            }
            Request::CreateToken(m) => {
                w.string("create_token.name", &m.name)?;
                w.string_array("create_token.produce", &m.produce, SUBSCRIPTION_TOPICS_MAX)?;
                w.string_array("create_token.consume", &m.consume, SUBSCRIPTION_TOPICS_MAX)?;
                w.bool(m.admin);
                Ok(())
            }
            Request::RevokeToken(m) => w.string("revoke_token.name", &m.name),
            Request::ListTokens | Request::Ping => Ok(()),
        }
    }
}

impl Codec for Hello {
    const MIN_BYTES: usize = 4 + 2 + 2 + 2 + 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(MAGIC);
        w.u16(self.min_version);
        w.u16(self.max_version);
        w.string("hello.client_id", &self.client_id)?;
        w.opt_string("hello.token", self.token.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let at = r.offset();
        let magic = r.u32("hello.magic")?;
        if magic != MAGIC {
            // Not a Spool client at all; say so rather than misparse the rest.
            return Err(Reader::invalid("hello.magic", at, magic.into()));
        }
        Ok(Hello {
            min_version: r.u16("hello.min_version")?,
            max_version: r.u16("hello.max_version")?,
            client_id: r.string("hello.client_id")?,
            token: r.opt_string("hello.token")?,
        })
    }
}

impl Codec for CreateTopic {
    const MIN_BYTES: usize = 2 + 4 + TopicConfig::MIN_BYTES;

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

impl Codec for FetchPartition {
    const MIN_BYTES: usize = 2 + 4 + 8 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("fetch.partitions.topic", &self.topic)?;
        w.u32(self.partition);
        w.u64(self.offset);
        w.u32(self.max_bytes);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchPartition {
            topic: r.string("fetch.partitions.topic")?,
            partition: r.u32("fetch.partitions.partition")?,
            offset: r.u64("fetch.partitions.offset")?,
            max_bytes: r.u32("fetch.partitions.max_bytes")?,
        })
    }
}

impl Codec for CreateSubscription {
    const MIN_BYTES: usize =
        2 + 2 + SubscriptionKind::MIN_BYTES + 4 + 4 + 1 + Backoff::MIN_BYTES + 1 + 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("create_subscription.topic", &self.topic)?;
        w.string("create_subscription.name", &self.name)?;
        self.kind.encode(w)?;
        w.u32(self.ack_timeout_ms);
        w.u32(self.max_deliveries);
        w.opt_string(
            "create_subscription.dead_letter_topic",
            self.dead_letter_topic.as_deref(),
        )?;
        self.backoff.encode(w)?;
        self.mode.encode(w)?;
        w.bool(self.ordered);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateSubscription {
            topic: r.string("create_subscription.topic")?,
            name: r.string("create_subscription.name")?,
            kind: SubscriptionKind::decode(r)?,
            ack_timeout_ms: r.u32("create_subscription.ack_timeout_ms")?,
            max_deliveries: r.u32("create_subscription.max_deliveries")?,
            dead_letter_topic: r.opt_string("create_subscription.dead_letter_topic")?,
            backoff: Backoff::decode(r)?,
            mode: DeliveryMode::decode(r)?,
            ordered: r.bool("create_subscription.ordered")?,
        })
    }
}
