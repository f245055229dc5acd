//! Pushes: unsolicited server-to-client frames (kind 2) for push
//! subscriptions. The frame's `correlation_id` is the subscription id.

use bytes::{Bytes, BytesMut};

use crate::common::LeasedMessage;
use crate::error::{DecodeError, EncodeError, WireCode, WireError};
use crate::frame::{encode_frame, FrameKind};
use crate::op::{not_for, op_for, Op};
use crate::response::{decode_error_tail, put_wire_error};
use crate::wire::{Codec, Reader};
use crate::ARRAY_LEN_MAX;

wire_struct! {
    /// Record batches for a subscription, charged against its credit.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Deliver {
        pub topic: String => string("deliver.topic"),
        pub partition: u32 => u32("deliver.partition"),
        /// One or more whole RecordBatches, concatenated; a slice of the
        /// received frame, not a copy.
        pub batches: Bytes => bytes("deliver.batches"),
    }
}

wire_struct! {
    /// Messages leased to a queue subscription, charged against its
    /// credit. The leases are the subscriber's to ack, nack or extend,
    /// exactly as if it had received them with a Receive request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct QueueDeliver {
        pub messages: Vec<LeasedMessage> => array("queue_deliver.messages", ARRAY_LEN_MAX),
    }
}

/// A decoded push body. New ops will add variants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Push {
    Deliver(Deliver),
    /// The server ended the subscription; no more pushes follow for its id.
    SubscriptionClosed(WireError),
    QueueDeliver(QueueDeliver),
}

impl Push {
    pub fn op(&self) -> Op {
        match self {
            Push::Deliver(_) => Op::Deliver,
            Push::SubscriptionClosed(_) => Op::SubscriptionClosed,
            Push::QueueDeliver(_) => Op::QueueDeliver,
        }
    }

    /// Decodes the body of a push frame with this op.
    pub fn decode(op: u16, body: Bytes) -> Result<Push, DecodeError> {
        let op = op_for(op, FrameKind::Push)?;
        let mut r = Reader::new(body);
        let push = match op {
            Op::Deliver => Push::Deliver(Deliver::decode(&mut r)?),
            Op::SubscriptionClosed => {
                let at = r.offset();
                let raw = r.u16("subscription_closed.error_code")?;
                // A close always has a reason; 0 ("no error") would be a bug.
                let code = WireCode::new(raw).ok_or(Reader::invalid(
                    "subscription_closed.error_code",
                    at,
                    0,
                ))?;
                Push::SubscriptionClosed(decode_error_tail(code, &mut r)?)
            }
            Op::QueueDeliver => Push::QueueDeliver(QueueDeliver::decode(&mut r)?),
            // op_for only returns push ops here.
            _ => return Err(not_for(op, FrameKind::Push)),
        };
        r.finish(op.name())?;
        Ok(push)
    }

    /// Appends this push as one whole frame. On error `buf` is unchanged.
    pub fn encode(&self, subscription_id: u32, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(
            buf,
            FrameKind::Push,
            self.op().as_u16(),
            subscription_id,
            |w| match self {
                Push::Deliver(m) => m.encode(w),
                Push::SubscriptionClosed(error) => put_wire_error(w, error),
                Push::QueueDeliver(m) => m.encode(w),
            },
        )
    }
}
