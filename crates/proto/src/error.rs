//! The codec's own errors ([`FrameError`], [`DecodeError`], [`EncodeError`])
//! and the error a peer reports on the wire ([`WireError`], [`WireCode`]).

use spool_types::ErrorCode;
use std::fmt;
use std::num::NonZeroU16;

use crate::frame::FrameKind;

/// Why a frame's length prefix or header was refused.
///
/// After a frame error the byte stream cannot be trusted to be in sync any
/// more, so the connection should be closed (after at most one error
/// response with `op = 0` and `correlation_id = 0`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLarge { length: u32, max: usize },
    #[error("frame length {length} is shorter than the {min}-byte frame header")]
    TooShort { length: u32, min: usize },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    /// The bytes are a TLS record (content type `content_type`), not a
    /// frame: the peer speaks TLS and this end does not.
    #[error("a TLS record (content type {content_type}) arrived instead of a frame: the peer speaks TLS")]
    TlsRecord { content_type: u8 },
}

impl FrameError {
    /// The error code to report to the peer before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::TooShort { .. }
            | FrameError::UnknownKind { .. }
            | FrameError::TlsRecord { .. } => ErrorCode::MalformedFrame,
        }
    }
}

/// Why a frame body could not be decoded.
///
/// Offsets count bytes from the start of the body (the first byte after the
/// 7-byte frame header). `what` names the field, e.g. `"fetch.partitions"`.
/// The frame itself was well delimited, so the connection stays usable: the
/// server answers with [`DecodeError::code`] and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body ended before the field did (or an array count promises more
    /// elements than the remaining bytes could possibly hold).
    #[error("{what} at byte {offset}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: u64,
        have: usize,
    },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: usize },
    /// A field holds a value outside its defined set (an enum tag, a
    /// presence byte, the handshake magic, …).
    #[error("{what} at byte {offset}: invalid value {value}")]
    InvalidValue {
        what: &'static str,
        offset: usize,
        value: i64,
    },
    /// An array count is within the body but above a sanity limit.
    #[error("{what} at byte {offset}: {count} entries exceed the limit of {max}")]
    TooMany {
        what: &'static str,
        offset: usize,
        count: u32,
        max: usize,
    },
    /// Every field was read but bytes remain; a strict decoder refuses them so
    /// that encoder bugs surface instead of being silently ignored.
    #[error("{count} unexpected bytes after {what} at byte {offset}")]
    TrailingBytes {
        what: &'static str,
        offset: usize,
        count: usize,
    },
    /// No operation of this kind has this number.
    #[error("unknown {kind:?} op {op}")]
    UnknownOp { op: u16, kind: FrameKind },
}

impl DecodeError {
    /// The error code to report to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Truncated { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::TrailingBytes { .. } => ErrorCode::MalformedFrame,
            DecodeError::InvalidValue { .. } | DecodeError::TooMany { .. } => {
                ErrorCode::InvalidRequest
            }
            DecodeError::UnknownOp { .. } => ErrorCode::UnknownRequestType,
        }
    }
}

/// Why a message could not be encoded. On error the output buffer is left
/// exactly as it was before the call, so earlier pipelined frames survive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{what} is {len} bytes; the wire allows at most {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} has {count} entries; the limit is {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{what} value {value} cannot be represented on the wire")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("frame would be {len} bytes; the maximum is {max}")]
    FrameTooLarge { len: usize, max: usize },
}

/// A non-zero error code as it crosses the wire.
///
/// Wraps the raw number rather than an [`ErrorCode`] so that a code added by
/// a newer peer still decodes: [`WireCode::known`] is `None` for it, and
/// [`WireCode::raw`] keeps the number for logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireCode(NonZeroU16);

impl WireCode {
    /// The code for a raw number; `None` for 0, which means "no error".
    pub fn new(raw: u16) -> Option<WireCode> {
        NonZeroU16::new(raw).map(WireCode)
    }

    /// The number on the wire.
    pub fn raw(self) -> u16 {
        self.0.get()
    }

    /// The code, if this build knows it.
    pub fn known(self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.raw())
    }

    /// Whether retrying later may succeed. Unknown codes count as final: a
    /// client cannot know they are safe to retry.
    pub fn is_retriable(self) -> bool {
        self.known().is_some_and(ErrorCode::is_retriable)
    }
}

impl From<ErrorCode> for WireCode {
    fn from(code: ErrorCode) -> WireCode {
        // Every published code is >= 100, so the fallback never triggers; it
        // exists only to avoid a panic path.
        WireCode::new(code.as_u16()).unwrap_or(WireCode(NonZeroU16::MAX))
    }
}

impl PartialEq<ErrorCode> for WireCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        self.raw() == other.as_u16()
    }
}

impl fmt::Debug for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(code) => write!(f, "{code}({})", self.raw()),
            None => write!(f, "UNKNOWN({})", self.raw()),
        }
    }
}

impl fmt::Display for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(code) => write!(f, "{code}"),
            None => write!(f, "error {}", self.raw()),
        }
    }
}

/// An error reported by the peer: the body of a failed response, or the
/// reason a subscription was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: WireCode,
    /// Human-readable detail; never matched on by programs.
    pub message: String,
    /// How long to wait before retrying. `Some(0)` encodes as "none", so it
    /// decodes back as `None`.
    pub retry_after_ms: Option<u32>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn with_retry_after_ms(mut self, ms: u32) -> WireError {
        self.retry_after_ms = (ms != 0).then_some(ms);
        self
    }
}

impl From<DecodeError> for WireError {
    fn from(err: DecodeError) -> WireError {
        WireError::new(err.code(), err.to_string())
    }
}

impl From<FrameError> for WireError {
    fn from(err: FrameError) -> WireError {
        WireError::new(err.code(), err.to_string())
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(ms) = self.retry_after_ms {
            write!(f, " (retry after {ms} ms)")?;
        }
        Ok(())
    }
}

impl std::error::Error for WireError {}
