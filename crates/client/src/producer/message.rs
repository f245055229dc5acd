//! What a caller hands the producer ([`Message`]) and what it gets back
//! ([`Delivered`]).

use super::now_ms;
use bytes::Bytes;
use std::time::Duration;

pub use spool_types::headers::{DELIVER_AT_HEADER, MESSAGE_ID_HEADER};

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Decides the partition unless `partition` is set.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// An explicit partition, overriding the key.
    pub partition: Option<u32>,
    /// Sent as the `spool-msg-id` header: the server stores a message with
    /// an ID it has seen on the topic within its window (2 minutes by
    /// default) only once, and answers a repeat with the original offset.
    pub message_id: Option<String>,
    /// Sent as the `spool-deliver-at` header: queue subscriptions do not
    /// deliver the message before this time (ms since the Unix epoch; the
    /// server cuts delays beyond 30 days).
    pub deliver_at_ms: Option<i64>,
}

impl Message {
    pub fn new(value: impl Into<Bytes>) -> Message {
        Message {
            value: value.into(),
            ..Message::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Message {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> Message {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Message {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Message {
        self.message_id = Some(id.into());
        self
    }

    pub fn with_deliver_at_ms(mut self, at_ms: i64) -> Message {
        self.deliver_at_ms = Some(at_ms);
        self
    }

    /// Not delivered to queue subscriptions before `delay` from now.
    pub fn with_delay(self, delay: Duration) -> Message {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.with_deliver_at_ms(now_ms().saturating_add(delay_ms))
    }

    /// The record headers: the caller's, then the ones standing for
    /// `message_id` and `deliver_at_ms`.
    pub(super) fn record_headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut headers: Vec<(String, Option<Vec<u8>>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
            .collect();
        if let Some(id) = &self.message_id {
            headers.push((MESSAGE_ID_HEADER.to_owned(), Some(id.clone().into_bytes())));
        }
        if let Some(at) = self.deliver_at_ms {
            headers.push((
                DELIVER_AT_HEADER.to_owned(),
                Some(at.to_string().into_bytes()),
            ));
        }
        headers
    }
}

/// Where a message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub partition: u32,
    pub offset: u64,
}
