//! `/v1/requests`: asynchronous requests over HTTP — submit (202 Accepted
//! with a Location), status (optionally waiting), complete and fail.
//!
//! Permissions: submitting needs produce on the queue; reading a record
//! needs produce or consume on its queue (the submitter waits for its
//! result); completing or failing one needs consume on its queue.

use super::{blocking, parse, ApiError, ApiResult, AppState, HTTP_WAIT_MS_MAX};
use crate::auth::{Caller, Need, RecordAccess};
use crate::callbacks::public_json;
use crate::now_ms;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spool_broker::BrokerError;
use spool_types::ErrorCode;
use std::time::Duration;

/// Polling interval while a status request waits for the record to finish.
const WAIT_POLL_MS: u64 = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    queue: String,
    payload: Value,
    callback_url: Option<String>,
}

#[derive(Deserialize)]
pub struct WaitQuery {
    pub wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Complete {
    result: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    error: String,
    #[serde(default)]
    retry: bool,
}

/// Checks the caller may act on request `id` (its queue is looked up).
async fn check_record(
    s: &AppState,
    caller: &Caller,
    id: &str,
    access: RecordAccess,
) -> ApiResult<()> {
    if matches!(caller, Caller::Open) {
        return Ok(());
    }
    let b = s.broker.clone();
    let i = id.to_owned();
    let queue = blocking(move || b.get_request(&i, now_ms()).map(|r| r.queue)).await?;
    caller.check(access.need(&queue))?;
    Ok(())
}

pub async fn submit(State(s): State<AppState>, caller: Caller, body: Bytes) -> ApiResult<Response> {
    let req: Submit = parse(&body)?;
    caller.check(Need::Produce(&req.queue))?;
    if let Some(url) = &req.callback_url {
        s.allow.check(url).map_err(|e| {
            ApiError(BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("callback_url: {e}"),
            ))
        })?;
    }
    let payload = serde_json::to_vec(&req.payload).map_err(|e| ApiError::invalid(e.to_string()))?;
    let b = s.broker.clone();
    let record =
        blocking(move || b.submit_request(&req.queue, payload, true, req.callback_url, now_ms()))
            .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({"id": record.id, "status": "pending"})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/requests/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

pub async fn status(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    check_record(&s, &caller, &id, RecordAccess::Read).await?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let b = s.broker.clone();
        let i = id.clone();
        let record = blocking(move || b.get_request(&i, now_ms())).await?;
        let done = record.status.is_final();
        if done || tokio::time::Instant::now() >= deadline {
            let mut response = Json(public_json(&record)).into_response();
            if !done {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return Ok(response);
        }
        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
    }
}

pub async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_record(&s, &caller, &id, RecordAccess::Settle).await?;
    let req: Complete = parse(&body)?;
    let b = s.broker.clone();
    let record = blocking(move || b.complete_request(&id, req.result, now_ms())).await?;
    Ok(Json(public_json(&record)))
}

pub async fn fail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_record(&s, &caller, &id, RecordAccess::Settle).await?;
    let req: Fail = parse(&body)?;
    let b = s.broker.clone();
    let record = blocking(move || b.fail_request(&id, &req.error, req.retry, now_ms())).await?;
    Ok(Json(public_json(&record)))
}
