//! Push subscriptions to topics and the credit that paces them (ops 40–42).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use super::Body;
use crate::common::SubscribeStart;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};

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

impl Body for Subscribe {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.subscription_id);
        w.string_array("subscribe.topics", &self.topics, SUBSCRIPTION_TOPICS_MAX)?;
        w.opt_string("subscribe.group", self.group.as_deref())?;
        self.start.encode(w)?;
        w.u32(self.credit_messages);
        w.u32(self.credit_bytes);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Subscribe {
            subscription_id: r.u32("subscribe.subscription_id")?,
            topics: r.string_array("subscribe.topics", SUBSCRIPTION_TOPICS_MAX)?,
            group: r.opt_string("subscribe.group")?,
            start: SubscribeStart::decode(r)?,
            credit_messages: r.u32("subscribe.credit_messages")?,
            credit_bytes: r.u32("subscribe.credit_bytes")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub subscription_id: u32,
    /// Added to the subscription's message credit.
    pub messages: u32,
    /// Added to the subscription's byte credit.
    pub bytes: u32,
}

impl Body for Credit {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.subscription_id);
        w.u32(self.messages);
        w.u32(self.bytes);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Credit {
            subscription_id: r.u32("credit.subscription_id")?,
            messages: r.u32("credit.messages")?,
            bytes: r.u32("credit.bytes")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub subscription_id: u32,
}

impl Body for Unsubscribe {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.subscription_id);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Unsubscribe {
            subscription_id: r.u32("unsubscribe.subscription_id")?,
        })
    }
}
