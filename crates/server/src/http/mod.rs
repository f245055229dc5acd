//! The HTTP/JSON front end (axum): topics, publishing, fetching, queue
//! subscriptions (receive, ack, nack, extend, redrive), the side channel,
//! health checks, the OpenAPI document (`/openapi.json`, generated from
//! the handlers' own types and `#[utoipa::path]` annotations) and its
//! reference page (`/docs`). Thin: it parses JSON, calls the
//! operations layer ([`Ops`], which authorises, validates, runs and waits)
//! and renders JSON; errors are `application/problem+json` with the binary
//! protocol's stable codes.
//!
//! Every request passes [`authenticate`] first: it gives the request an ID
//! (the `x-request-id` header, echoed, or a new one; every log line about
//! the request carries it) and, when authentication is on, checks the
//! `Authorization: Bearer` token (401 without a valid one) and hands the
//! handlers a [`Caller`], whose permissions each handler checks (403).
//! [`OPEN_PATHS`] need no token.

mod body;
mod docs;
mod error;
mod groups;
mod json;
mod links;
mod openapi;
mod params;
mod requests;
mod topics;
mod views;

use crate::auth::{Caller, Need};
use crate::ops::{self, Ops};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
pub use error::{status_for, ApiError, ApiResult};
use json::{Ack, AlterSubscription, CreateSubscription, Extend, Nack, Receive, SubscriptionKind};
use params::{ApiPath, SubscriptionPath, TopicPath};
use serde::Deserialize;
use spool_broker::{Broker, BrokerError};
use spool_types::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;
use views::{
    Health, ReceiptResult, ReceiptResults, Received, Redriven, SubscriptionCreated,
    SubscriptionList, SubscriptionView,
};

pub use body::{HTTP_BODY_BYTES_MAX, HTTP_BODY_READ_TIMEOUT_MS, HTTP_CONTROL_BODY_BYTES_MAX};
pub use spool_types::limits::HTTP_WAIT_MS_MAX;

/// The handlers' state: the operations layer.
pub type AppState = Arc<Ops>;

/// Paths served without a token, even when authentication is on.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];

/// The HTTP header carrying an HTTP request's trace ID (echoed when the
/// client sends one, else made up; every log line about the request
/// carries it). Not to be confused with a request record's ID.
pub const HTTP_REQUEST_ID_HEADER: &str = "x-request-id";

/// The token of an `Authorization: Bearer …` header, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A client's request ID if it is short, printable ASCII; else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(HTTP_REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// The middleware in front of every route: request ID and log span, then
/// authentication (see the module documentation).
async fn authenticate(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let id = request_id(req.headers());
    let started = std::time::Instant::now();
    // The route's template (`/v1/topics/{topic}`), not the path: one series
    // per route, however many topics.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    async move {
        let caller = if OPEN_PATHS.contains(&req.uri().path()) {
            Ok(Caller::Open)
        } else {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
            s.auth
                .authenticate(bearer(req.headers()), peer, "http")
                .and_then(|caller| s.auth.charge(&caller).map(|()| caller))
        };
        let mut response = match caller {
            Ok(caller) => {
                if let Some(name) = caller.name() {
                    tracing::debug!(token = name, "authenticated");
                }
                req.extensions_mut().insert(caller);
                next.run(req).await
            }
            Err(e) => {
                let unauthenticated = e.code == ErrorCode::Unauthenticated;
                let mut response = ApiError(e).into_response();
                if unauthenticated {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"spool\""),
                    );
                }
                response
            }
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(HTTP_REQUEST_ID_HEADER, v);
        }
        metrics::histogram!(
            "spool_request_duration_seconds",
            "listener" => "http",
            "op" => format!("{method} {route}")
        )
        .record(started.elapsed().as_secs_f64());
        response
    }
    .instrument(span)
    .await
}

/// Handlers take the [`Caller`] that [`authenticate`] put on the request.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Caller, ApiError> {
        // Absent only if the middleware did not run: refuse, never allow.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError(BrokerError::new(
                ErrorCode::Internal,
                "request reached a handler without authentication",
            ))
        })
    }
}

/// The whole HTTP API. Every route is described in [`openapi`]: a new one
/// needs `#[utoipa::path]` on its handler, typed bodies, parameters and
/// answers (`json`, `params`, `views`) and its handler in `openapi`'s
/// `paths(…)`. The `openapi` integration test checks both ways: each route
/// here is documented, each documented operation is routed.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(docs::page))
        .route("/metrics", get(metrics_text))
        .route(
            "/v1/topics",
            post(topics::create_topic).get(topics::list_topics),
        )
        .route(
            "/v1/topics/{topic}",
            get(topics::describe_topic)
                .delete(topics::delete_topic)
                .patch(topics::alter_topic),
        )
        .route(
            "/v1/topics/{topic}/messages",
            post(topics::publish).get(topics::fetch),
        )
        .route(
            "/v1/topics/{topic}/subscriptions",
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}",
            delete(delete_subscription).patch(alter_subscription),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/receive",
            post(receive),
        )
        .route("/v1/topics/{topic}/subscriptions/{sub}/ack", post(ack))
        .route("/v1/topics/{topic}/subscriptions/{sub}/nack", post(nack))
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/extend",
            post(extend),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/redrive",
            post(redrive),
        )
        .route("/v1/events", get(topics::events))
        .route("/v1/groups/{group}/join", post(groups::join))
        .route("/v1/groups/{group}/heartbeat", post(groups::heartbeat))
        .route("/v1/groups/{group}/commit", post(groups::commit))
        .route("/v1/groups/{group}/leave", post(groups::leave))
        .route("/v1/groups", get(groups::list))
        .route(
            "/v1/groups/{group}",
            get(groups::describe).delete(groups::delete),
        )
        .route(
            "/v1/groups/{group}/reset-offsets",
            post(groups::reset_offsets),
        )
        .route("/v1/groups/{group}/offsets", get(groups::offsets))
        .route("/v1/requests", post(requests::submit))
        .route("/v1/requests/{id}", get(requests::status))
        .route("/v1/requests/{id}/complete", post(requests::complete))
        .route("/v1/requests/{id}/fail", post(requests::fail))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Limits are per route, enforced by `body::read_body`, which buffers
        // the body before any extractor sees it.
        .layer(axum::middleware::from_fn(body::read_body))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// The HTTP API over `broker` without sockets, for in-process callers such
/// as the `http_json` fuzz target (`tower::ServiceExt::oneshot`):
/// authentication off, outbound hosts limited to loopback, and long polls
/// woken by the broker. The housekeeping tick, callbacks and push delivery
/// are not running.
pub fn in_process(broker: Arc<Broker>) -> Router {
    router(Arc::new(Ops::unstopped(
        broker,
        crate::outbound::AllowList::loopback(),
        Arc::new(crate::auth::Auth::disabled()),
    )))
}

/// Runs a blocking broker call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> ApiResult<T> {
    ops::blocking(f).await.map_err(ApiError)
}

/// Parses a JSON body, answering malformed JSON with a problem document.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics (text format; see docs/metrics.md)",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4")))]
async fn metrics_text(State(s): State<AppState>) -> ApiResult<Response> {
    let b = s.broker.clone();
    let text = blocking(move || Ok(crate::metrics::render(&b))).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    summary = "Liveness check",
    responses((status = 200, description = "The server is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    summary = "Readiness check",
    responses((status = 200, description = "The server is serving", body = Health)))]
async fn readyz() -> Json<Health> {
    healthz().await
}

async fn not_found() -> ApiError {
    ApiError(BrokerError::new(
        ErrorCode::UnknownRequestType,
        "no such endpoint; see /docs or /openapi.json",
    ))
}

async fn method_not_allowed() -> Response {
    let e = BrokerError::new(
        ErrorCode::UnknownRequestType,
        "this path does not take that method; see /docs or /openapi.json",
    );
    error::problem(StatusCode::METHOD_NOT_ALLOWED, e)
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions", tag = "subscriptions",
    summary = "Create a queue (or stream) subscription",
    params(TopicPath),
    request_body = CreateSubscription,
    responses((status = 201, description = "The subscription was created", body = SubscriptionCreated)))]
async fn create_subscription(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SubscriptionCreated>)> {
    caller.check(Need::Admin)?;
    let req: CreateSubscription = parse(&body)?;
    let name = req.name.clone();
    let kind = req.kind.unwrap_or_default();
    let how = match kind {
        SubscriptionKind::Stream => ops::SubscriptionKind::Stream,
        SubscriptionKind::Queue => ops::SubscriptionKind::Queue(req.into_spec(&p.topic)),
    };
    s.create_subscription(&caller, p.topic, name.clone(), how)
        .await?;
    let created = SubscriptionCreated { name, kind };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions", tag = "subscriptions",
    summary = "List a topic's queue subscriptions with their settings and load",
    params(TopicPath),
    responses((status = 200, description = "The subscriptions", body = SubscriptionList)))]
async fn list_subscriptions(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
) -> ApiResult<Json<SubscriptionList>> {
    let subscriptions = s
        .list_subscriptions(&caller, Some(&p.topic))?
        .iter()
        .map(|(spec, load)| SubscriptionView::new(spec, load))
        .collect();
    Ok(Json(SubscriptionList { subscriptions }))
}

#[utoipa::path(patch, path = "/v1/topics/{topic}/subscriptions/{sub}", tag = "subscriptions",
    summary = "Change a queue subscription's ack timeout, max deliveries, backoff, dead-letter \
        topic or push endpoint (null removes the last two)",
    params(SubscriptionPath),
    request_body = AlterSubscription,
    responses((status = 200, description = "The subscription as it is now", body = SubscriptionView)))]
async fn alter_subscription(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
    body: Bytes,
) -> ApiResult<Json<SubscriptionView>> {
    caller.check(Need::Admin)?;
    let patch = parse::<AlterSubscription>(&body)?.into_patch()?;
    let (spec, load) = s.alter_subscription(&caller, p.topic, p.sub, patch).await?;
    Ok(Json(SubscriptionView::new(&spec, &load)))
}

#[utoipa::path(delete, path = "/v1/topics/{topic}/subscriptions/{sub}", tag = "subscriptions",
    summary = "Delete a queue subscription",
    params(SubscriptionPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_subscription(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
) -> ApiResult<StatusCode> {
    s.delete_subscription(&caller, p.topic, p.sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions/{sub}/receive",
    tag = "subscriptions",
    summary = "Lease messages (long poll with wait_ms)",
    params(SubscriptionPath),
    request_body(content = Receive, description = "May be empty: the defaults"),
    responses((status = 200, description = "The leased messages (none if the wait ran out)",
        body = Received)))]
async fn receive(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    caller.check(Need::Consume(&p.topic))?;
    let req: Receive = if body.is_empty() {
        Receive::default()
    } else {
        parse(&body)?
    };
    let max = req
        .max
        .unwrap_or(10)
        .clamp(1, spool_broker::subscription::RECEIVE_MAX as u32) as usize;
    let wait_ms = req.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX);
    let room = ops::ReceiveRoom::UNLIMITED;
    let shape = &ops::Shape::BROKER;
    let messages = s
        .receive(&caller, &p.topic, &p.sub, max, wait_ms, room, shape)
        .await?;
    let messages = messages.iter().map(Into::into).collect();
    Ok(Json(Received { messages }))
}

/// Renders per-receipt results; if every receipt failed with one code, that
/// error is the response (so a single bad receipt reads as an error).
fn receipt_results(
    receipts: &[String],
    results: Vec<Result<Option<i64>, BrokerError>>,
) -> ApiResult<Json<ReceiptResults>> {
    if !results.is_empty() && results.iter().all(Result::is_err) {
        let codes: Vec<ErrorCode> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.code))
            .collect();
        if codes.windows(2).all(|w| w[0] == w[1]) {
            if let Some(Err(e)) = results.into_iter().next() {
                return Err(ApiError(e));
            }
        }
        return Err(ApiError::invalid("no receipt was accepted"));
    }
    let results = receipts
        .iter()
        .zip(results)
        .map(|(r, res)| receipt_result(r, res))
        .collect();
    Ok(Json(ReceiptResults { results }))
}

fn receipt_result(receipt: &str, res: Result<Option<i64>, BrokerError>) -> ReceiptResult {
    let (ok, lease_deadline_ms, code, detail) = match res {
        Ok(deadline) => (true, deadline, None, None),
        Err(e) => (false, None, Some(e.code.name().to_owned()), Some(e.message)),
    };
    ReceiptResult {
        receipt: receipt.to_owned(),
        ok,
        lease_deadline_ms,
        code,
        detail,
    }
}

/// Results without a deadline (ack, nack).
fn settled(results: Vec<Result<(), BrokerError>>) -> Vec<Result<Option<i64>, BrokerError>> {
    results.into_iter().map(|r| r.map(|()| None)).collect()
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions/{sub}/ack", tag = "subscriptions",
    summary = "Acknowledge leased messages by receipt",
    params(SubscriptionPath),
    request_body = Ack,
    responses((status = 200, description = "One result per receipt (an error if all failed alike)",
        body = ReceiptResults)))]
async fn ack(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
    body: Bytes,
) -> ApiResult<Json<ReceiptResults>> {
    caller.check(Need::Consume(&p.topic))?;
    let req: Ack = parse(&body)?;
    let results = s.ack(&caller, &p.topic, &p.sub, &req.receipts).await?;
    receipt_results(&req.receipts, settled(results))
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions/{sub}/nack", tag = "subscriptions",
    summary = "Give leased messages back, with an optional delay",
    params(SubscriptionPath),
    request_body = Nack,
    responses((status = 200, description = "One result per receipt (an error if all failed alike)",
        body = ReceiptResults)))]
async fn nack(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
    body: Bytes,
) -> ApiResult<Json<ReceiptResults>> {
    caller.check(Need::Consume(&p.topic))?;
    let req: Nack = parse(&body)?;
    let receipts = req.receipts.clone();
    let delay_ms = req.delay_ms.unwrap_or(0);
    let results = s
        .nack(&caller, p.topic, p.sub, req.receipts, delay_ms, req.error)
        .await?;
    receipt_results(&receipts, settled(results))
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions/{sub}/extend",
    tag = "subscriptions",
    summary = "Extend leases",
    params(SubscriptionPath),
    request_body = Extend,
    responses((status = 200,
        description = "One result per receipt with its new deadline (an error if all failed alike)",
        body = ReceiptResults)))]
async fn extend(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
    body: Bytes,
) -> ApiResult<Json<ReceiptResults>> {
    caller.check(Need::Consume(&p.topic))?;
    let req: Extend = parse(&body)?;
    let receipts = req.receipts.clone();
    let extend_ms = req.extend_ms.unwrap_or(30_000);
    let results = s
        .extend(&caller, p.topic, p.sub, req.receipts, extend_ms)
        .await?
        .into_iter()
        .map(|r| r.map(Some))
        .collect();
    receipt_results(&receipts, results)
}

#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions/{sub}/redrive",
    tag = "subscriptions",
    summary = "Move a subscription's dead letters back to its topic",
    params(SubscriptionPath),
    responses((status = 200, description = "How many were moved", body = Redriven)))]
async fn redrive(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubscriptionPath>,
) -> ApiResult<Json<Redriven>> {
    let moved = s.redrive(&caller, p.topic, p.sub).await?;
    Ok(Json(Redriven { moved }))
}
