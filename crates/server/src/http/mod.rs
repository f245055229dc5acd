//! The HTTP/JSON front end (axum): topics, publishing, fetching, queue
//! subscriptions (receive, ack, nack, extend, redrive), the side channel,
//! health checks and the OpenAPI document. Thin: it parses JSON, calls the
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
mod error;
mod groups;
mod json;
mod openapi;
mod requests;

use crate::auth::{Caller, Need};
use crate::ops::{self, Ops};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use error::{status_for, ApiError, ApiResult};
use serde::Deserialize;
use serde_json::{json, Value};
use spool_broker::{Broker, BrokerError};
use spool_types::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

pub use body::{HTTP_BODY_BYTES_MAX, HTTP_BODY_READ_TIMEOUT_MS, HTTP_CONTROL_BODY_BYTES_MAX};
pub use spool_types::limits::HTTP_WAIT_MS_MAX;

/// The handlers' state: the operations layer.
pub type AppState = Arc<Ops>;

/// Paths served without a token, even when authentication is on.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

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

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics_text))
        .route("/v1/topics", post(create_topic).get(list_topics))
        .route(
            "/v1/topics/{topic}",
            get(describe_topic).delete(delete_topic).patch(alter_topic),
        )
        .route("/v1/topics/{topic}/messages", post(publish).get(fetch))
        .route(
            "/v1/topics/{topic}/subscriptions",
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}",
            axum::routing::delete(delete_subscription).patch(alter_subscription),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/receive",
            post(receive),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/ack",
            post(settle::<ACK>),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/nack",
            post(settle::<NACK>),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/extend",
            post(settle::<EXTEND>),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}/redrive",
            post(redrive),
        )
        .route("/v1/events", get(events))
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

async fn metrics_text(State(s): State<AppState>) -> ApiResult<Response> {
    let b = s.broker.clone();
    let text = blocking(move || Ok(crate::metrics::render(&b))).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(response)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError(BrokerError::new(
        ErrorCode::UnknownRequestType,
        "no such endpoint; see /openapi.json",
    ))
}

async fn create_topic(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    caller.check(Need::Admin)?;
    let req: json::CreateTopic = parse(&body)?;
    let name = req.name.clone();
    let (config, partitions) = req.into_config()?;
    s.create_topic(&caller, name.clone(), partitions, config)
        .await?;
    Ok(created(json!({"name": name, "partitions": partitions})))
}

/// 201 Created with a JSON body.
fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn list_topics(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<json::ListQuery>,
) -> ApiResult<Json<Value>> {
    let topics: Vec<Value> = s
        .list_topics(&caller, q.pattern.as_deref())?
        .into_iter()
        .map(|(name, partitions)| json!({"name": name, "partitions": partitions}))
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

async fn describe_topic(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json::describe(&s.describe_topic(&caller, &topic)?)))
}

async fn alter_topic(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Admin)?;
    let patch = json::alter_patch(&parse::<Value>(&body)?)?;
    let d = s.alter_topic(&caller, topic, patch).await?;
    Ok(Json(json::describe(&d)))
}

async fn delete_topic(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_topic(&caller, topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn publish(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Produce(&topic))?;
    let req: json::Publish = parse(&body)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "\"messages\" must hold at least one message",
        ));
    }
    let records = json::records(req, crate::now_ms())?;
    let placed = s.publish(&caller, topic, records).await?;
    // A suppressed duplicate (its `spool-msg-id` stored before) is marked:
    // its offset is the original's.
    let offsets: Vec<Value> = placed
        .into_iter()
        .map(|p| {
            let mut v = json!({"partition": p.partition, "offset": p.offset});
            if p.duplicate {
                v["duplicate"] = json!(true);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "offsets": offsets })))
}

async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    Query(q): Query<json::FetchQuery>,
) -> ApiResult<Json<Value>> {
    let partition = q.partition.unwrap_or(0);
    fetch_one(&s, &caller, topic, partition, &q).await.map(Json)
}

/// Reads one partition as `q` asks (from `offset`, up to `max_bytes`,
/// waiting up to `wait_ms` when there is nothing): its messages as JSON.
async fn fetch_one(
    s: &Ops,
    caller: &Caller,
    topic: String,
    partition: u32,
    q: &json::FetchQuery,
) -> ApiResult<Value> {
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, 8 << 20);
    let offset = q.offset.unwrap_or(0);
    let asked = ops::FetchPartition {
        topic,
        partition,
        offset,
        max_bytes,
    };
    let wait_ms = q.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX);
    let fetched = s.fetch(caller, vec![asked], max_bytes, wait_ms).await?;
    let Some(read) = fetched.partitions.into_iter().next() else {
        return Err(ApiError::invalid("nothing was fetched"));
    };
    if let Some(e) = read.error {
        return Err(ApiError(e));
    }
    json::fetched(partition, &read, offset)
}

async fn create_subscription(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.check(Need::Admin)?;
    let req: json::CreateSubscription = parse(&body)?;
    let name = req.name.clone();
    let (kind, kind_name) = if req.kind.as_deref().unwrap_or("queue") == "stream" {
        (ops::SubscriptionKind::Stream, "stream")
    } else {
        (
            ops::SubscriptionKind::Queue(req.into_spec(&topic)?),
            "queue",
        )
    };
    s.create_subscription(&caller, topic, name.clone(), kind)
        .await?;
    Ok(created(json!({"name": name, "kind": kind_name})))
}

async fn list_subscriptions(
    State(s): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let subs: Vec<Value> = s
        .list_subscriptions(&caller, Some(&topic))?
        .iter()
        .map(|(spec, load)| json::subscription(spec, load))
        .collect();
    Ok(Json(json!({ "subscriptions": subs })))
}

async fn alter_subscription(
    State(s): State<AppState>,
    caller: Caller,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Admin)?;
    let patch = parse::<json::AlterSubscription>(&body)?.into_patch()?;
    let (spec, load) = s.alter_subscription(&caller, topic, sub, patch).await?;
    Ok(Json(json::subscription(&spec, &load)))
}

async fn delete_subscription(
    State(s): State<AppState>,
    caller: Caller,
    Path((topic, sub)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_subscription(&caller, topic, sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn receive(
    State(s): State<AppState>,
    caller: Caller,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Consume(&topic))?;
    let req: json::Receive = if body.is_empty() {
        json::Receive::default()
    } else {
        parse(&body)?
    };
    let max = req
        .max
        .unwrap_or(10)
        .clamp(1, spool_broker::subscription::RECEIVE_MAX as u32) as usize;
    let wait_ms = req.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX);
    let room = ops::ReceiveRoom::UNLIMITED;
    let messages = s
        .receive(
            &caller,
            &topic,
            &sub,
            max,
            wait_ms,
            room,
            &ops::Shape::BROKER,
        )
        .await?;
    let messages: Vec<Value> = messages.iter().map(json::leased).collect();
    Ok(Json(json!({ "messages": messages })))
}

/// Renders per-receipt results; if every receipt failed with one code, that
/// error is the response (so a single bad receipt reads as an error).
fn receipt_results(
    receipts: &[String],
    results: Vec<Result<Value, BrokerError>>,
) -> ApiResult<Json<Value>> {
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
    let out: Vec<Value> = receipts
        .iter()
        .zip(results)
        .map(|(r, res)| match res {
            Ok(mut v) => {
                v["receipt"] = json!(r);
                v["ok"] = json!(true);
                v
            }
            Err(e) => {
                json!({"receipt": r, "ok": false, "code": e.code.name(), "detail": e.message})
            }
        })
        .collect();
    Ok(Json(json!({ "results": out })))
}

/// What a receipts route does with its receipts (the const parameter of
/// [`settle`]).
const ACK: u8 = 0;
const NACK: u8 = 1;
const EXTEND: u8 = 2;

/// `…/ack`, `…/nack` and `…/extend`: one result per receipt.
async fn settle<const HOW: u8>(
    State(s): State<AppState>,
    caller: Caller,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Consume(&topic))?;
    let req: json::Receipts = parse(&body)?;
    let receipts = req.receipts.clone();
    let done = |results: Vec<Result<(), BrokerError>>| {
        results.into_iter().map(|r| r.map(|()| json!({}))).collect()
    };
    let results: Vec<Result<Value, BrokerError>> = match HOW {
        ACK => done(s.ack(&caller, &topic, &sub, &req.receipts).await?),
        NACK => {
            let delay_ms = req.delay_ms.unwrap_or(0);
            done(
                s.nack(&caller, topic, sub, req.receipts, delay_ms, req.error)
                    .await?,
            )
        }
        _ => {
            let extend_ms = req.extend_ms.unwrap_or(30_000);
            s.extend(&caller, topic, sub, req.receipts, extend_ms)
                .await?
                .into_iter()
                .map(|r| r.map(|d| json!({"lease_deadline_ms": d})))
                .collect()
        }
    };
    receipt_results(&receipts, results)
}

async fn redrive(
    State(s): State<AppState>,
    caller: Caller,
    Path((topic, sub)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let moved = s.redrive(&caller, topic, sub).await?;
    Ok(Json(json!({ "moved": moved })))
}

async fn events(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<json::FetchQuery>,
) -> ApiResult<Json<Value>> {
    let topic = spool_broker::EVENTS_TOPIC.to_owned();
    let fetched = fetch_one(&s, &caller, topic, 0, &q).await?;
    // Events are JSON documents: show them as such.
    let events: Vec<Value> = fetched["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|msg| {
                    let parsed = msg["value"]
                        .as_str()
                        .and_then(|v| serde_json::from_str::<Value>(v).ok());
                    json!({"offset": msg["offset"], "event": parsed.unwrap_or(Value::Null)})
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(
        json!({ "events": events, "next_offset": fetched["next_offset"] }),
    ))
}
