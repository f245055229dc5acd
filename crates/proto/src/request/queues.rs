//! Queue subscriptions: definitions, leases and their settlement (ops 50–58).

use super::Body;
use crate::common::{Backoff, DeliveryMode, SubscriptionKind};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

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

impl Body for CreateSubscription {
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteSubscription {
    pub topic: String,
    pub name: String,
}

impl Body for DeleteSubscription {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("delete_subscription.topic", &self.topic)?;
        w.string("delete_subscription.name", &self.name)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteSubscription {
            topic: r.string("delete_subscription.topic")?,
            name: r.string("delete_subscription.name")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSubscriptions {
    /// `None` lists the subscriptions of every topic.
    pub topic: Option<String>,
}

impl Body for ListSubscriptions {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.opt_string("list_subscriptions.topic", self.topic.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListSubscriptions {
            topic: r.opt_string("list_subscriptions.topic")?,
        })
    }
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

impl Body for Receive {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("receive.topic", &self.topic)?;
        w.string("receive.name", &self.name)?;
        w.u32(self.max);
        w.u32(self.wait_ms);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Receive {
            topic: r.string("receive.topic")?,
            name: r.string("receive.name")?,
            max: r.u32("receive.max")?,
            wait_ms: r.u32("receive.wait_ms")?,
        })
    }
}

/// Acknowledges leased messages: they are done and never delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub topic: String,
    pub name: String,
    pub receipts: Vec<String>,
}

impl Body for Ack {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("ack.topic", &self.topic)?;
        w.string("ack.name", &self.name)?;
        w.string_array("ack.receipts", &self.receipts, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Ack {
            topic: r.string("ack.topic")?,
            name: r.string("ack.name")?,
            receipts: r.string_array("ack.receipts", ARRAY_LEN_MAX)?,
        })
    }
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

impl Body for Nack {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("nack.topic", &self.topic)?;
        w.string("nack.name", &self.name)?;
        w.string_array("nack.receipts", &self.receipts, ARRAY_LEN_MAX)?;
        w.u32(self.delay_ms);
        w.opt_string("nack.error", self.error.as_deref())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Nack {
            topic: r.string("nack.topic")?,
            name: r.string("nack.name")?,
            receipts: r.string_array("nack.receipts", ARRAY_LEN_MAX)?,
            delay_ms: r.u32("nack.delay_ms")?,
            error: r.opt_string("nack.error")?,
        })
    }
}

/// Moves lease deadlines to now + `extend_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendLease {
    pub topic: String,
    pub name: String,
    pub receipts: Vec<String>,
    pub extend_ms: u32,
}

impl Body for ExtendLease {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("extend_lease.topic", &self.topic)?;
        w.string("extend_lease.name", &self.name)?;
        w.string_array("extend_lease.receipts", &self.receipts, ARRAY_LEN_MAX)?;
        w.u32(self.extend_ms);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ExtendLease {
            topic: r.string("extend_lease.topic")?,
            name: r.string("extend_lease.name")?,
            receipts: r.string_array("extend_lease.receipts", ARRAY_LEN_MAX)?,
            extend_ms: r.u32("extend_lease.extend_ms")?,
        })
    }
}

/// Republishes a subscription's dead letters to its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub topic: String,
    pub name: String,
}

impl Body for Redrive {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("redrive.topic", &self.topic)?;
        w.string("redrive.name", &self.name)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Redrive {
            topic: r.string("redrive.topic")?,
            name: r.string("redrive.name")?,
        })
    }
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

impl Body for SubscribeQueue {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.subscription_id);
        w.string("subscribe_queue.topic", &self.topic)?;
        w.string("subscribe_queue.name", &self.name)?;
        w.u32(self.credit_messages);
        w.u32(self.credit_bytes);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SubscribeQueue {
            subscription_id: r.u32("subscribe_queue.subscription_id")?,
            topic: r.string("subscribe_queue.topic")?,
            name: r.string("subscribe_queue.name")?,
            credit_messages: r.u32("subscribe_queue.credit_messages")?,
            credit_bytes: r.u32("subscribe_queue.credit_bytes")?,
        })
    }
}
