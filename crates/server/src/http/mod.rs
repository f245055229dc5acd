//! The HTTP/JSON front end (axum): topics, publishing, fetching, queue
//! subscriptions (receive, ack, nack, extend, redrive), the side channel,
//! health checks and the OpenAPI document. Thin: it parses JSON, calls the
//! broker on a blocking thread and renders JSON; errors are
//! `application/problem+json` with the binary protocol's stable codes.

mod error;
mod json;
mod openapi;
mod requests;

use crate::notify::{wait_any, Notifier};
use crate::now_ms;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use error::{status_for, ApiError, ApiResult};
use serde::Deserialize;
use serde_json::{json, Value};
use spool_broker::{Broker, BrokerError};
use spool_types::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// Largest HTTP request body accepted (16 MiB): a batch plus JSON overhead.
pub const HTTP_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest `wait_ms` a receive or status wait may ask for (5 minutes).
pub const HTTP_WAIT_MS_MAX: u64 = 300_000;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub notifier: Arc<Notifier>,
    /// Hosts callback URLs may point at.
    pub allow: crate::outbound::AllowList,
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
            get(describe_topic).delete(delete_topic),
        )
        .route("/v1/topics/{topic}/messages", post(publish).get(fetch))
        .route(
            "/v1/topics/{topic}/subscriptions",
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            "/v1/topics/{topic}/subscriptions/{sub}",
            axum::routing::delete(delete_subscription),
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
        .route("/v1/events", get(events))
        .route("/v1/requests", post(requests::submit))
        .route("/v1/requests/{id}", get(requests::status))
        .route("/v1/requests/{id}/complete", post(requests::complete))
        .route("/v1/requests/{id}/fail", post(requests::fail))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
        .with_state(state)
}

/// Runs a blocking broker call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(BrokerError::new(ErrorCode::Internal, e.to_string())))?
        .map_err(ApiError)
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

async fn create_topic(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: json::CreateTopic = parse(&body)?;
    let name = req.name.clone();
    let (config, partitions) = req.into_config()?;
    let b = s.broker.clone();
    let n = name.clone();
    blocking(move || b.create_topic(&n, partitions, config, now_ms())).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "partitions": partitions})),
    )
        .into_response())
}

async fn list_topics(
    State(s): State<AppState>,
    Query(q): Query<json::ListQuery>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let topics = blocking(move || b.list_topics(q.pattern.as_deref())).await?;
    let topics: Vec<Value> = topics
        .into_iter()
        .map(|(name, partitions)| json!({"name": name, "partitions": partitions}))
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

async fn describe_topic(
    State(s): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let d = blocking(move || b.describe_topic(&topic)).await?;
    Ok(Json(json::describe(&d)))
}

async fn delete_topic(
    State(s): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<StatusCode> {
    let b = s.broker.clone();
    blocking(move || b.delete_topic(&topic, now_ms())).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn publish(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: json::Publish = parse(&body)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "\"messages\" must hold at least one message",
        ));
    }
    let b = s.broker.clone();
    let offsets = blocking(move || json::publish(&b, &topic, req, now_ms())).await?;
    Ok(Json(json!({ "offsets": offsets })))
}

async fn fetch(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<json::FetchQuery>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, 8 << 20);
    let partition = q.partition.unwrap_or(0);
    let read =
        blocking(move || b.fetch(&topic, partition, q.offset.unwrap_or(0), max_bytes)).await?;
    Ok(Json(json::fetched(
        partition,
        &read,
        q.offset.unwrap_or(0),
    )?))
}

async fn create_subscription(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: json::CreateSubscription = parse(&body)?;
    let name = req.name.clone();
    if req.kind.as_deref().unwrap_or("queue") == "stream" {
        // Stream subscriptions are consumer groups: they exist once joined.
        let b = s.broker.clone();
        let t = topic.clone();
        blocking(move || b.topic(&t).map(|_| ())).await?;
        return Ok((
            StatusCode::CREATED,
            Json(json!({"name": name, "kind": "stream"})),
        )
            .into_response());
    }
    let spec = req.into_spec(&topic)?;
    if let Some(url) = &spec.push_endpoint {
        s.allow.check(url).map_err(|e| {
            ApiError(BrokerError::new(
                ErrorCode::InvalidRequest,
                format!("push_endpoint: {e}"),
            ))
        })?;
    }
    let b = s.broker.clone();
    blocking(move || b.create_queue(spec, now_ms())).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "kind": "queue"})),
    )
        .into_response())
}

async fn list_subscriptions(
    State(s): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let specs = blocking(move || {
        b.topic(&topic)?;
        Ok(b.list_queues(Some(&topic)))
    })
    .await?;
    let subs: Vec<Value> = specs.iter().map(json::spec).collect();
    Ok(Json(json!({ "subscriptions": subs })))
}

async fn delete_subscription(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let b = s.broker.clone();
    blocking(move || b.delete_queue(&topic, &sub, now_ms())).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn receive(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: json::Receive = if body.is_empty() {
        json::Receive::default()
    } else {
        parse(&body)?
    };
    let max = req
        .max
        .unwrap_or(10)
        .clamp(1, spool_broker::queue::RECEIVE_MAX as u32) as usize;
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0).min(HTTP_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    let partitions = {
        let b = s.broker.clone();
        let t = topic.clone();
        blocking(move || b.topic(&t).map(|t| t.partitions.len() as u32)).await?
    };
    let notifies: Vec<_> = (0..partitions)
        .map(|p| s.notifier.partition(&topic, p))
        .collect();
    loop {
        let mut got: Option<Result<Vec<_>, BrokerError>> = None;
        let wake_at = {
            let q = s.broker.queue(&topic, &sub).map_err(ApiError)?;
            q.next_wakeup()
        };
        let until = match wake_at {
            Some(at) => {
                let ms = (at - now_ms()).max(1) as u64;
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(ms))
            }
            None => deadline,
        };
        wait_any(&notifies, None, until, || {
            let r = tokio::task::block_in_place(|| s.broker.receive(&topic, &sub, max, now_ms()));
            let ready = !matches!(&r, Ok(v) if v.is_empty());
            got = Some(r);
            ready || tokio::time::Instant::now() >= deadline
        })
        .await;
        match got {
            Some(Ok(messages))
                if !messages.is_empty() || tokio::time::Instant::now() >= deadline =>
            {
                let messages: Vec<Value> = messages.iter().map(json::leased).collect();
                return Ok(Json(json!({ "messages": messages })));
            }
            Some(Err(e)) => return Err(ApiError(e)),
            _ => {}
        }
    }
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

async fn ack(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: json::Receipts = parse(&body)?;
    let receipts = req.receipts.clone();
    let b = s.broker.clone();
    let results = blocking(move || b.ack(&topic, &sub, &req.receipts, now_ms())).await?;
    receipt_results(
        &receipts,
        results.into_iter().map(|r| r.map(|()| json!({}))).collect(),
    )
}

async fn nack(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: json::Receipts = parse(&body)?;
    let receipts = req.receipts.clone();
    let b = s.broker.clone();
    let results = blocking(move || {
        b.nack(
            &topic,
            &sub,
            &req.receipts,
            req.delay_ms.unwrap_or(0),
            req.error.as_deref(),
            now_ms(),
        )
    })
    .await?;
    receipt_results(
        &receipts,
        results.into_iter().map(|r| r.map(|()| json!({}))).collect(),
    )
}

async fn extend(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: json::Receipts = parse(&body)?;
    let receipts = req.receipts.clone();
    let extend_ms = req.extend_ms.unwrap_or(30_000);
    let b = s.broker.clone();
    let results =
        blocking(move || b.extend(&topic, &sub, &req.receipts, extend_ms, now_ms())).await?;
    receipt_results(
        &receipts,
        results
            .into_iter()
            .map(|r| r.map(|d| json!({"lease_deadline_ms": d})))
            .collect(),
    )
}

async fn redrive(
    State(s): State<AppState>,
    Path((topic, sub)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let moved = blocking(move || b.redrive(&topic, &sub, now_ms())).await?;
    Ok(Json(json!({ "moved": moved })))
}

async fn events(
    State(s): State<AppState>,
    Query(q): Query<json::FetchQuery>,
) -> ApiResult<Json<Value>> {
    let b = s.broker.clone();
    let offset = q.offset.unwrap_or(0);
    let read = blocking(move || {
        b.fetch(
            spool_broker::EVENTS_TOPIC,
            0,
            offset,
            q.max_bytes.unwrap_or(1 << 20).clamp(1, 8 << 20),
        )
    })
    .await?;
    let fetched = json::fetched(0, &read, offset)?;
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
