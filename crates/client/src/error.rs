//! [`ClientError`]: everything a client call can fail with, keeping the
//! server's wire error (code, message, retry hint) intact.

use spool_proto::{EncodeError, WireCode, WireError};
use spool_types::ErrorCode;
use std::sync::Arc;

/// Why a client call failed.
///
/// Errors are `Clone` because one failure often answers many callers: a
/// failed produce batch fails every message in it, and a dropped connection
/// fails every pending call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The connection is gone (closed by the server, a network failure, or
    /// an earlier fatal error); calls pending on it fail with this.
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// The server sent something this client cannot decode or did not
    /// expect (a framing error, a malformed body, a mismatched response).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("{0}")]
    Server(WireError),
    /// The client refused the call itself before sending anything, for the
    /// reason a server would have given (e.g. `MESSAGE_TOO_LARGE`).
    #[error("{code}: {message}")]
    Local { code: ErrorCode, message: String },
    /// The producer, subscriber or consumer this call went through has
    /// already shut down.
    #[error("closed: {0}")]
    Closed(String),
}

impl ClientError {
    /// The error code, where there is one: the server's code (if this build
    /// knows it) or the code of a client-side check.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => e.code.known(),
            ClientError::Local { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The raw wire code of a server error, including codes this build does
    /// not know.
    pub fn wire_code(&self) -> Option<WireCode> {
        match self {
            ClientError::Server(e) => Some(e.code),
            ClientError::Local { code, .. } => Some((*code).into()),
            _ => None,
        }
    }

    /// The server's retry hint, if it gave one.
    pub fn retry_after_ms(&self) -> Option<u32> {
        match self {
            ClientError::Server(e) => e.retry_after_ms,
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server(e) => e.code.is_retriable(),
            ClientError::Local { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// A stable upper-snake-case name for the failure, for programs and
    /// scripts: the error code's name (`QUEUE_FULL`, `UNKNOWN_TOPIC`, …),
    /// `ERROR_<n>` for a server code this build does not know, and
    /// `CONNECTION_ERROR`, `PROTOCOL_ERROR` or `CLOSED` otherwise.
    pub fn code_name(&self) -> String {
        match self {
            ClientError::Server(e) => match e.code.known() {
                Some(code) => code.name().to_owned(),
                None => format!("ERROR_{}", e.code.raw()),
            },
            ClientError::Local { code, .. } => code.name().to_owned(),
            ClientError::Io(_) | ClientError::Disconnected(_) => "CONNECTION_ERROR".to_owned(),
            ClientError::Protocol(_) => "PROTOCOL_ERROR".to_owned(),
            ClientError::Closed(_) => "CLOSED".to_owned(),
        }
    }

    /// The human-readable part, without the code name.
    pub fn message(&self) -> String {
        match self {
            ClientError::Server(e) => e.message.clone(),
            ClientError::Local { message, .. } => message.clone(),
            ClientError::Io(e) => e.to_string(),
            ClientError::Disconnected(m) | ClientError::Protocol(m) | ClientError::Closed(m) => {
                m.clone()
            }
        }
    }

    pub(crate) fn local(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError::Local {
            code,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(Arc::new(e))
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> ClientError {
        ClientError::Server(e)
    }
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> ClientError {
        let code = match e {
            EncodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::InvalidRequest,
        };
        ClientError::local(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_code_message_and_hint() {
        let e = ClientError::Server(
            WireError::new(ErrorCode::QueueFull, "topic t is full").with_retry_after_ms(250),
        );
        assert_eq!(e.code(), Some(ErrorCode::QueueFull));
        assert_eq!(e.code_name(), "QUEUE_FULL");
        assert_eq!(e.message(), "topic t is full");
        assert_eq!(e.retry_after_ms(), Some(250));
        assert!(e.is_retriable());
    }

    #[test]
    fn unknown_codes_are_named_by_number() {
        let code = WireCode::new(4242).expect("non-zero");
        let e = ClientError::Server(WireError {
            code,
            message: "new".into(),
            retry_after_ms: None,
        });
        assert_eq!(e.code(), None);
        assert_eq!(e.code_name(), "ERROR_4242");
        assert!(!e.is_retriable());
    }
}
