//! The broker's error: a stable code plus a message a person understands.

use spool_log::LogError;
use spool_types::{ErrorCode, NameError};
use std::fmt;

/// An error that can cross the network unchanged: the stable [`ErrorCode`],
/// a human message, and for retriable refusals a hint of when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u32>,
}

impl BrokerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> BrokerError {
        BrokerError {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn retry_after(mut self, ms: u32) -> BrokerError {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn unknown_topic(topic: &str) -> BrokerError {
        BrokerError::new(
            ErrorCode::UnknownTopic,
            format!("topic {topic:?} does not exist"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> BrokerError {
        BrokerError::new(ErrorCode::InvalidRequest, message)
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for BrokerError {}

impl From<LogError> for BrokerError {
    fn from(e: LogError) -> BrokerError {
        BrokerError::new(e.code(), e.to_string())
    }
}

impl From<spool_batch::BatchError> for BrokerError {
    fn from(e: spool_batch::BatchError) -> BrokerError {
        BrokerError::new(e.code(), e.to_string())
    }
}

/// Converts a name error, choosing the code by what kind of name it was.
pub fn name_error(what: &str, value: &str, e: NameError) -> BrokerError {
    let code = match e {
        NameError::Reserved => ErrorCode::ReservedTopicName,
        _ => ErrorCode::InvalidTopicName,
    };
    BrokerError::new(code, format!("{what} {value:?}: {e}"))
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
