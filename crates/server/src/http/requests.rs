//! `/v1/requests`: asynchronous requests over HTTP — submit (202 Accepted
//! with a Location), status (optionally waiting), complete and fail.
//!
//! Permissions: submitting needs produce on the queue, and admin if the
//! queue does not exist yet (`Ops::submit_request`); reading a record
//! needs produce or consume on its queue (the submitter waits for its
//! result); completing or failing one needs consume on its queue.

use super::params::{ApiPath, ApiQuery, RequestPath, WaitQuery};
use super::views::{RequestView, Submitted};
use super::{parse, ApiError, ApiResult, AppState, HTTP_WAIT_MS_MAX};
use crate::auth::{Caller, Need};
use crate::ops::Submission;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/requests`: a request for a worker on `queue`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"queue": "thumbnails", "payload": {"image": "s3://bucket/cat.png"},
    "callback_url": "https://app.example/hooks/spool"})))]
pub struct SubmitRequest {
    /// The topic the request's message goes to (created if the caller is
    /// an admin and it does not exist).
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    queue: String,
    /// Any JSON value: what the worker receives.
    payload: Value,
    /// POSTed the finished record, signed (the host must be allowed).
    callback_url: Option<String>,
}

/// `POST /v1/requests/{id}/complete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"result": {"thumbnail": "s3://bucket/cat-small.png"}})))]
pub struct CompleteRequest {
    /// Any JSON value: what the submitter receives.
    result: Value,
}

/// `POST /v1/requests/{id}/fail`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"error": "image not found", "retry": false})))]
pub struct FailRequest {
    /// Why, for the submitter.
    error: String,
    /// Deliver the request again (else it fails for good).
    #[serde(default)]
    retry: bool,
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    operation_id = "submit_request",
    summary = "Submit an asynchronous request",
    request_body = SubmitRequest,
    responses((status = 202, description = "Accepted: poll the Location (or wait for the callback)",
        body = Submitted,
        headers(("Location" = String, description = "`/v1/requests/{id}`"),
            ("Retry-After" = u32, description = "Seconds before the first poll")))))]
pub async fn submit(State(s): State<AppState>, caller: Caller, body: Bytes) -> ApiResult<Response> {
    let req: SubmitRequest = parse(&body)?;
    caller.check(Need::Produce(&req.queue))?;
    let payload = serde_json::to_vec(&req.payload).map_err(|e| ApiError::invalid(e.to_string()))?;
    let submission = Submission {
        queue: req.queue,
        payload,
        json: true,
        callback_url: req.callback_url,
    };
    let record = s.submit_request(&caller, submission).await?;
    let submitted = Submitted {
        id: record.id.clone(),
        status: record.status.into(),
    };
    let mut response = (StatusCode::ACCEPTED, Json(submitted)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/requests/{}", record.id)) {
        headers.insert(header::LOCATION, v);
    }
    // Polling clients learn when to look first, as from a GET of an
    // unfinished record (RFC 9110: with 202, Retry-After is a hint).
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    operation_id = "get_request",
    summary = "A request's record; wait_ms holds the answer until it finishes",
    params(RequestPath, WaitQuery),
    responses((status = 200, description = "The record (with Retry-After while unfinished)",
        body = RequestView,
        headers(("Retry-After" = u32, description = "While unfinished: seconds before polling again")))))]
pub async fn status(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RequestPath>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Response> {
    let wait_ms = q.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX);
    let record = s.get_request(&caller, &p.id, wait_ms).await?;
    let mut response = Json(RequestView::from(&record)).into_response();
    if !record.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[utoipa::path(post, path = "/v1/requests/{id}/complete", tag = "requests",
    operation_id = "complete_request",
    summary = "Complete a request with a result (a worker)",
    params(RequestPath),
    request_body = CompleteRequest,
    responses((status = 200, description = "The finished record", body = RequestView)))]
pub async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RequestPath>,
    body: Bytes,
) -> ApiResult<Json<RequestView>> {
    let req: CompleteRequest = parse(&body)?;
    let record = s.complete_request(&caller, p.id, req.result).await?;
    Ok(Json(RequestView::from(&record)))
}

#[utoipa::path(post, path = "/v1/requests/{id}/fail", tag = "requests",
    operation_id = "fail_request",
    summary = "Fail a request, for good or to be retried (a worker)",
    params(RequestPath),
    request_body = FailRequest,
    responses((status = 200, description = "The record", body = RequestView)))]
pub async fn fail(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RequestPath>,
    body: Bytes,
) -> ApiResult<Json<RequestView>> {
    let req: FailRequest = parse(&body)?;
    let record = s.fail_request(&caller, p.id, req.error, req.retry).await?;
    Ok(Json(RequestView::from(&record)))
}
