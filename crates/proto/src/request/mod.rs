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

pub use groups::{CommitOffsets, FetchOffsets, Heartbeat, JoinGroup, LeaveGroup};
pub use handshake::Hello;
pub use produce_fetch::{Fetch, FetchPartition, Produce};
pub use push_subscriptions::{Credit, Subscribe, Unsubscribe};
pub use queues::{
    Ack, CreateSubscription, DeleteSubscription, ExtendLease, ListSubscriptions, Nack, Receive,
    Redrive, SubscribeQueue,
};
pub use request_records::{CompleteRequest, FailRequest, GetRequest, SubmitRequest};
pub use tokens::{CreateToken, RevokeToken};
pub use topics::{AlterTopic, CreateTopic, DeleteTopic, DescribeTopic, ListTopics};

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{encode_frame, encode_frame_parts, FrameKind};
use crate::op::{op_for, Op};
use crate::wire::{Codec, Reader, Writer};

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
            Op::DeleteTopic => Request::DeleteTopic(DeleteTopic::decode(&mut r)?),
            Op::ListTopics => Request::ListTopics(ListTopics::decode(&mut r)?),
            Op::DescribeTopic => Request::DescribeTopic(DescribeTopic::decode(&mut r)?),
            Op::AlterTopic => Request::AlterTopic(AlterTopic::decode(&mut r)?),
            Op::Produce => Request::Produce(Produce::decode(&mut r)?),
            Op::Fetch => Request::Fetch(Fetch::decode(&mut r)?),
            Op::JoinGroup => Request::JoinGroup(JoinGroup::decode(&mut r)?),
            Op::Heartbeat => Request::Heartbeat(Heartbeat::decode(&mut r)?),
            Op::LeaveGroup => Request::LeaveGroup(LeaveGroup::decode(&mut r)?),
            Op::CommitOffsets => Request::CommitOffsets(CommitOffsets::decode(&mut r)?),
            Op::FetchOffsets => Request::FetchOffsets(FetchOffsets::decode(&mut r)?),
            Op::Subscribe => Request::Subscribe(Subscribe::decode(&mut r)?),
            Op::Credit => Request::Credit(Credit::decode(&mut r)?),
            Op::Unsubscribe => Request::Unsubscribe(Unsubscribe::decode(&mut r)?),
            Op::CreateSubscription => {
                Request::CreateSubscription(CreateSubscription::decode(&mut r)?)
            }
            Op::DeleteSubscription => {
                Request::DeleteSubscription(DeleteSubscription::decode(&mut r)?)
            }
            Op::ListSubscriptions => Request::ListSubscriptions(ListSubscriptions::decode(&mut r)?),
            Op::Receive => Request::Receive(Receive::decode(&mut r)?),
            Op::Ack => Request::Ack(Ack::decode(&mut r)?),
            Op::Nack => Request::Nack(Nack::decode(&mut r)?),
            Op::ExtendLease => Request::ExtendLease(ExtendLease::decode(&mut r)?),
            Op::Redrive => Request::Redrive(Redrive::decode(&mut r)?),
            Op::SubscribeQueue => Request::SubscribeQueue(SubscribeQueue::decode(&mut r)?),
            Op::SubmitRequest => Request::SubmitRequest(SubmitRequest::decode(&mut r)?),
            Op::GetRequest => Request::GetRequest(GetRequest::decode(&mut r)?),
            Op::CompleteRequest => Request::CompleteRequest(CompleteRequest::decode(&mut r)?),
            Op::FailRequest => Request::FailRequest(FailRequest::decode(&mut r)?),
            Op::CreateToken => Request::CreateToken(CreateToken::decode(&mut r)?),
            Op::ListTokens => Request::ListTokens,
            Op::RevokeToken => Request::RevokeToken(RevokeToken::decode(&mut r)?),
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
            Request::DeleteTopic(m) => m.encode(w),
            Request::ListTopics(m) => m.encode(w),
            Request::DescribeTopic(m) => m.encode(w),
            Request::AlterTopic(m) => m.encode(w),
            Request::Produce(m) => m.encode(w),
            Request::Fetch(m) => m.encode(w),
            Request::JoinGroup(m) => m.encode(w),
            Request::Heartbeat(m) => m.encode(w),
            Request::LeaveGroup(m) => m.encode(w),
            Request::CommitOffsets(m) => m.encode(w),
            Request::FetchOffsets(m) => m.encode(w),
            Request::Subscribe(m) => m.encode(w),
            Request::Credit(m) => m.encode(w),
            Request::Unsubscribe(m) => m.encode(w),
            Request::CreateSubscription(m) => m.encode(w),
            Request::DeleteSubscription(m) => m.encode(w),
            Request::ListSubscriptions(m) => m.encode(w),
            Request::Receive(m) => m.encode(w),
            Request::Ack(m) => m.encode(w),
            Request::Nack(m) => m.encode(w),
            Request::ExtendLease(m) => m.encode(w),
            Request::Redrive(m) => m.encode(w),
            Request::SubscribeQueue(m) => m.encode(w),
            Request::SubmitRequest(m) => m.encode(w),
            Request::GetRequest(m) => m.encode(w),
            Request::CompleteRequest(m) => m.encode(w),
            Request::FailRequest(m) => m.encode(w),
            Request::CreateToken(m) => m.encode(w),
            Request::RevokeToken(m) => m.encode(w),
            Request::ListTokens | Request::Ping => Ok(()),
        }
    }
}
