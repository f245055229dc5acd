//! Work queues: queue subscriptions (create, alter, list, delete), leasing messages
//! with [`Client::receive`], settling them by receipt ([`Client::ack`],
//! [`Client::nack`], [`Client::extend`]) and moving dead letters back with
//! [`Client::redrive`]. Push delivery of leases is [`crate::QueueSubscriber`].
//!
//! Ack, nack and extend settle each receipt on its own: the call fails only
//! when the whole request does (`UNKNOWN_SUBSCRIPTION`, a lost connection);
//! otherwise it answers one `Result` per receipt, in order.

use crate::client::{unexpected, Client};
use crate::error::ClientError;
use spool_proto::{
    self as p, Backoff, DeliveryMode, LeasedMessage, Request, ResponseBody, SettingChange,
    SubscriptionInfo, SubscriptionKind, WireCode, WireError,
};
use spool_types::ErrorCode;
use std::time::Duration;

/// Settings of a subscription made with [`Client::create_subscription`].
///
/// For [`SubscriptionKind::Stream`] (a consumer group) only the names
/// matter; the server ignores the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub kind: SubscriptionKind,
    /// Lease length in ms; 0 takes the server's default (30 s).
    pub ack_timeout_ms: u32,
    /// Deliveries after which a failing message is dead-lettered; 0 =
    /// unlimited.
    pub max_deliveries: u32,
    /// Where dead letters are copied (a side-channel event is written
    /// either way).
    pub dead_letter_topic: Option<String>,
    /// Wait before a failed message is delivered again.
    pub backoff: Backoff,
    /// Count a message as done as it is handed out: never redelivered.
    pub at_most_once: bool,
    /// At most one message per record key in flight, each key in order.
    pub ordered: bool,
    /// POST each message to this URL (HTTP push; the server must allow
    /// its host). Needs a server of protocol version 2 or later.
    pub push_endpoint: Option<String>,
    /// Most pushes to `push_endpoint` at once; 0 takes the server's
    /// default.
    pub max_in_flight: u32,
}

/// What [`Client::alter_subscription`] changes; the default changes
/// nothing. The mode and ordering are fixed at creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionChanges {
    /// Lease length in ms for leases from now on (1 … 43,200,000).
    pub ack_timeout_ms: Option<u32>,
    /// Deliveries after which a failing message is dead-lettered; 0 =
    /// unlimited.
    pub max_deliveries: Option<u32>,
    pub dead_letter_topic: SettingChange,
    pub backoff: Option<Backoff>,
    /// The URL the server POSTs each message to (checked against its
    /// outbound allow-list).
    pub push_endpoint: SettingChange,
    /// Most pushes to the endpoint at once.
    pub max_in_flight: Option<u32>,
}

/// Deliveries before dead-lettering unless told otherwise: the server's own
/// default for the subscriptions it creates and for the HTTP API.
pub const MAX_DELIVERIES_DEFAULT: u32 = 5;

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            kind: SubscriptionKind::Queue,
            ack_timeout_ms: 0,
            max_deliveries: MAX_DELIVERIES_DEFAULT,
            dead_letter_topic: None,
            backoff: Backoff::Fixed { delay_ms: 0 },
            at_most_once: false,
            ordered: false,
            push_endpoint: None,
            max_in_flight: 0,
        }
    }
}

/// Milliseconds for a `u32` wire field, saturating (the server clamps
/// anyway, so a huge duration means "as long as allowed").
pub(crate) fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A per-receipt failure as a [`ClientError`]. The server sends only the
/// code for each receipt, so the message says what the code means for a
/// receipt and names it.
fn receipt_error(receipt: &str, code: WireCode) -> ClientError {
    let message = match code.known() {
        Some(ErrorCode::UnknownReceipt) => {
            format!("receipt {receipt:?} names no lease of this subscription")
        }
        Some(ErrorCode::LeaseExpired) => format!(
            "the lease of receipt {receipt:?} is over (it lapsed, the message was settled already, or it was leased again); nothing changed"
        ),
        Some(ErrorCode::UnknownSubscription) => {
            format!("receipt {receipt:?}: the subscription no longer exists")
        }
        _ => format!("receipt {receipt:?} was refused ({code})"),
    };
    ClientError::Server(WireError {
        code,
        message,
        retry_after_ms: None,
    })
}

fn receipt_results(
    receipts: &[String],
    codes: Vec<Option<WireCode>>,
) -> Result<Vec<Result<(), ClientError>>, ClientError> {
    if codes.len() != receipts.len() {
        return Err(ClientError::Protocol(format!(
            "the server answered {} results for {} receipts",
            codes.len(),
            receipts.len()
        )));
    }
    Ok(receipts
        .iter()
        .zip(codes)
        .map(|(receipt, code)| match code {
            None => Ok(()),
            Some(code) => Err(receipt_error(receipt, code)),
        })
        .collect())
}

/// One result per receipt of an ack, nack or extend (`UNKNOWN_RECEIPT`,
/// `LEASE_EXPIRED` change nothing), or why the call failed as a whole.
pub type ReceiptResults = Result<Vec<Result<(), ClientError>>, ClientError>;

impl Client {
    /// Creates a subscription on `topic`. Creating one that exists with
    /// the same settings succeeds; with other settings it is `GROUP_EXISTS`.
    pub async fn create_subscription(
        &self,
        topic: &str,
        name: &str,
        options: SubscriptionOptions,
    ) -> Result<(), ClientError> {
        let wants_push = options.push_endpoint.is_some() || options.max_in_flight != 0;
        let request = Request::CreateSubscription(p::CreateSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
            kind: options.kind,
            ack_timeout_ms: options.ack_timeout_ms,
            max_deliveries: options.max_deliveries,
            dead_letter_topic: options.dead_letter_topic,
            backoff: options.backoff,
            mode: if options.at_most_once {
                DeliveryMode::AtMostOnce
            } else {
                DeliveryMode::AtLeastOnce
            },
            ordered: options.ordered,
            push: Some(p::SubscriptionPush {
                endpoint: options.push_endpoint,
                max_in_flight: options.max_in_flight,
            }),
        });
        let version = self.protocol_version();
        if wants_push && version < p::VERSION_SUBSCRIPTION_PUSH {
            return Err(ClientError::Local {
                code: ErrorCode::UnsupportedVersion,
                message: format!(
                    "the server speaks protocol version {version}: creating a subscription \
                     with a push endpoint needs version {}",
                    p::VERSION_SUBSCRIPTION_PUSH
                ),
            });
        }
        match self.call(request.for_version(version)).await? {
            ResponseBody::SubscriptionCreated => Ok(()),
            other => Err(unexpected(&other, p::Op::CreateSubscription)),
        }
    }

    /// Changes a queue subscription's settings (ALTER_SUBSCRIPTION); the
    /// server refuses bad values as at creation.
    pub async fn alter_subscription(
        &self,
        topic: &str,
        name: &str,
        changes: SubscriptionChanges,
    ) -> Result<(), ClientError> {
        let request = Request::AlterSubscription(p::AlterSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
            ack_timeout_ms: changes.ack_timeout_ms,
            max_deliveries: changes.max_deliveries,
            dead_letter_topic: changes.dead_letter_topic,
            backoff: changes.backoff,
            push_endpoint: changes.push_endpoint,
            max_in_flight: changes.max_in_flight,
        });
        match self.call(request).await? {
            ResponseBody::SubscriptionAltered => Ok(()),
            other => Err(unexpected(&other, p::Op::AlterSubscription)),
        }
    }

    /// Queue subscriptions (of `topic`, or of every topic), sorted by topic
    /// and name, with their settings and current load.
    pub async fn list_subscriptions(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<SubscriptionInfo>, ClientError> {
        let request = Request::ListSubscriptions(p::ListSubscriptions {
            topic: topic.map(str::to_owned),
        });
        match self.call(request).await? {
            ResponseBody::Subscriptions(subs) => Ok(subs),
            other => Err(unexpected(&other, p::Op::ListSubscriptions)),
        }
    }

    /// Deletes a queue subscription and its lease state.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<(), ClientError> {
        let request = Request::DeleteSubscription(p::DeleteSubscription {
            topic: topic.to_owned(),
            name: name.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::SubscriptionDeleted => Ok(()),
            other => Err(unexpected(&other, p::Op::DeleteSubscription)),
        }
    }

    /// Leases up to `max` ready messages (the server clamps it to
    /// 1 … 1,000). If none is ready, waits up to `wait` (at most 5 minutes)
    /// for one; the answer may be empty.
    pub async fn receive(
        &self,
        topic: &str,
        name: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<LeasedMessage>, ClientError> {
        let request = Request::Receive(p::Receive {
            topic: topic.to_owned(),
            name: name.to_owned(),
            max,
            wait_ms: duration_ms(wait),
        });
        match self.call(request).await? {
            ResponseBody::Messages(messages) => Ok(messages),
            other => Err(unexpected(&other, p::Op::Receive)),
        }
    }

    /// Acknowledges leased messages: they are done. One result per receipt
    /// (`UNKNOWN_RECEIPT`, `LEASE_EXPIRED` change nothing). Answered once
    /// the acknowledgements are on disk.
    pub async fn ack(&self, topic: &str, name: &str, receipts: &[String]) -> ReceiptResults {
        let request = Request::Ack(p::Ack {
            topic: topic.to_owned(),
            name: name.to_owned(),
            receipts: receipts.to_vec(),
        });
        self.settle(request, receipts).await
    }

    /// Gives leased messages back as failed: each is delivered again after
    /// the longer of `delay` and the subscription's backoff, or
    /// dead-lettered at its max deliveries. `error` is kept for the dead
    /// letter. One result per receipt.
    pub async fn nack(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        delay: Duration,
        error: Option<&str>,
    ) -> ReceiptResults {
        let request = Request::Nack(p::Nack {
            topic: topic.to_owned(),
            name: name.to_owned(),
            receipts: receipts.to_vec(),
            delay_ms: duration_ms(delay),
            error: error.map(str::to_owned),
        });
        self.settle(request, receipts).await
    }

    /// Moves the leases' deadlines to now + `extend` (it replaces the old
    /// deadline; the server clamps it to 1 ms … 12 h). One result per
    /// receipt; receipts stay the same.
    pub async fn extend(
        &self,
        topic: &str,
        name: &str,
        receipts: &[String],
        extend: Duration,
    ) -> ReceiptResults {
        let request = Request::ExtendLease(p::ExtendLease {
            topic: topic.to_owned(),
            name: name.to_owned(),
            receipts: receipts.to_vec(),
            extend_ms: duration_ms(extend),
        });
        self.settle(request, receipts).await
    }

    /// Sends an ack, nack or extend and reads its answer: one result per
    /// receipt.
    async fn settle(&self, request: Request, receipts: &[String]) -> ReceiptResults {
        let op = request.op();
        let codes = match (op, self.call(request).await?) {
            (p::Op::Ack, ResponseBody::Acked(codes))
            | (p::Op::Nack, ResponseBody::Nacked(codes))
            | (p::Op::ExtendLease, ResponseBody::LeasesExtended(codes)) => codes,
            (op, other) => return Err(unexpected(&other, op)),
        };
        receipt_results(receipts, codes)
    }

    /// Republishes the subscription's dead letters (not yet redriven) to
    /// its topic; returns how many.
    pub async fn redrive(&self, topic: &str, name: &str) -> Result<u64, ClientError> {
        let request = Request::Redrive(p::Redrive {
            topic: topic.to_owned(),
            name: name.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::Redriven { count } => Ok(count),
            other => Err(unexpected(&other, p::Op::Redrive)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_results_pair_codes_with_receipts() {
        let receipts = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let codes = vec![
            None,
            Some(ErrorCode::LeaseExpired.into()),
            Some(ErrorCode::UnknownReceipt.into()),
        ];
        let results = receipt_results(&receipts, codes).expect("same length");
        assert!(results[0].is_ok());
        let expired = results[1].as_ref().expect_err("expired");
        assert_eq!(expired.code(), Some(ErrorCode::LeaseExpired));
        assert!(expired.message().contains("\"b\""), "{expired}");
        let unknown = results[2].as_ref().expect_err("unknown");
        assert_eq!(unknown.code_name(), "UNKNOWN_RECEIPT");
        // A count that does not match is the server's mistake, not a result.
        assert!(receipt_results(&receipts, vec![None]).is_err());
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
