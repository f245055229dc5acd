//! The operation-code table. Numbers are a published contract: once
//! released, an op keeps its number and a retired number is never reused.
//!
//! Ranges by area: 1 handshake, 10–19 topics, 20–29 produce/fetch,
//! 30–39 consumer groups, 40–49 push subscriptions, 50–59 queue
//! subscriptions, 60–69 request records, 70–79 tokens, 80–89 cluster, 90 ping.
//! Op 0 is never an operation: it marks a connection-level error response.

use std::fmt;

use crate::error::DecodeError;
use crate::frame::FrameKind;

/// An operation code, carried in every frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
#[non_exhaustive]
pub enum Op {
    Hello = 1,

    CreateTopic = 10,
    DeleteTopic = 11,
    ListTopics = 12,
    DescribeTopic = 13,
    AlterTopic = 14,

    Produce = 20,
    Fetch = 21,
    InitProducerId = 22,

    JoinGroup = 30,
    Heartbeat = 31,
    LeaveGroup = 32,
    CommitOffsets = 33,
    FetchOffsets = 34,
    ListGroups = 35,
    DescribeGroup = 36,
    ResetOffsets = 37,
    DeleteGroup = 38,

    Subscribe = 40,
    Credit = 41,
    Unsubscribe = 42,
    /// Push only: record batches for a subscription.
    Deliver = 45,
    /// Push only: the server ended a subscription.
    SubscriptionClosed = 46,
    /// Push only: leased messages for a queue subscription.
    QueueDeliver = 47,

    CreateSubscription = 50,
    DeleteSubscription = 51,
    ListSubscriptions = 52,
    Receive = 53,
    Ack = 54,
    Nack = 55,
    ExtendLease = 56,
    Redrive = 57,
    SubscribeQueue = 58,
    AlterSubscription = 59,

    SubmitRequest = 60,
    GetRequest = 61,
    CompleteRequest = 62,
    FailRequest = 63,

    CreateToken = 70,
    ListTokens = 71,
    RevokeToken = 72,

    ClusterStatus = 80,

    Ping = 90,
}

impl Op {
    /// Every op, in numeric order. The code-table test checks this list.
    pub const ALL: &'static [Op] = &[
        Op::Hello,
        Op::CreateTopic,
        Op::DeleteTopic,
        Op::ListTopics,
        Op::DescribeTopic,
        Op::AlterTopic,
        Op::Produce,
        Op::Fetch,
        Op::InitProducerId,
        Op::JoinGroup,
        Op::Heartbeat,
        Op::LeaveGroup,
        Op::CommitOffsets,
        Op::FetchOffsets,
        Op::ListGroups,
        Op::DescribeGroup,
        Op::ResetOffsets,
        Op::DeleteGroup,
        Op::Subscribe,
        Op::Credit,
        Op::Unsubscribe,
        Op::Deliver,
        Op::SubscriptionClosed,
        Op::QueueDeliver,
        Op::CreateSubscription,
        Op::DeleteSubscription,
        Op::ListSubscriptions,
        Op::Receive,
        Op::Ack,
        Op::Nack,
        Op::ExtendLease,
        Op::Redrive,
        Op::SubscribeQueue,
        Op::AlterSubscription,
        Op::SubmitRequest,
        Op::GetRequest,
        Op::CompleteRequest,
        Op::FailRequest,
        Op::CreateToken,
        Op::ListTokens,
        Op::RevokeToken,
        Op::ClusterStatus,
        Op::Ping,
    ];

    /// The number in the frame header.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The op for a number. An unknown number is an error whose code is
    /// `UNKNOWN_REQUEST_TYPE`, ready to send back.
    pub fn from_u16(value: u16) -> Result<Op, DecodeError> {
        Self::ALL
            .iter()
            .copied()
            .find(|op| op.as_u16() == value)
            .ok_or(DecodeError::UnknownOp {
                op: value,
                kind: FrameKind::Request,
            })
    }

    /// Whether this op travels in push frames (server to client, unsolicited)
    /// rather than as a request/response pair.
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Op::Deliver | Op::SubscriptionClosed | Op::QueueDeliver
        )
    }

    /// The stable upper-snake-case name, e.g. `CREATE_TOPIC`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hello => "HELLO",
            Op::CreateTopic => "CREATE_TOPIC",
            Op::DeleteTopic => "DELETE_TOPIC",
            Op::ListTopics => "LIST_TOPICS",
            Op::DescribeTopic => "DESCRIBE_TOPIC",
            Op::AlterTopic => "ALTER_TOPIC",
            Op::Produce => "PRODUCE",
            Op::Fetch => "FETCH",
            Op::InitProducerId => "INIT_PRODUCER_ID",
            Op::JoinGroup => "JOIN_GROUP",
            Op::Heartbeat => "HEARTBEAT",
            Op::LeaveGroup => "LEAVE_GROUP",
            Op::CommitOffsets => "COMMIT_OFFSETS",
            Op::FetchOffsets => "FETCH_OFFSETS",
            Op::ListGroups => "LIST_GROUPS",
            Op::DescribeGroup => "DESCRIBE_GROUP",
            Op::ResetOffsets => "RESET_OFFSETS",
            Op::DeleteGroup => "DELETE_GROUP",
            Op::Subscribe => "SUBSCRIBE",
            Op::Credit => "CREDIT",
            Op::Unsubscribe => "UNSUBSCRIBE",
            Op::Deliver => "DELIVER",
            Op::SubscriptionClosed => "SUBSCRIPTION_CLOSED",
            Op::QueueDeliver => "QUEUE_DELIVER",
            Op::CreateSubscription => "CREATE_SUBSCRIPTION",
            Op::DeleteSubscription => "DELETE_SUBSCRIPTION",
            Op::ListSubscriptions => "LIST_SUBSCRIPTIONS",
            Op::Receive => "RECEIVE",
            Op::Ack => "ACK",
            Op::Nack => "NACK",
            Op::ExtendLease => "EXTEND_LEASE",
            Op::Redrive => "REDRIVE",
            Op::SubscribeQueue => "SUBSCRIBE_QUEUE",
            Op::AlterSubscription => "ALTER_SUBSCRIPTION",
            Op::SubmitRequest => "SUBMIT_REQUEST",
            Op::GetRequest => "GET_REQUEST",
            Op::CompleteRequest => "COMPLETE_REQUEST",
            Op::FailRequest => "FAIL_REQUEST",
            Op::CreateToken => "CREATE_TOKEN",
            Op::ListTokens => "LIST_TOKENS",
            Op::RevokeToken => "REVOKE_TOKEN",
            Op::ClusterStatus => "CLUSTER_STATUS",
            Op::Ping => "PING",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for an op that `kind` frames do not carry. Decoders match on
/// ops [`op_for`] has already checked, so they reach this only in the arm
/// that keeps their match exhaustive.
pub(crate) fn not_for(op: Op, kind: FrameKind) -> DecodeError {
    DecodeError::UnknownOp {
        op: op.as_u16(),
        kind,
    }
}

/// The op for a number as `kind` sees it: push-only ops are unknown to
/// request/response decoding and vice versa.
pub(crate) fn op_for(value: u16, kind: FrameKind) -> Result<Op, DecodeError> {
    let unknown = DecodeError::UnknownOp { op: value, kind };
    let op = Op::from_u16(value).map_err(|_| unknown.clone())?;
    if op.is_push() == (kind == FrameKind::Push) {
        Ok(op)
    } else {
        Err(unknown)
    }
}
