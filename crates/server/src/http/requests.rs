//! `/v1/requests`: asynchronous requests over HTTP — submit (202 Accepted
//! with a Location), status (optionally waiting), complete and fail.
//!
//! Permissions: submitting needs produce on the queue, and admin if the
//! queue does not exist yet (`Ops::submit_request`); reading a record
//! needs produce or consume on its queue (the submitter waits for its
//! result); completing or failing one needs consume on its queue.

use super::{parse, ApiError, ApiResult, AppState, HTTP_WAIT_MS_MAX};
use crate::auth::{Caller, Need};
use crate::callbacks::public_json;
use crate::ops::Submission;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

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

pub async fn submit(State(s): State<AppState>, caller: Caller, body: Bytes) -> ApiResult<Response> {
    let req: Submit = parse(&body)?;
    caller.check(Need::Produce(&req.queue))?;
    let payload = serde_json::to_vec(&req.payload).map_err(|e| ApiError::invalid(e.to_string()))?;
    let submission = Submission {
        queue: req.queue,
        payload,
        json: true,
        callback_url: req.callback_url,
    };
    let record = s.submit_request(&caller, submission).await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({"id": record.id, "status": record.status.as_str()})),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/requests/{}", record.id)) {
        headers.insert(header::LOCATION, v);
    }
    // Polling clients learn when to look first, as from a GET of an
    // unfinished record (RFC 9110: with 202, Retry-After is a hint).
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

pub async fn status(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let wait_ms = q.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX);
    let record = s.get_request(&caller, &id, wait_ms).await?;
    let mut response = Json(public_json(&record)).into_response();
    if !record.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

pub async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Complete = parse(&body)?;
    let record = s.complete_request(&caller, id, req.result).await?;
    Ok(Json(public_json(&record)))
}

pub async fn fail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Fail = parse(&body)?;
    let record = s.fail_request(&caller, id, req.error, req.retry).await?;
    Ok(Json(public_json(&record)))
}
