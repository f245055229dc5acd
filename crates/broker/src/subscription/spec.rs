//! A queue subscription's settings ([`SubscriptionSpec`]), as created, persisted
//! in the metadata log and turned into the rules the state machine follows.

use super::state::{Backoff, DeliveryMode, Rules};
use super::LEASE_MS_MAX;
use crate::error::{BrokerError, Result};
use serde::{Deserialize, Serialize};
use spool_types::ErrorCode;

/// Names one queue subscription: its topic and its name. Where a string is
/// needed (the map keys of a metadata snapshot) it is written `topic/name`;
/// neither part can hold a '/', so the split is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionKey {
    pub topic: String,
    pub name: String,
}

impl SubscriptionKey {
    pub fn new(topic: &str, name: &str) -> SubscriptionKey {
        SubscriptionKey {
            topic: topic.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for SubscriptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.name)
    }
}

impl Serialize for SubscriptionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubscriptionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (topic, name) = text.split_once('/').ok_or_else(|| {
            serde::de::Error::custom(format!("subscription key {text:?} is not topic/name"))
        })?;
        Ok(SubscriptionKey::new(topic, name))
    }
}

/// How a queue subscription behaves; persisted in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    pub topic: String,
    pub name: String,
    pub ack_timeout_ms: u64,
    /// 0 means unlimited.
    pub max_deliveries: u32,
    pub dead_letter_topic: Option<String>,
    pub backoff: BackoffSpec,
    pub mode: ModeSpec,
    pub ordered: bool,
    /// When set, the broker POSTs each message to this URL (2xx = ack,
    /// anything else or a timeout = nack) instead of waiting to be polled.
    #[serde(default)]
    pub push_endpoint: Option<String>,
    /// Most concurrent pushes to `push_endpoint`.
    #[serde(default = "default_push_in_flight")]
    pub push_max_in_flight: u32,
}

/// Default cap on concurrent pushes to one endpoint.
pub const PUSH_IN_FLIGHT_DEFAULT: u32 = 16;
pub use spool_types::limits::PUSH_IN_FLIGHT_MAX;

fn default_push_in_flight() -> u32 {
    PUSH_IN_FLIGHT_DEFAULT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BackoffSpec {
    Fixed { delay_ms: u64 },
    Exponential { initial_ms: u64, max_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModeSpec {
    #[default]
    AtLeastOnce,
    AtMostOnce,
}

/// What `alter_subscription` changes: each `None` leaves its setting as
/// it is. For the dead-letter topic and the push endpoint, `Some(None)`
/// removes the setting and `Some(Some(_))` sets it. The mode and ordering
/// are fixed at creation (the state of leases in flight depends on them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionPatch {
    pub ack_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    pub dead_letter_topic: Option<Option<String>>,
    pub backoff: Option<BackoffSpec>,
    pub push_endpoint: Option<Option<String>>,
    pub push_max_in_flight: Option<u32>,
}

impl SubscriptionPatch {
    /// Whether it changes nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == SubscriptionPatch::default()
    }
}

impl SubscriptionSpec {
    pub fn key(&self) -> SubscriptionKey {
        SubscriptionKey::new(&self.topic, &self.name)
    }

    /// Defaults: 30 s ack timeout, 5 deliveries, no backoff, at-least-once.
    pub fn new(topic: &str, name: &str) -> SubscriptionSpec {
        SubscriptionSpec {
            topic: topic.to_owned(),
            name: name.to_owned(),
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter_topic: None,
            backoff: BackoffSpec::Fixed { delay_ms: 0 },
            mode: ModeSpec::AtLeastOnce,
            ordered: false,
            push_endpoint: None,
            push_max_in_flight: PUSH_IN_FLIGHT_DEFAULT,
        }
    }

    /// This spec with `patch` applied (not yet validated).
    pub fn apply(&self, patch: &SubscriptionPatch) -> SubscriptionSpec {
        let mut spec = self.clone();
        if let Some(v) = patch.ack_timeout_ms {
            spec.ack_timeout_ms = v;
        }
        if let Some(v) = patch.max_deliveries {
            spec.max_deliveries = v;
        }
        if let Some(v) = &patch.dead_letter_topic {
            spec.dead_letter_topic = v.clone();
        }
        if let Some(v) = patch.backoff {
            spec.backoff = v;
        }
        if let Some(v) = &patch.push_endpoint {
            spec.push_endpoint = v.clone();
        }
        if let Some(v) = patch.push_max_in_flight {
            spec.push_max_in_flight = v;
        }
        spec
    }

    /// The settings in which `asked` differs from this spec, each as
    /// `name is X, not Y` (X this spec's, Y asked), for a `GROUP_EXISTS`
    /// that says what to change (or to alter).
    pub fn differences(&self, asked: &SubscriptionSpec) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |name: &str, have: String, want: String| {
            if have != want {
                out.push(format!("{name} is {have}, not {want}"));
            }
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
        differ(
            "ack_timeout_ms",
            self.ack_timeout_ms.to_string(),
            asked.ack_timeout_ms.to_string(),
        );
        differ(
            "max_deliveries",
            self.max_deliveries.to_string(),
            asked.max_deliveries.to_string(),
        );
        differ(
            "dead_letter_topic",
            opt(&self.dead_letter_topic),
            opt(&asked.dead_letter_topic),
        );
        differ(
            "backoff",
            format!("{:?}", self.backoff),
            format!("{:?}", asked.backoff),
        );
        differ(
            "mode",
            format!("{:?}", self.mode),
            format!("{:?}", asked.mode),
        );
        differ(
            "ordered",
            self.ordered.to_string(),
            asked.ordered.to_string(),
        );
        differ(
            "push_endpoint",
            opt(&self.push_endpoint),
            opt(&asked.push_endpoint),
        );
        differ(
            "push_max_in_flight",
            self.push_max_in_flight.to_string(),
            asked.push_max_in_flight.to_string(),
        );
        out
    }

    pub fn validate(&self) -> Result<()> {
        if self.ack_timeout_ms == 0 || self.ack_timeout_ms > LEASE_MS_MAX {
            return Err(BrokerError::new(
                ErrorCode::InvalidConfig,
                format!("ack_timeout_ms must be 1 to {LEASE_MS_MAX}"),
            ));
        }
        if self.push_max_in_flight == 0 || self.push_max_in_flight > PUSH_IN_FLIGHT_MAX {
            return Err(BrokerError::new(
                ErrorCode::InvalidConfig,
                format!("max_in_flight must be 1 to {PUSH_IN_FLIGHT_MAX}"),
            ));
        }
        if let BackoffSpec::Exponential { initial_ms, max_ms } = self.backoff {
            if initial_ms == 0 || max_ms < initial_ms {
                return Err(BrokerError::new(
                    ErrorCode::InvalidConfig,
                    "exponential backoff needs 0 < initial_ms <= max_ms",
                ));
            }
        }
        Ok(())
    }

    pub fn rules(&self) -> Rules {
        Rules {
            ack_timeout_ms: self.ack_timeout_ms,
            max_deliveries: self.max_deliveries,
            backoff: match self.backoff {
                BackoffSpec::Fixed { delay_ms } => Backoff::Fixed { delay_ms },
                BackoffSpec::Exponential { initial_ms, max_ms } => {
                    Backoff::Exponential { initial_ms, max_ms }
                }
            },
            mode: match self.mode {
                ModeSpec::AtLeastOnce => DeliveryMode::AtLeastOnce,
                ModeSpec::AtMostOnce => DeliveryMode::AtMostOnce,
            },
            ordered: self.ordered,
        }
    }
}
