//! Requests: client-to-server frames (kind 0). [`Request`] is the table
//! from op to message; each message's fields, in wire order, are declared
//! with its type (by `wire_struct!`) in the module of its domain.

mod groups;
mod handshake;
mod produce_fetch;
mod push_subscriptions;
mod queues;
mod request_records;
mod tokens;
mod topics;

pub use groups::{
    CommitOffsets, DeleteGroup, DescribeGroup, FetchOffsets, Heartbeat, JoinGroup, LeaveGroup,
    OffsetTarget, ResetOffsets,
};
pub use handshake::Hello;
pub use produce_fetch::{Fetch, FetchPartition, Produce};
pub use push_subscriptions::{Credit, Subscribe, Unsubscribe};
pub use queues::{
    Ack, AlterSubscription, CreateSubscription, DeleteSubscription, ExtendLease, ListSubscriptions,
    Nack, Receive, Redrive, SettingChange, SubscribeQueue,
};
pub use request_records::{CompleteRequest, FailRequest, GetRequest, SubmitRequest};
pub use tokens::{CreateToken, RevokeToken};
pub use topics::{AlterTopic, CreateTopic, DeleteTopic, DescribeTopic, ListTopics};

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{encode_frame, encode_frame_parts, FrameKind};
use crate::op::{not_for, op_for, Op};
use crate::wire::{Codec, Reader, Writer};

/// Declares [`Request`] from its table of variants, each named after its
/// [`Op`] and carrying the body type of the same name (or none), and
/// generates the three matches that follow from the table: `op`, the body
/// decoder and the body encoder, so a new op is one line here.
macro_rules! request_table {
    (
        $(#[$attr:meta])*
        pub enum Request {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident $(($body:ty))?,
            )*
        }
    ) => {
        $(#[$attr])*
        pub enum Request {
            $(
                $(#[$variant_attr])*
                $variant $(($body))?,
            )*
        }

        impl Request {
            pub fn op(&self) -> Op {
                match self {
                    // `{ .. }` matches tuple and unit variants alike.
                    $(Request::$variant { .. } => Op::$variant,)*
                }
            }

            /// The body of a request with this op (known to be a request
            /// op); the caller checks that nothing follows it.
            fn decode_body(op: Op, r: &mut Reader) -> Result<Request, DecodeError> {
                Ok(match op {
                    $(Op::$variant => Request::$variant $((<$body as Codec>::decode(r)?))?,)*
                    // op_for only returns request ops; push ops cannot
                    // reach here.
                    Op::Deliver | Op::SubscriptionClosed | Op::QueueDeliver => {
                        return Err(not_for(op, FrameKind::Request))
                    }
                })
            }

            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                match self {
                    $($(Request::$variant(m) => <$body as Codec>::encode(m, w),)?)*
                    // The variants without a body.
                    _ => Ok(()),
                }
            }
        }
    };
}

request_table! {
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
        /// A producer id for an idempotent producer (a cluster node only).
        InitProducerId,
        JoinGroup(JoinGroup),
        Heartbeat(Heartbeat),
        LeaveGroup(LeaveGroup),
        CommitOffsets(CommitOffsets),
        FetchOffsets(FetchOffsets),
        /// Lists the consumer groups with their committed offsets and lag.
        ListGroups,
        DescribeGroup(DescribeGroup),
        ResetOffsets(ResetOffsets),
        DeleteGroup(DeleteGroup),
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
        AlterSubscription(AlterSubscription),
        SubmitRequest(SubmitRequest),
        GetRequest(GetRequest),
        CompleteRequest(CompleteRequest),
        FailRequest(FailRequest),
        CreateToken(CreateToken),
        /// Lists the tokens (admin only), never their secrets.
        ListTokens,
        RevokeToken(RevokeToken),
        /// This node's view of the cluster (`spool cluster status`).
        ClusterStatus,
        Ping,
    }
}

impl Request {
    /// Decodes the body of a request frame with this op. Byte fields
    /// (`Produce::batch`, routing keys) are slices of `body`, not copies.
    pub fn decode(op: u16, body: Bytes) -> Result<Request, DecodeError> {
        Request::decode_at(crate::PROTOCOL_VERSION, op, body)
    }

    /// [`Request::decode`] of a body in the layout of protocol `version`
    /// (what the connection's Hello chose; Hello itself reads the same in
    /// every version).
    pub fn decode_at(version: u16, op: u16, body: Bytes) -> Result<Request, DecodeError> {
        let op = op_for(op, FrameKind::Request)?;
        let mut r = Reader::at_version(body, version);
        let request = Request::decode_body(op, &mut r)?;
        r.finish(op.name())?;
        Ok(request)
    }

    /// This request as a server of protocol `version` reads it: the fields
    /// that version does not have are dropped, so that encoding it writes
    /// that version's layout. A client calls it on each request whose
    /// layout can differ between versions (CREATE_SUBSCRIPTION's), after
    /// refusing what that version cannot carry. Requests of the current
    /// version always carry them: `None` ones get the defaults.
    pub fn for_version(mut self, version: u16) -> Request {
        if let Request::CreateSubscription(c) = &mut self {
            if version < crate::VERSION_SUBSCRIPTION_PUSH {
                c.push = None;
            } else if c.push.is_none() {
                c.push = Some(crate::SubscriptionPush {
                    endpoint: None,
                    max_in_flight: 0,
                });
            }
        }
        self
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
}
