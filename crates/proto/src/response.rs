//! Responses: server-to-client answers (kind 1).
//!
//! Every response body starts with a `u16` error code. 0 means success and
//! the op's own fields follow; anything else is followed only by a message
//! and a retry hint ([`WireError`]). That is why a failed response decodes
//! even for an op this build does not know.

use bytes::{Bytes, BytesMut};

use crate::cluster::ClusterStatus;
use crate::common::{
    Backoff, DeliveryMode, LeasedMessage, PartitionOffset, TopicConfig, TopicPartition,
};
use crate::error::{DecodeError, EncodeError, WireCode, WireError};
use crate::frame::{encode_frame, encode_frame_parts, FrameKind};
use crate::op::{not_for, op_for, Op};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;
use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HelloOk {
        /// The version chosen for this connection.
        pub version: u16 => u16("hello_ok.version"),
        pub server_id: String => string("hello_ok.server_id"),
        /// Largest frame the server accepts or sends.
        pub max_frame_bytes: u32 => u32("hello_ok.max_frame_bytes"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TopicSummary {
        pub name: String => string("topics.name"),
        pub partitions: u32 => u32("topics.partitions"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TopicDescription {
        pub name: String => string("topic_description.name"),
        /// Every field present: the effective settings.
        pub config: TopicConfig => codec,
        pub partitions: Vec<PartitionInfo> =>
            array("topic_description.partitions", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PartitionInfo {
        pub partition: u32 => u32("partition_info.partition"),
        /// First offset still stored.
        pub start_offset: u64 => u64("partition_info.start_offset"),
        /// Offset the next message will get.
        pub end_offset: u64 => u64("partition_info.end_offset"),
        pub messages: u64 => u64("partition_info.messages"),
        pub bytes: u64 => u64("partition_info.bytes"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Produced {
        pub partition: u32 => u32("produced.partition"),
        pub base_offset: u64 => u64("produced.base_offset"),
        pub last_offset: u64 => u64("produced.last_offset"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Fetched {
        pub partitions: Vec<FetchedPartition> => array("fetched.partitions", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FetchedPartition {
        pub topic: String => string("fetched.topic"),
        pub partition: u32 => u32("fetched.partition"),
        /// Why this partition returned nothing; `None` on success.
        pub error: Option<WireCode> => code("fetched.error_code"),
        pub start_offset: u64 => u64("fetched.start_offset"),
        pub end_offset: u64 => u64("fetched.end_offset"),
        /// Zero or more whole RecordBatches, concatenated; a slice of the
        /// received frame, not a copy (and, encoded into parts, not copied
        /// into the frame either).
        pub batches: Bytes => shared_bytes("fetched.batches"),
    }
}

impl FetchedPartition {
    /// Bytes this entry adds to a Fetched body, for a server filling a
    /// response up to the frame limit. A whole Fetched frame is
    /// `4 + 7 + 2 + 4 + sum(encoded_len)` bytes.
    pub fn encoded_len(&self) -> usize {
        Self::MIN_BYTES + self.topic.len() + self.batches.len()
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Joined {
        pub member_id: String => string("joined.member_id"),
        pub generation: u32 => u32("joined.generation"),
        /// Partitions owned by this member, each with the offset to start
        /// at (the committed offset, or the group's start position).
        pub assignment: Vec<PartitionOffset> => array("assignment", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HeartbeatOk {
        /// Differs from the member's generation after a rebalance.
        pub generation: u32 => u32("heartbeat_ok.generation"),
        pub assignment: Vec<PartitionOffset> => array("assignment", ARRAY_LEN_MAX),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    /// `None` if the group has committed nothing here. On the wire an i64,
    /// -1 for none, so offsets above `i64::MAX` cannot be sent.
    pub offset: Option<u64>,
}

wire_struct! {
    /// A consumer group's committed offset on one partition, with the
    /// partition's end and the lag between them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GroupPartition {
        pub topic: String => string("group.partitions.topic"),
        pub partition: u32 => u32("group.partitions.partition"),
        pub committed: u64 => u64("group.partitions.committed"),
        pub end_offset: u64 => u64("group.partitions.end_offset"),
        /// `end_offset − committed`, or 0.
        pub lag: u64 => u64("group.partitions.lag"),
    }
}

wire_struct! {
    /// A member of a consumer group and the partitions it holds.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GroupMember {
        pub member_id: String => string("group.members.member_id"),
        pub assignment: Vec<TopicPartition> => array("group.members.assignment", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    /// A consumer group: its members and committed offsets.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GroupDescription {
        pub group: String => string("group.name"),
        pub generation: u32 => u32("group.generation"),
        pub members: Vec<GroupMember> => array("group.members", ARRAY_LEN_MAX),
        pub partitions: Vec<GroupPartition> => array("group.partitions", ARRAY_LEN_MAX),
    }
}

/// A queue subscription's settings and current load.
///
/// Its layout depends on the connection's protocol version: version 2 on
/// appends the push settings (`push`). A version-1 peer neither sends nor
/// reads them: decoded at version 1 `push` is `None`, and a server answers
/// a version-1 client with `push` removed ([`Response::for_version`]).
/// Encoding writes the push settings exactly when `push` is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub topic: String,
    pub name: String,
    pub ack_timeout_ms: u32,
    /// 0 = unlimited.
    pub max_deliveries: u32,
    pub dead_letter_topic: Option<String>,
    pub backoff: Backoff,
    pub mode: DeliveryMode,
    pub ordered: bool,
    /// Messages leased right now.
    pub leased: u64,
    /// Messages read from the topic and not yet done (ready, delayed
    /// or leased). The server scans the topic in windows, so this
    /// counts at most the current window, not the whole backlog.
    pub outstanding: u64,
    /// The backlog: messages from the oldest one not yet done to the
    /// end of the topic, over all partitions (messages done above the
    /// oldest undone one still count until it is done, as with a
    /// committed offset).
    pub lag: u64,
    /// Deliveries beyond the first, since the server started.
    pub redeliveries: u64,
    /// Messages dead-lettered, since the server started.
    pub dead_letters: u64,
    /// The push settings (version 2 on); `None` from a version-1 server.
    pub push: Option<SubscriptionPush>,
}

wire_struct! {
    /// Where and how a queue subscription pushes its messages over HTTP.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SubscriptionPush {
        /// The URL each message is POSTed to; `None` = no HTTP push.
        pub endpoint: Option<String> => opt_string("subscriptions.push_endpoint"),
        /// Most pushes at once.
        pub max_in_flight: u32 => u32("subscriptions.max_in_flight"),
    }
}

impl SubscriptionPush {
    /// Writes `push` at the end of a layout that carries it (version
    /// [`crate::VERSION_SUBSCRIPTION_PUSH`] on): nothing for an earlier
    /// peer, whose message was shaped with `push: None`.
    pub(crate) fn encode_trailing(
        push: Option<&SubscriptionPush>,
        w: &mut Writer<'_>,
    ) -> Result<(), EncodeError> {
        push.map_or(Ok(()), |push| push.encode(w))
    }

    /// Reads the trailing push settings if the reader's version has them.
    pub(crate) fn decode_trailing(r: &mut Reader) -> Result<Option<SubscriptionPush>, DecodeError> {
        if r.version() >= crate::VERSION_SUBSCRIPTION_PUSH {
            SubscriptionPush::decode(r).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Codec for SubscriptionInfo {
    /// The version-1 layout, the smaller one.
    const MIN_BYTES: usize = 2 + 2 + 4 + 4 + 1 + Backoff::MIN_BYTES + 1 + 1 + 8 * 5;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("subscriptions.topic", &self.topic)?;
        w.string("subscriptions.name", &self.name)?;
        w.u32(self.ack_timeout_ms);
        w.u32(self.max_deliveries);
        w.opt_string(
            "subscriptions.dead_letter_topic",
            self.dead_letter_topic.as_deref(),
        )?;
        self.backoff.encode(w)?;
        self.mode.encode(w)?;
        w.bool(self.ordered);
        for count in [
            self.leased,
            self.outstanding,
            self.lag,
            self.redeliveries,
            self.dead_letters,
        ] {
            w.u64(count);
        }
        SubscriptionPush::encode_trailing(self.push.as_ref(), w)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SubscriptionInfo {
            topic: r.string("subscriptions.topic")?,
            name: r.string("subscriptions.name")?,
            ack_timeout_ms: r.u32("subscriptions.ack_timeout_ms")?,
            max_deliveries: r.u32("subscriptions.max_deliveries")?,
            dead_letter_topic: r.opt_string("subscriptions.dead_letter_topic")?,
            backoff: Backoff::decode(r)?,
            mode: DeliveryMode::decode(r)?,
            ordered: r.bool("subscriptions.ordered")?,
            leased: r.u64("subscriptions.leased")?,
            outstanding: r.u64("subscriptions.outstanding")?,
            lag: r.u64("subscriptions.lag")?,
            redeliveries: r.u64("subscriptions.redeliveries")?,
            dead_letters: r.u64("subscriptions.dead_letters")?,
            push: SubscriptionPush::decode_trailing(r)?,
        })
    }
}

wire_struct! {
    /// CreateToken's answer: the new token, shown this once.
    #[derive(Clone, PartialEq, Eq)]
    pub struct TokenCreated {
        pub name: String => string("token_created.name"),
        /// The secret itself; the server keeps only its hash.
        pub token: String => string("token_created.token"),
    }
}

// Written by hand so the token never reaches a log through `{:?}`.
impl std::fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCreated")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

wire_struct! {
    /// One token as ListTokens shows it: its name and permissions, never
    /// the secret.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TokenInfo {
        pub name: String => string("tokens.name"),
        pub produce: Vec<String> => string_array("tokens.produce", SUBSCRIPTION_TOPICS_MAX),
        pub consume: Vec<String> => string_array("tokens.consume", SUBSCRIPTION_TOPICS_MAX),
        pub admin: bool => bool("tokens.admin"),
        /// When it was made, in ms since the Unix epoch.
        pub created_ms: u64 => u64("tokens.created_ms"),
    }
}

/// The body of a successful response. Ops with nothing to return still get
/// their own unit variant, so the body alone says which op it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseBody {
    HelloOk(HelloOk),
    TopicCreated {
        name: String,
    },
    TopicDeleted,
    Topics(Vec<TopicSummary>),
    TopicDescription(TopicDescription),
    TopicAltered,
    Produced(Produced),
    Fetched(Fetched),
    Joined(Joined),
    HeartbeatOk(HeartbeatOk),
    LeftGroup,
    OffsetsCommitted,
    Offsets(Vec<CommittedOffset>),
    Groups(Vec<GroupDescription>),
    GroupDescription(GroupDescription),
    /// ResetOffsets: the group's new offset on each partition of the topic.
    OffsetsReset(Vec<PartitionOffset>),
    GroupDeleted,
    Subscribed {
        subscription_id: u32,
    },
    CreditGranted,
    Unsubscribed,
    SubscriptionCreated,
    SubscriptionDeleted,
    Subscriptions(Vec<SubscriptionInfo>),
    SubscriptionAltered,
    /// Leased messages, possibly none (the long poll ended empty).
    Messages(Vec<LeasedMessage>),
    /// One entry per receipt, in request order: `None` = done, else why not.
    /// The same shape answers Ack, Nack and ExtendLease; each has its own
    /// variant so the body alone says which op it answers.
    Acked(Vec<Option<WireCode>>),
    Nacked(Vec<Option<WireCode>>),
    LeasesExtended(Vec<Option<WireCode>>),
    Redriven {
        count: u64,
    },
    QueueSubscribed {
        subscription_id: u32,
    },
    /// SubmitRequest: the new request's ID.
    RequestAccepted {
        id: String,
    },
    /// GetRequest: the record as public JSON (`id`, `status`, `attempts`,
    /// …, `result` or `error`), sent as a `text` field. CompleteRequest and
    /// FailRequest answer with the same shape, each in its own variant so
    /// the body alone says which op it answers.
    RequestRecord {
        json: String,
    },
    /// CompleteRequest: the record, now `succeeded`.
    RequestCompleted {
        json: String,
    },
    /// FailRequest: the record, `failed` or (retried) `pending` again.
    RequestFailed {
        json: String,
    },
    TokenCreated(TokenCreated),
    Tokens(Vec<TokenInfo>),
    TokenRevoked,
    ClusterStatus(ClusterStatus),
    ProducerId {
        producer_id: u64,
    },
    Pong,
}

impl ResponseBody {
    /// The op this body answers.
    pub fn op(&self) -> Op {
        match self {
            ResponseBody::HelloOk(_) => Op::Hello,
            ResponseBody::TopicCreated { .. } => Op::CreateTopic,
            ResponseBody::TopicDeleted => Op::DeleteTopic,
            ResponseBody::Topics(_) => Op::ListTopics,
            ResponseBody::TopicDescription(_) => Op::DescribeTopic,
            ResponseBody::TopicAltered => Op::AlterTopic,
            ResponseBody::Produced(_) => Op::Produce,
            ResponseBody::Fetched(_) => Op::Fetch,
            ResponseBody::Joined(_) => Op::JoinGroup,
            ResponseBody::HeartbeatOk(_) => Op::Heartbeat,
            ResponseBody::LeftGroup => Op::LeaveGroup,
            ResponseBody::OffsetsCommitted => Op::CommitOffsets,
            ResponseBody::Offsets(_) => Op::FetchOffsets,
            ResponseBody::Groups(_) => Op::ListGroups,
            ResponseBody::GroupDescription(_) => Op::DescribeGroup,
            ResponseBody::OffsetsReset(_) => Op::ResetOffsets,
            ResponseBody::GroupDeleted => Op::DeleteGroup,
            ResponseBody::Subscribed { .. } => Op::Subscribe,
            ResponseBody::CreditGranted => Op::Credit,
            ResponseBody::Unsubscribed => Op::Unsubscribe,
            ResponseBody::SubscriptionCreated => Op::CreateSubscription,
            ResponseBody::SubscriptionDeleted => Op::DeleteSubscription,
            ResponseBody::Subscriptions(_) => Op::ListSubscriptions,
            ResponseBody::SubscriptionAltered => Op::AlterSubscription,
            ResponseBody::Messages(_) => Op::Receive,
            ResponseBody::Acked(_) => Op::Ack,
            ResponseBody::Nacked(_) => Op::Nack,
            ResponseBody::LeasesExtended(_) => Op::ExtendLease,
            ResponseBody::Redriven { .. } => Op::Redrive,
            ResponseBody::QueueSubscribed { .. } => Op::SubscribeQueue,
            ResponseBody::RequestAccepted { .. } => Op::SubmitRequest,
            ResponseBody::RequestRecord { .. } => Op::GetRequest,
            ResponseBody::RequestCompleted { .. } => Op::CompleteRequest,
            ResponseBody::RequestFailed { .. } => Op::FailRequest,
            ResponseBody::TokenCreated(_) => Op::CreateToken,
            ResponseBody::Tokens(_) => Op::ListTokens,
            ResponseBody::TokenRevoked => Op::RevokeToken,
            ResponseBody::ClusterStatus(_) => Op::ClusterStatus,
            ResponseBody::ProducerId { .. } => Op::InitProducerId,
            ResponseBody::Pong => Op::Ping,
        }
    }

    fn decode(op: Op, r: &mut Reader) -> Result<ResponseBody, DecodeError> {
        Ok(match op {
            Op::Hello => ResponseBody::HelloOk(HelloOk::decode(r)?),
            Op::CreateTopic => ResponseBody::TopicCreated {
                name: r.string("topic_created.name")?,
            },
            Op::DeleteTopic => ResponseBody::TopicDeleted,
            Op::ListTopics => ResponseBody::Topics(r.array("topics", ARRAY_LEN_MAX)?),
            Op::DescribeTopic => ResponseBody::TopicDescription(TopicDescription::decode(r)?),
            Op::AlterTopic => ResponseBody::TopicAltered,
            Op::Produce => ResponseBody::Produced(Produced::decode(r)?),
            Op::Fetch => ResponseBody::Fetched(Fetched::decode(r)?),
            Op::JoinGroup => ResponseBody::Joined(Joined::decode(r)?),
            Op::Heartbeat => ResponseBody::HeartbeatOk(HeartbeatOk::decode(r)?),
            Op::LeaveGroup => ResponseBody::LeftGroup,
            Op::CommitOffsets => ResponseBody::OffsetsCommitted,
            Op::FetchOffsets => ResponseBody::Offsets(r.array("offsets", ARRAY_LEN_MAX)?),
            Op::ListGroups => ResponseBody::Groups(r.array("groups", ARRAY_LEN_MAX)?),
            Op::DescribeGroup => ResponseBody::GroupDescription(GroupDescription::decode(r)?),
            Op::ResetOffsets => ResponseBody::OffsetsReset(r.array("offsets", ARRAY_LEN_MAX)?),
            Op::DeleteGroup => ResponseBody::GroupDeleted,
            Op::Subscribe => ResponseBody::Subscribed {
                subscription_id: r.u32("subscribed.subscription_id")?,
            },
            Op::Credit => ResponseBody::CreditGranted,
            Op::Unsubscribe => ResponseBody::Unsubscribed,
            Op::CreateSubscription => ResponseBody::SubscriptionCreated,
            Op::DeleteSubscription => ResponseBody::SubscriptionDeleted,
            Op::ListSubscriptions => {
                ResponseBody::Subscriptions(r.array("subscriptions", ARRAY_LEN_MAX)?)
            }
            Op::AlterSubscription => ResponseBody::SubscriptionAltered,
            Op::Receive => ResponseBody::Messages(r.array("messages", ARRAY_LEN_MAX)?),
            Op::Ack => ResponseBody::Acked(r.array("receipt_results", ARRAY_LEN_MAX)?),
            Op::Nack => ResponseBody::Nacked(r.array("receipt_results", ARRAY_LEN_MAX)?),
            Op::ExtendLease => {
                ResponseBody::LeasesExtended(r.array("receipt_results", ARRAY_LEN_MAX)?)
            }
            Op::Redrive => ResponseBody::Redriven {
                count: r.u64("redriven.count")?,
            },
            Op::SubscribeQueue => ResponseBody::QueueSubscribed {
                subscription_id: r.u32("queue_subscribed.subscription_id")?,
            },
            Op::SubmitRequest => ResponseBody::RequestAccepted {
                id: r.string("request_accepted.id")?,
            },
            Op::GetRequest => ResponseBody::RequestRecord {
                json: r.text("request_record.json")?,
            },
            Op::CompleteRequest => ResponseBody::RequestCompleted {
                json: r.text("request_record.json")?,
            },
            Op::FailRequest => ResponseBody::RequestFailed {
                json: r.text("request_record.json")?,
            },
            Op::CreateToken => ResponseBody::TokenCreated(TokenCreated::decode(r)?),
            Op::ListTokens => ResponseBody::Tokens(r.array("tokens", ARRAY_LEN_MAX)?),
            Op::RevokeToken => ResponseBody::TokenRevoked,
            Op::ClusterStatus => ResponseBody::ClusterStatus(ClusterStatus::decode(r)?),
            Op::InitProducerId => ResponseBody::ProducerId {
                producer_id: r.u64("producer_id")?,
            },
            Op::Ping => ResponseBody::Pong,
            // op_for only returns request ops; push ops cannot reach here.
            Op::Deliver | Op::SubscriptionClosed | Op::QueueDeliver => {
                return Err(not_for(op, FrameKind::Response))
            }
        })
    }

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            ResponseBody::HelloOk(m) => m.encode(w),
            ResponseBody::TopicCreated { name } => w.string("topic_created.name", name),
            ResponseBody::Topics(topics) => w.array("topics", topics, ARRAY_LEN_MAX),
            ResponseBody::TopicDescription(m) => m.encode(w),
            ResponseBody::Produced(m) => m.encode(w),
            ResponseBody::Fetched(m) => m.encode(w),
            ResponseBody::Joined(m) => m.encode(w),
            ResponseBody::HeartbeatOk(m) => m.encode(w),
            ResponseBody::Offsets(offsets) => w.array("offsets", offsets, ARRAY_LEN_MAX),
            ResponseBody::Groups(groups) => w.array("groups", groups, ARRAY_LEN_MAX),
            ResponseBody::GroupDescription(m) => m.encode(w),
            ResponseBody::OffsetsReset(offsets) => w.array("offsets", offsets, ARRAY_LEN_MAX),
            ResponseBody::Subscribed { subscription_id } => {
                w.u32(*subscription_id);
                Ok(())
            }
            ResponseBody::Subscriptions(subs) => w.array("subscriptions", subs, ARRAY_LEN_MAX),
            ResponseBody::Messages(messages) => w.array("messages", messages, ARRAY_LEN_MAX),
            ResponseBody::Acked(results)
            | ResponseBody::Nacked(results)
            | ResponseBody::LeasesExtended(results) => {
                w.array("receipt_results", results, ARRAY_LEN_MAX)
            }
            ResponseBody::Redriven { count } => {
                w.u64(*count);
                Ok(())
            }
            ResponseBody::QueueSubscribed { subscription_id } => {
                w.u32(*subscription_id);
                Ok(())
            }
            ResponseBody::RequestAccepted { id } => w.string("request_accepted.id", id),
            ResponseBody::RequestRecord { json }
            | ResponseBody::RequestCompleted { json }
            | ResponseBody::RequestFailed { json } => w.text("request_record.json", json),
            ResponseBody::TokenCreated(m) => m.encode(w),
            ResponseBody::Tokens(tokens) => w.array("tokens", tokens, ARRAY_LEN_MAX),
            ResponseBody::ClusterStatus(m) => m.encode(w),
            ResponseBody::ProducerId { producer_id } => {
                w.u64(*producer_id);
                Ok(())
            }
            ResponseBody::TopicDeleted
            | ResponseBody::SubscriptionCreated
            | ResponseBody::SubscriptionDeleted
            | ResponseBody::SubscriptionAltered
            | ResponseBody::TopicAltered
            | ResponseBody::LeftGroup
            | ResponseBody::OffsetsCommitted
            | ResponseBody::GroupDeleted
            | ResponseBody::CreditGranted
            | ResponseBody::Unsubscribed
            | ResponseBody::TokenRevoked
            | ResponseBody::Pong => Ok(()),
        }
    }
}

/// A response: the op it answers and either a body or the server's error.
///
/// The fields are private so that a success always carries its own op; an
/// error may carry any op number, including one this build does not know
/// (the answer to an unknown request) and 0 (a connection-level error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    op: u16,
    result: Result<ResponseBody, WireError>,
}

impl Response {
    pub fn ok(body: ResponseBody) -> Response {
        Response {
            op: body.op().as_u16(),
            result: Ok(body),
        }
    }

    /// A failed response to a request with this op number.
    pub fn error(op: u16, error: WireError) -> Response {
        Response {
            op,
            result: Err(error),
        }
    }

    /// The op number in the frame header.
    pub fn op(&self) -> u16 {
        self.op
    }

    pub fn result(&self) -> Result<&ResponseBody, &WireError> {
        self.result.as_ref()
    }

    pub fn into_result(self) -> Result<ResponseBody, WireError> {
        self.result
    }

    /// Decodes the body of a response frame with this op.
    ///
    /// An error response decodes for any op; a success needs an op this
    /// build knows. Byte fields (`FetchedPartition::batches`, the key, value
    /// and header values of a `LeasedMessage`) are slices of `body`, not
    /// copies.
    pub fn decode(op: u16, body: Bytes) -> Result<Response, DecodeError> {
        Response::decode_at(crate::PROTOCOL_VERSION, op, body)
    }

    /// [`Response::decode`] of a body in the layout of protocol `version`
    /// (what the connection's Hello chose).
    pub fn decode_at(version: u16, op: u16, body: Bytes) -> Result<Response, DecodeError> {
        let mut r = Reader::at_version(body, version);
        let raw = r.u16("response.error_code")?;
        let result = match WireCode::new(raw) {
            None => Ok(ResponseBody::decode(
                op_for(op, FrameKind::Response)?,
                &mut r,
            )?),
            Some(code) => Err(decode_error_tail(code, &mut r)?),
        };
        r.finish("response")?;
        Ok(Response { op, result })
    }

    /// This response as a peer of protocol `version` reads it: the fields
    /// that version does not have are dropped, so that encoding it writes
    /// that version's layout. A server calls it on each answer whose
    /// layout can differ between versions (LIST_SUBSCRIPTIONS').
    pub fn for_version(mut self, version: u16) -> Response {
        if version < crate::VERSION_SUBSCRIPTION_PUSH {
            if let Ok(ResponseBody::Subscriptions(subs)) = &mut self.result {
                for s in subs {
                    s.push = None;
                }
            }
        }
        self
    }

    /// About the bytes [`Response::encode`] writes when the body can be
    /// large (leased messages: exact up to the frame's fixed fields), a small
    /// guess otherwise; so a caller can size its buffer once instead of
    /// growing it step by step through a large answer.
    pub fn encoded_len_hint(&self) -> usize {
        // Length prefix, frame header, error code and an array length.
        const FIXED_BYTES: usize = 4 + 7 + 2 + 4;
        const SMALL_BODY_BYTES: usize = 64;
        FIXED_BYTES
            + match &self.result {
                Ok(ResponseBody::Messages(m)) => m.iter().map(LeasedMessage::encoded_len).sum(),
                _ => SMALL_BODY_BYTES,
            }
    }

    /// Appends this response as one whole frame. On error `buf` is unchanged.
    ///
    /// An error message longer than a string field allows (64 KiB) is cut at
    /// a character boundary rather than failing the response.
    pub fn encode(&self, correlation_id: u32, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(buf, FrameKind::Response, self.op, correlation_id, |w| {
            self.encode_body(w)
        })
    }

    /// The frame [`Response::encode`] writes, as parts to be written in
    /// order: large stored batches (a fetch answer's) are parts of their
    /// own, shared with the buffers they were read into, not copied.
    pub fn encode_parts(&self, correlation_id: u32) -> Result<Vec<Bytes>, EncodeError> {
        encode_frame_parts(FrameKind::Response, self.op, correlation_id, |w| {
            self.encode_body(w)
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match &self.result {
            Ok(body) => {
                w.u16(0);
                body.encode(w)
            }
            Err(error) => put_wire_error(w, error),
        }
    }
}

/// Reads the message and retry hint that follow a non-zero error code.
pub(crate) fn decode_error_tail(code: WireCode, r: &mut Reader) -> Result<WireError, DecodeError> {
    let message = r.string("error.message")?;
    let retry = r.u32("error.retry_after_ms")?;
    Ok(WireError {
        code,
        message,
        retry_after_ms: (retry != 0).then_some(retry),
    })
}

/// Writes a [`WireError`]: code, message (cut to fit), retry hint.
pub(crate) fn put_wire_error(w: &mut Writer<'_>, error: &WireError) -> Result<(), EncodeError> {
    w.u16(error.code.raw());
    w.string(
        "error.message",
        truncate_utf8(&error.message, u16::MAX.into()),
    )?;
    w.u32(error.retry_after_ms.unwrap_or(0));
    Ok(())
}

/// The longest prefix of `s` within `max` bytes that ends on a character
/// boundary, so cutting never produces invalid UTF-8.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Codec for CommittedOffset {
    const MIN_BYTES: usize = 2 + 4 + 8;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let offset = match self.offset {
            None => -1,
            Some(o) => i64::try_from(o).map_err(|_| EncodeError::OutOfRange {
                what: "offsets.offset",
                value: o,
            })?,
        };
        w.string("offsets.topic", &self.topic)?;
        w.u32(self.partition);
        w.i64(offset);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.string("offsets.topic")?;
        let partition = r.u32("offsets.partition")?;
        let at = r.offset();
        let offset = match r.i64("offsets.offset")? {
            -1 => None,
            o => Some(u64::try_from(o).map_err(|_| Reader::invalid("offsets.offset", at, o))?),
        };
        Ok(CommittedOffset {
            topic,
            partition,
            offset,
        })
    }
}

/// One receipt's outcome: `u16` code, 0 = done.
impl Codec for Option<WireCode> {
    const MIN_BYTES: usize = 2;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.code(*self);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.code("receipt_results.error_code")
    }
}
