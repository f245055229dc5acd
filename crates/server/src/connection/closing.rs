//! Connections the server closes because of what their client did: why
//! ([`CloseReason`], the `reason` label of
//! `spool_connections_closed_total`), logged at debug level only — a flood
//! of bad clients must not become a flood of log lines (10,000 handshake
//! timeouts logged at once stalled the server for half a second). The one
//! exception is a TLS client on a plain listener, a configuration mistake
//! its operator needs to see: warned about, at most once a minute.

use spool_proto::FrameError;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// No Hello within the handshake deadline.
    HandshakeTimeout,
    /// A frame header the server cannot make sense of.
    MalformedFrame,
    /// A response or push frame from a client.
    NonRequestFrame,
    /// A length prefix over the frame limit.
    FrameTooLarge,
    /// A client that read nothing while its answers waited.
    SlowClient,
    /// A TLS handshake on the plain (non-TLS) listener.
    TlsOnPlainListener,
}

impl CloseReason {
    /// Every reason, for registering the counters at zero.
    pub const ALL: [CloseReason; 6] = [
        CloseReason::HandshakeTimeout,
        CloseReason::MalformedFrame,
        CloseReason::NonRequestFrame,
        CloseReason::FrameTooLarge,
        CloseReason::SlowClient,
        CloseReason::TlsOnPlainListener,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::MalformedFrame => "malformed_frame",
            CloseReason::NonRequestFrame => "non_request_frame",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::SlowClient => "slow_client",
            CloseReason::TlsOnPlainListener => "tls_on_plain_listener",
        }
    }

    /// Why a frame error closes a connection.
    pub fn of_frame_error(e: &FrameError) -> CloseReason {
        match e {
            FrameError::TooLarge { .. } => CloseReason::FrameTooLarge,
            FrameError::TlsRecord { .. } => CloseReason::TlsOnPlainListener,
            _ => CloseReason::MalformedFrame,
        }
    }
}

/// Least time between two warnings about TLS clients on the plain
/// listener; the ones between are logged at debug level (and all counted).
const TLS_ON_PLAIN_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// When the last such warning was logged.
static TLS_ON_PLAIN_WARNED: Mutex<Option<Instant>> = Mutex::new(None);

/// Notes that the server is closing a connection because of what the
/// client did: logged (see the module's documentation) and counted in
/// `spool_connections_closed_total{reason}`.
pub(crate) fn closing(peer: SocketAddr, reason: CloseReason, why: &dyn std::fmt::Display) {
    if reason == CloseReason::TlsOnPlainListener && tls_warning_due(Instant::now()) {
        tracing::warn!(
            %peer,
            "a client tried TLS on a plain listener: this server does not speak TLS \
             (start it with --tls-cert-file and --tls-key-file, or connect without TLS); \
             further ones are logged at debug level for a minute"
        );
    } else {
        tracing::debug!(%peer, reason = reason.label(), "closing connection: {why}");
    }
    metrics::counter!("spool_connections_closed_total", "reason" => reason.label()).increment(1);
}

/// Whether the TLS-on-plain warning may be logged `now` (and if so, notes
/// that it was).
fn tls_warning_due(now: Instant) -> bool {
    let mut last = TLS_ON_PLAIN_WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let due = last.is_none_or(|at| now.duration_since(at) >= TLS_ON_PLAIN_WARNING_INTERVAL);
    if due {
        *last = Some(now);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<_> =
            CloseReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), CloseReason::ALL.len());
    }

    #[test]
    fn frame_errors_map_to_their_reasons() {
        let tls = FrameError::TlsRecord { content_type: 22 };
        assert_eq!(
            CloseReason::of_frame_error(&tls),
            CloseReason::TlsOnPlainListener
        );
        let large = FrameError::TooLarge { length: 1, max: 0 };
        assert_eq!(
            CloseReason::of_frame_error(&large),
            CloseReason::FrameTooLarge
        );
    }
}
