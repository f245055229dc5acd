//! Queue subscriptions: definitions, leases and their settlement (ops 50–59).

use crate::common::{Backoff, DeliveryMode, SubscriptionKind};
use crate::error::{DecodeError, EncodeError};
use crate::response::SubscriptionPush;
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

/// Creates a subscription on a topic. For [`SubscriptionKind::Stream`]
/// the queue settings are ignored: stream subscriptions are consumer
/// groups, created implicitly by JoinGroup, so the server only
/// validates the names.
///
/// Its layout depends on the connection's protocol version, as
/// [`SubscriptionInfo`](crate::SubscriptionInfo)'s does: version 2 on
/// appends the push settings (`push`). A version-1 peer neither sends nor
/// reads them: decoded at version 1 `push` is `None`, and a client talking
/// to a version-1 server sends the request without them
/// ([`Request::for_version`](crate::Request::for_version)). Encoding
/// writes the push settings exactly when `push` is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSubscription {
    pub topic: String,
    pub name: String,
    pub kind: SubscriptionKind,
    /// How long a lease lasts before the message may go to another
    /// consumer.
    pub ack_timeout_ms: u32,
    /// Deliveries after which a failing message is dead-lettered;
    /// 0 = unlimited.
    pub max_deliveries: u32,
    pub dead_letter_topic: Option<String>,
    pub backoff: Backoff,
    pub mode: DeliveryMode,
    /// At most one message per record key in flight, each key in order.
    pub ordered: bool,
    /// The HTTP push settings (version 2 on): the endpoint messages are
    /// POSTed to (`None` = no HTTP push) and the most pushes at once
    /// (0 = the server's default).
    pub push: Option<SubscriptionPush>,
}

impl Codec for CreateSubscription {
    /// The version-1 layout, the smaller one.
    const MIN_BYTES: usize = 2
        + 2
        + SubscriptionKind::MIN_BYTES
        + 4
        + 4
        + 1
        + Backoff::MIN_BYTES
        + DeliveryMode::MIN_BYTES
        + 1;

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
        SubscriptionPush::encode_trailing(self.push.as_ref(), w)
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
            push: SubscriptionPush::decode_trailing(r)?,
        })
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DeleteSubscription {
        pub topic: String => string("delete_subscription.topic"),
        pub name: String => string("delete_subscription.name"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ListSubscriptions {
        /// `None` lists the subscriptions of every topic.
        pub topic: Option<String> => opt_string("list_subscriptions.topic"),
    }
}

wire_struct! {
    /// Leases messages from a queue subscription (pull, with long poll).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Receive {
        pub topic: String => string("receive.topic"),
        pub name: String => string("receive.name"),
        /// Most messages to lease.
        pub max: u32 => u32("receive.max"),
        /// How long to wait for a message if none is ready.
        pub wait_ms: u32 => u32("receive.wait_ms"),
    }
}

wire_struct! {
    /// Acknowledges leased messages: they are done and never delivered
    /// again.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Ack {
        pub topic: String => string("ack.topic"),
        pub name: String => string("ack.name"),
        pub receipts: Vec<String> => string_array("ack.receipts", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    /// Gives leased messages back for redelivery (a failure: counts towards
    /// max deliveries).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Nack {
        pub topic: String => string("nack.topic"),
        pub name: String => string("nack.name"),
        pub receipts: Vec<String> => string_array("nack.receipts", ARRAY_LEN_MAX),
        /// Earliest redelivery, from now; the backoff applies if it is
        /// longer.
        pub delay_ms: u32 => u32("nack.delay_ms"),
        /// Why processing failed; carried into dead-letter headers and
        /// events.
        pub error: Option<String> => opt_string("nack.error"),
    }
}

wire_struct! {
    /// Moves lease deadlines to now + `extend_ms`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ExtendLease {
        pub topic: String => string("extend_lease.topic"),
        pub name: String => string("extend_lease.name"),
        pub receipts: Vec<String> => string_array("extend_lease.receipts", ARRAY_LEN_MAX),
        pub extend_ms: u32 => u32("extend_lease.extend_ms"),
    }
}

wire_struct! {
    /// Republishes a subscription's dead letters to its topic.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Redrive {
        pub topic: String => string("redrive.topic"),
        pub name: String => string("redrive.name"),
    }
}

wire_struct! {
    /// Push delivery of leased messages from a queue subscription, under
    /// the same credit rules as [`Subscribe`](super::Subscribe).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SubscribeQueue {
        /// Chosen by the client, unique on the connection; pushes carry it.
        pub subscription_id: u32 => u32("subscribe_queue.subscription_id"),
        pub topic: String => string("subscribe_queue.topic"),
        pub name: String => string("subscribe_queue.name"),
        pub credit_messages: u32 => u32("subscribe_queue.credit_messages"),
        pub credit_bytes: u32 => u32("subscribe_queue.credit_bytes"),
    }
}

wire_struct! {
    /// Changes a queue subscription's settings; each absent (or
    /// unchanged) field is left as it is. The mode and ordering are fixed
    /// at creation.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AlterSubscription {
        pub topic: String => string("alter_subscription.topic"),
        pub name: String => string("alter_subscription.name"),
        pub ack_timeout_ms: Option<u32> => opt("alter_subscription.ack_timeout_ms"),
        /// 0 = unlimited.
        pub max_deliveries: Option<u32> => opt("alter_subscription.max_deliveries"),
        pub dead_letter_topic: SettingChange => codec,
        pub backoff: Option<Backoff> => opt("alter_subscription.backoff"),
        /// The URL messages are POSTed to.
        pub push_endpoint: SettingChange => codec,
        /// Most pushes to the endpoint at once.
        pub max_in_flight: Option<u32> => opt("alter_subscription.max_in_flight"),
    }
}

/// How AlterSubscription changes an optional text setting: `enum u8`
/// `0` unchanged, `1` removed, `2` set (followed by `string`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SettingChange {
    #[default]
    Unchanged,
    Removed,
    Set(String),
}

impl SettingChange {
    /// As the broker takes it: `None` unchanged, `Some(None)` removed.
    pub fn into_option(self) -> Option<Option<String>> {
        match self {
            SettingChange::Unchanged => None,
            SettingChange::Removed => Some(None),
            SettingChange::Set(value) => Some(Some(value)),
        }
    }
}

impl Codec for SettingChange {
    const MIN_BYTES: usize = 1;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            SettingChange::Unchanged => w.u8(0),
            SettingChange::Removed => w.u8(1),
            SettingChange::Set(value) => {
                w.u8(2);
                w.string("alter_subscription.setting", value)?;
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("alter_subscription.setting")? {
            (0, _) => Ok(SettingChange::Unchanged),
            (1, _) => Ok(SettingChange::Removed),
            (2, _) => Ok(SettingChange::Set(r.string("alter_subscription.setting")?)),
            (v, at) => Err(Reader::invalid("alter_subscription.setting", at, v.into())),
        }
    }
}
