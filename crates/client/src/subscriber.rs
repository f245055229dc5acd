//! [`Subscriber`]: a push subscription (the active queue). The server sends
//! batches as they are appended, within the credit this client grants; the
//! subscriber grants a delivery's cost back as the application takes it
//! from [`Subscriber::recv`], so at most the initial credit (plus one batch)
//! is ever buffered here, however slow the application is.

use crate::client::Client;
use crate::error::ClientError;
use crate::records::{decode_records, ConsumedRecord};
use crate::subscription::Handle;
use spool_proto::{self as p, Push, Request, SubscribeStart};
use std::collections::HashMap;

/// Subscription settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Where to begin on the partitions that exist now; partitions of topics
    /// created later are read from their beginning.
    pub start: SubscribeStart,
    /// How many messages may be delivered ahead of the application.
    pub credit_messages: u32,
    /// How many bytes may be delivered ahead of the application.
    pub credit_bytes: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start: SubscribeStart::Earliest,
            credit_messages: 10_000,
            credit_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Records pushed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: u32,
    /// In offset order, without repeats.
    pub records: Vec<ConsumedRecord>,
}

/// A push subscription. Dropping it unsubscribes (without waiting).
#[derive(Debug)]
pub struct Subscriber {
    sub: Handle,
    start: SubscribeStart,
    /// Next offset expected per partition, once one delivery was seen.
    positions: HashMap<(String, u32), u64>,
}

impl Subscriber {
    /// Subscribes to topic names and/or patterns (`orders.*`, `orders.>`);
    /// matching topics created later are included.
    pub async fn subscribe(
        client: &Client,
        topics: Vec<String>,
        options: SubscribeOptions,
    ) -> Result<Subscriber, ClientError> {
        let subscribe = |id| {
            Request::Subscribe(p::Subscribe {
                subscription_id: id,
                topics,
                group: None,
                start: options.start,
                credit_messages: options.credit_messages,
                credit_bytes: options.credit_bytes,
            })
        };
        Ok(Subscriber {
            sub: Handle::open(client, subscribe).await?,
            start: options.start,
            positions: HashMap::new(),
        })
    }

    /// The subscription id (unique on its connection).
    pub fn id(&self) -> u32 {
        self.sub.id
    }

    /// The next delivery. `None` once the subscription has ended; the
    /// reason (the server closed it, e.g. `UNKNOWN_TOPIC` after a delete, or
    /// the connection was lost) comes as one `Some(Err(..))` before that.
    ///
    /// Taking a delivery grants its cost back to the server as credit.
    pub async fn recv(&mut self) -> Option<Result<Delivery, ClientError>> {
        loop {
            match self.sub.next_push().await? {
                Ok(Push::Deliver(d)) => {
                    if let Some(delivery) = self.take(d) {
                        return Some(delivery);
                    }
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Decodes a delivery, skips records already seen, and returns its cost
    /// to the server. `None` if nothing in it is new.
    fn take(&mut self, d: p::Deliver) -> Option<Result<Delivery, ClientError>> {
        let key = (d.topic.clone(), d.partition);
        let from = match (self.positions.get(&key), self.start) {
            (Some(&next), _) => next,
            // First delivery at an explicit offset: the server sends the
            // whole batch holding that offset; skip what precedes it.
            (None, SubscribeStart::Offset(o)) => o,
            (None, _) => 0,
        };
        let mut decoded = match decode_records(&d.topic, d.partition, &d.batches, from) {
            Ok(decoded) => decoded,
            Err(e) => return Some(Err(e)),
        };
        if self.positions.contains_key(&key)
            && decoded.records.is_empty()
            && decoded.next_offset.is_some_and(|next| next <= from)
        {
            // Entirely behind us: the partition started over (its topic was
            // deleted and created again), so take it from the top.
            match decode_records(&d.topic, d.partition, &d.batches, 0) {
                Ok(again) => decoded = again,
                Err(e) => return Some(Err(e)),
            }
        }
        // The server charged the batches' record counts and byte length.
        let messages = u32::try_from(decoded.batch_records).unwrap_or(u32::MAX);
        let bytes = u32::try_from(d.batches.len()).unwrap_or(u32::MAX);
        self.sub.client.send_and_forget(&Request::Credit(p::Credit {
            subscription_id: self.sub.id,
            messages,
            bytes,
        }));
        if let Some(next) = decoded.next_offset {
            self.positions.insert(key, next);
        }
        if decoded.records.is_empty() {
            return None;
        }
        Some(Ok(Delivery {
            topic: d.topic,
            partition: d.partition,
            records: decoded.records,
        }))
    }

    /// Ends the subscription; no delivery follows the server's answer.
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        let result = self.sub.unsubscribe().await;
        self.sub.unsubscribed(result)
    }
}
