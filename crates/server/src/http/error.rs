//! Errors as `application/problem+json` (RFC 9457) carrying the same stable
//! codes as the binary protocol.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use spool_broker::BrokerError;
use spool_types::ErrorCode;

/// An API error: the broker's error plus the HTTP status chosen for its code.
#[derive(Debug)]
pub struct ApiError(pub BrokerError);

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        ApiError(e)
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError(BrokerError::new(ErrorCode::InvalidRequest, message))
    }
}

/// The HTTP status for each stable code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        UnknownTopic | UnknownPartition | UnknownGroup | UnknownSubscription | UnknownRequest
        | UnknownReceipt => StatusCode::NOT_FOUND,
        TopicExists | GroupExists | GroupNotEmpty | RequestFinished => StatusCode::CONFLICT,
        LeaseExpired => StatusCode::GONE,
        QueueFull | RateLimited | TooManyConnections | TooManyInFlight => {
            StatusCode::TOO_MANY_REQUESTS
        }
        MessageTooLarge | BatchTooLarge | FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ShuttingDown | NotLeader => StatusCode::SERVICE_UNAVAILABLE,
        Timeout => StatusCode::GATEWAY_TIMEOUT,
        StorageError | CorruptData | Internal => StatusCode::INTERNAL_SERVER_ERROR,
        UnknownRequestType => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(self.0.code);
        problem(status, self.0)
    }
}

/// `e` as a problem document with `status` (for the few places where the
/// status says more than the code's usual one, such as 408 for a body that
/// never arrived).
pub fn problem(status: StatusCode, e: BrokerError) -> Response {
    let body = super::views::Problem {
        kind: format!("https://spool.dev/errors/{}", e.code.name()),
        title: e.code.name().to_owned(),
        status: status.as_u16(),
        detail: e.message,
        code: e.code.name().to_owned(),
        code_number: e.code.as_u16(),
        retry_after_ms: e.retry_after_ms.map(u64::from),
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(ms) = e.retry_after_ms {
        if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    response
}

pub type ApiResult<T> = Result<T, ApiError>;
