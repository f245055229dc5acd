//! `/v1/topics`, `/v1/topics/{topic}/messages` and `/v1/events`: topics
//! (create, list, describe, alter, delete), publishing, reading a
//! partition from an offset, and the side channel.

use super::json::{self, AlterTopic, CreateTopic, Publish};
use super::params::{ApiPath, ApiQuery, FetchQuery, ListQuery, TopicPath};
use super::views::{
    EventView, Events, Fetched, Placed, Published, TopicList, TopicSummary, TopicView,
};
use super::{parse, ApiError, ApiResult, AppState, HTTP_WAIT_MS_MAX};
use crate::auth::{Caller, Need};
use crate::ops::{self, Ops};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

#[utoipa::path(post, path = "/v1/topics", tag = "topics",
    summary = "Create a topic",
    request_body = CreateTopic,
    responses((status = 201, description = "The topic was created", body = TopicSummary)))]
pub(super) async fn create_topic(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TopicSummary>)> {
    caller.check(Need::Admin)?;
    let req: CreateTopic = parse(&body)?;
    let name = req.name.clone();
    let replicas = req.replicas;
    let (config, partitions) = req.into_config();
    s.create_topic(&caller, name.clone(), partitions, replicas, config)
        .await?;
    Ok((StatusCode::CREATED, Json(TopicSummary { name, partitions })))
}

#[utoipa::path(get, path = "/v1/topics", tag = "topics",
    summary = "List topics",
    params(ListQuery),
    responses((status = 200, description = "The topics the caller may see", body = TopicList)))]
pub(super) async fn list_topics(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<TopicList>> {
    let topics = s
        .list_topics(&caller, q.pattern.as_deref())?
        .into_iter()
        .map(|(name, partitions)| TopicSummary { name, partitions })
        .collect();
    Ok(Json(TopicList { topics }))
}

#[utoipa::path(get, path = "/v1/topics/{topic}", tag = "topics",
    summary = "Describe a topic: settings, offsets and depth per partition",
    params(TopicPath),
    responses((status = 200, description = "The topic", body = TopicView)))]
pub(super) async fn describe_topic(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
) -> ApiResult<Json<TopicView>> {
    Ok(Json(TopicView::from(
        &s.describe_topic(&caller, &p.topic).await?,
    )))
}

#[utoipa::path(patch, path = "/v1/topics/{topic}", tag = "topics",
    summary = "Change a topic's limits, retention or durability",
    params(TopicPath),
    request_body = AlterTopic,
    responses((status = 200, description = "The topic with its new settings", body = TopicView)))]
pub(super) async fn alter_topic(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
    body: Bytes,
) -> ApiResult<Json<TopicView>> {
    caller.check(Need::Admin)?;
    let patch = parse::<AlterTopic>(&body)?.into_patch();
    let d = s.alter_topic(&caller, p.topic, patch).await?;
    Ok(Json(TopicView::from(&d)))
}

#[utoipa::path(delete, path = "/v1/topics/{topic}", tag = "topics",
    summary = "Delete a topic and its messages",
    params(TopicPath),
    responses((status = 204, description = "Deleted")))]
pub(super) async fn delete_topic(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
) -> ApiResult<StatusCode> {
    s.delete_topic(&caller, p.topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/topics/{topic}/messages", tag = "messages",
    operation_id = "publish",
    summary = "Publish messages (one atomic batch per partition)",
    params(TopicPath),
    request_body = Publish,
    responses((status = 200, description = "Where each message was stored, in order", body = Published)))]
pub(super) async fn publish(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
    body: Bytes,
) -> ApiResult<Json<Published>> {
    caller.check(Need::Produce(&p.topic))?;
    let req: Publish = parse(&body)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "\"messages\" must hold at least one message",
        ));
    }
    let records = json::records(req, crate::now_ms())?;
    let placed = s.publish(&caller, p.topic, records).await?;
    // A suppressed duplicate (its `spool-msg-id` stored before) is marked:
    // its offset is the original's.
    let offsets = placed
        .into_iter()
        .map(|p| Placed {
            partition: p.partition,
            offset: p.offset,
            duplicate: p.duplicate,
        })
        .collect();
    Ok(Json(Published { offsets }))
}

#[utoipa::path(get, path = "/v1/topics/{topic}/messages", tag = "messages",
    operation_id = "fetch_messages",
    summary = "Read a partition from an offset (long poll with wait_ms)",
    params(TopicPath, FetchQuery),
    responses((status = 200, description = "The messages read, and where to read next", body = Fetched)))]
pub(super) async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<TopicPath>,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> ApiResult<Json<Fetched>> {
    let partition = q.partition.unwrap_or(0);
    fetch_one(&s, &caller, p.topic, partition, &q)
        .await
        .map(Json)
}

/// Reads one partition as `q` asks (from `offset`, up to `max_bytes`,
/// waiting up to `wait_ms` when there is nothing).
async fn fetch_one(
    s: &Ops,
    caller: &Caller,
    topic: String,
    partition: u32,
    q: &FetchQuery,
) -> ApiResult<Fetched> {
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
    super::views::fetched(partition, &read, offset)
}

#[utoipa::path(get, path = "/v1/events", tag = "messages",
    operation_id = "read_events",
    summary = "Read the side channel (spool.errors): dead letters, failures",
    params(FetchQuery),
    responses((status = 200, description = "The events read, and where to read next", body = Events)))]
pub(super) async fn events(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> ApiResult<Json<Events>> {
    let topic = spool_broker::EVENTS_TOPIC.to_owned();
    let fetched = fetch_one(&s, &caller, topic, 0, &q).await?;
    // Events are JSON documents: show them as such.
    let events = fetched
        .messages
        .into_iter()
        .map(|m| EventView {
            offset: m.offset,
            event: m
                .value
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(Json(Events {
        events,
        next_offset: fetched.next_offset,
    }))
}
