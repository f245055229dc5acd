//! Request bodies: a size limit per route, checked against `Content-Length`
//! before a byte of the body is read, and a deadline for reading it. The
//! body is buffered here, so handlers take `Bytes` that already passed both.
//!
//! Only the routes that carry messages or results take large bodies; the
//! rest (topics, subscriptions, acks, groups) fit in a small one, so a
//! client cannot make the server read 16 MiB to be told its topic
//! definition is malformed.

use super::error::{problem, ApiError};
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use spool_broker::BrokerError;
use spool_types::ErrorCode;
use std::time::Duration;

pub use spool_types::limits::HTTP_BODY_BYTES_MAX;

pub use spool_types::limits::HTTP_CONTROL_BODY_BYTES_MAX;

/// Longest a client may take to send a request body once its headers are
/// in (30 s: 16 MiB at about half a megabyte a second). Without it a
/// client could declare a large body and trickle it, holding its
/// connection and a growing buffer.
pub const HTTP_BODY_READ_TIMEOUT_MS: u64 = 30_000;

const _: () = assert!(HTTP_CONTROL_BODY_BYTES_MAX < HTTP_BODY_BYTES_MAX);

/// The body limit of a route (its template, as `MatchedPath` gives it).
pub fn limit_for(method: &Method, route: &str) -> usize {
    let large = *method == Method::POST
        && matches!(
            route,
            "/v1/topics/{topic}/messages"
                | "/v1/requests"
                | "/v1/requests/{id}/complete"
                | "/v1/requests/{id}/fail"
        );
    if large {
        HTTP_BODY_BYTES_MAX
    } else {
        HTTP_CONTROL_BODY_BYTES_MAX
    }
}

fn too_large(length: Option<usize>, limit: usize, method: &Method, route: &str) -> Response {
    let size = length.map_or_else(
        || "the request body".to_owned(),
        |n| format!("a body of {n} bytes"),
    );
    ApiError(BrokerError::new(
        ErrorCode::FrameTooLarge,
        format!("{size} exceeds the limit of {limit} bytes for {method} {route}"),
    ))
    .into_response()
}

/// Middleware: refuses a body over its route's limit (413, `FRAME_TOO_LARGE`)
/// as soon as the headers say so, or once that many bytes have arrived when
/// they do not; refuses a body that takes longer than
/// [`HTTP_BODY_READ_TIMEOUT_MS`] (408, `TIMEOUT`); else hands the handler the
/// whole body.
pub async fn read_body(req: Request, next: Next) -> Response {
    // Cheap clones (an `Arc<str>` and a small enum) kept for the error text.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", MatchedPath::as_str);
    let method = req.method().clone();
    let limit = limit_for(&method, route);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > limit) {
        return too_large(Some(n), limit, &method, route);
    }
    let (parts, body) = req.into_parts();
    let deadline = Duration::from_millis(HTTP_BODY_READ_TIMEOUT_MS);
    let bytes = match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return too_large(None, limit, &method, route);
        }
        Ok(Err(e)) => {
            return ApiError::invalid(format!("the request body could not be read: {e}"))
                .into_response();
        }
        Err(_) => {
            let e = BrokerError::new(
                ErrorCode::Timeout,
                format!("the request body did not arrive within {HTTP_BODY_READ_TIMEOUT_MS} ms"),
            );
            return problem(StatusCode::REQUEST_TIMEOUT, e);
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
