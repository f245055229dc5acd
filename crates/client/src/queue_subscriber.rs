//! [`QueueSubscriber`]: push delivery of leased messages from a queue
//! subscription. The server leases messages only while this subscriber has
//! credit, so credit is how much work it holds at once; the subscriber
//! grants credit back as the application takes messages from
//! [`QueueSubscriber::recv`].
//!
//! Leases run from when the server hands messages out, so a message waiting
//! here is already on the clock: keep the credit near what the application
//! can work on within an ack timeout.

use crate::client::{Client, PushEvent};
use crate::error::ClientError;
use crate::subscription::Handle;
use futures::Stream;
use spool_proto::{self as p, LeasedMessage, Push, Request};
use std::collections::VecDeque;

/// Credit of a queue push subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSubscribeOptions {
    /// Most messages leased to this subscriber and not yet taken by the
    /// application.
    pub credit_messages: u32,
    /// Most key and value bytes of such messages (one delivery may
    /// overshoot it).
    pub credit_bytes: u32,
}

impl Default for QueueSubscribeOptions {
    fn default() -> Self {
        QueueSubscribeOptions {
            credit_messages: 16,
            credit_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A queue push subscription. Dropping it unsubscribes (without waiting);
/// leases already delivered stay valid until their deadlines.
#[derive(Debug)]
pub struct QueueSubscriber {
    sub: Handle,
    buffered: VecDeque<LeasedMessage>,
    /// Credit taken by the application and not yet granted back.
    owed_messages: u32,
    owed_bytes: u32,
    /// Grant back once this many messages are owed (half the credit), so
    /// messages keep flowing without a Credit request per message.
    grant_at: u32,
}

/// What a message costs in byte credit (as the server charges it).
fn cost_bytes(m: &LeasedMessage) -> u32 {
    let len = m.key.as_ref().map_or(0, |k| k.len()) + m.value.as_ref().map_or(0, |v| v.len());
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl QueueSubscriber {
    /// Starts push delivery from `topic`'s queue subscription `name`.
    pub async fn subscribe(
        client: &Client,
        topic: &str,
        name: &str,
        options: QueueSubscribeOptions,
    ) -> Result<QueueSubscriber, ClientError> {
        let subscribe = |id| {
            Request::SubscribeQueue(p::SubscribeQueue {
                subscription_id: id,
                topic: topic.to_owned(),
                name: name.to_owned(),
                credit_messages: options.credit_messages,
                credit_bytes: options.credit_bytes,
            })
        };
        Ok(QueueSubscriber {
            sub: Handle::open(client, subscribe).await?,
            buffered: VecDeque::new(),
            owed_messages: 0,
            owed_bytes: 0,
            grant_at: (options.credit_messages / 2).max(1),
        })
    }

    /// The subscription id (unique on its connection).
    pub fn id(&self) -> u32 {
        self.sub.id
    }

    /// The next leased message; ack, nack or extend it by its receipt.
    /// `None` once the subscription has ended; the reason (the server
    /// closed it, e.g. `UNKNOWN_SUBSCRIPTION` after a delete, or the
    /// connection was lost) comes as one `Some(Err(..))` before that.
    pub async fn recv(&mut self) -> Option<Result<LeasedMessage, ClientError>> {
        loop {
            if let Some(m) = self.buffered.pop_front() {
                self.owed_messages = self.owed_messages.saturating_add(1);
                self.owed_bytes = self.owed_bytes.saturating_add(cost_bytes(&m));
                // Grant everything back before the buffer runs dry, so the
                // server never waits on credit the application has freed.
                if self.owed_messages >= self.grant_at || self.buffered.is_empty() {
                    self.grant();
                }
                return Some(Ok(m));
            }
            match self.sub.next_push().await? {
                Ok(Push::QueueDeliver(d)) => self.buffered.extend(d.messages),
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The subscription as a [`Stream`] of leased messages (ending after
    /// the error that ended it, if any).
    pub fn into_stream(self) -> impl Stream<Item = Result<LeasedMessage, ClientError>> {
        futures::stream::unfold(self, |mut sub| async move {
            let next = sub.recv().await?;
            Some((next, sub))
        })
    }

    fn grant(&mut self) {
        if self.owed_messages == 0 && self.owed_bytes == 0 {
            return;
        }
        // A zero byte grant still matters when messages were empty: the
        // server needs both counters above zero, and its charge for them
        // was zero bytes, so nothing is lost by granting 0.
        self.sub.client.send_and_forget(&Request::Credit(p::Credit {
            subscription_id: self.sub.id,
            messages: self.owed_messages,
            bytes: self.owed_bytes,
        }));
        self.owed_messages = 0;
        self.owed_bytes = 0;
    }

    /// Ends the subscription; nothing is delivered after the server's
    /// answer. Messages delivered but not yet taken are returned: their
    /// leases are still this client's to settle (or to let lapse).
    pub async fn unsubscribe(mut self) -> Result<Vec<LeasedMessage>, ClientError> {
        let result = self.sub.unsubscribe().await;
        // Deliveries sent before the answer are already queued here.
        while let Ok(event) = self.sub.rx.try_recv() {
            if let PushEvent::Push(Push::QueueDeliver(d)) = event {
                self.buffered.extend(d.messages);
            }
        }
        let left = std::mem::take(&mut self.buffered).into();
        self.sub.unsubscribed(result).map(|()| left)
    }
}
