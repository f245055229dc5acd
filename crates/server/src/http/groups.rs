//! `/v1/groups/{group}/…`: consumer groups (stream subscriptions) over HTTP —
//! join, heartbeat, commit, leave and committed offsets, and their
//! administration (list, describe, reset offsets, delete) — the same calls
//! the binary protocol offers. Messages are then read with
//! `GET /v1/topics/{topic}/messages?partition=P&offset=O`.

use super::{parse, ApiError, ApiResult, AppState};
use crate::auth::{Caller, Need};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spool_broker::{Assignment, GroupInfo, OffsetReset, StartFrom};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    topics: Vec<String>,
    member_id: Option<String>,
    session_timeout_ms: Option<u64>,
    start: Option<String>,
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    member_id: String,
    generation: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offset {
    topic: String,
    partition: u32,
    offset: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Commit {
    member_id: String,
    offsets: Vec<Offset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Leave {
    member_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    topic: String,
    /// `"earliest"`, `"latest"`, an offset (number or digits), an RFC 3339
    /// time or `"@MS"` (ms since the Unix epoch).
    to: Value,
}

#[derive(Deserialize)]
pub struct OffsetsQuery {
    pub topic: String,
}

fn assignment(a: Assignment) -> Json<Value> {
    let parts: Vec<Value> = a
        .partitions
        .iter()
        .map(|(t, p, o)| json!({"topic": t, "partition": p, "offset": o}))
        .collect();
    Json(json!({"member_id": a.member_id, "generation": a.generation, "assignment": parts}))
}

pub async fn join(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Join = parse(&body)?;
    let start = match req.start.as_deref() {
        None | Some("earliest") => StartFrom::Earliest,
        Some("latest") => StartFrom::Latest,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "start {o:?}: use \"earliest\" or \"latest\""
            )))
        }
    };
    let a = s
        .join_group(
            &caller,
            group,
            req.member_id,
            req.client_id.unwrap_or_else(|| "http".to_owned()),
            req.topics,
            req.session_timeout_ms.unwrap_or(30_000),
            start,
        )
        .await?;
    Ok(assignment(a))
}

pub async fn heartbeat(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check(Need::ConsumeSomething)?;
    let req: Heartbeat = parse(&body)?;
    let a = s
        .heartbeat(&caller, group, req.member_id, req.generation)
        .await?;
    Ok(assignment(a))
}

pub async fn commit(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Commit = parse(&body)?;
    let offsets: Vec<(String, u32, i64)> = req
        .offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    s.commit(&caller, group, req.member_id, offsets).await?;
    Ok(Json(json!({})))
}

pub async fn leave(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.check(Need::ConsumeSomething)?;
    let req: Leave = parse(&body)?;
    s.leave_group(&caller, group, req.member_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a group without members, and its committed offsets.
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    let deleted = s.delete_group(&caller, group).await;
    Ok(deleted.map(|()| StatusCode::NO_CONTENT)?)
}

pub async fn offsets(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Query(q): Query<OffsetsQuery>,
) -> ApiResult<Json<Value>> {
    caller.check(Need::Consume(&q.topic))?;
    let n = s.broker.topic(&q.topic)?.partitions.len() as u32;
    let tps: Vec<(String, u32)> = (0..n).map(|p| (q.topic.clone(), p)).collect();
    let committed = s.committed(&caller, &group, &tps)?;
    let rows: Vec<Value> = tps
        .into_iter()
        .zip(committed)
        .map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o}))
        .collect();
    Ok(Json(json!({ "offsets": rows })))
}

/// A group as `GET /v1/groups` and `GET /v1/groups/{group}` show it.
fn group_json(g: &GroupInfo) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|(id, held)| {
            let assignment: Vec<Value> = held
                .iter()
                .map(|(t, p)| json!({"topic": t, "partition": p}))
                .collect();
            json!({"member_id": id, "assignment": assignment})
        })
        .collect();
    let partitions: Vec<Value> = g
        .partitions
        .iter()
        .map(|l| {
            json!({"topic": l.topic, "partition": l.partition, "committed": l.committed,
                   "end_offset": l.end_offset, "lag": l.lag})
        })
        .collect();
    json!({"group": g.group, "generation": g.generation, "members": members,
           "partitions": partitions})
}

pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let groups: Vec<Value> = s.list_groups(&caller)?.iter().map(group_json).collect();
    Ok(Json(json!({ "groups": groups })))
}

pub async fn describe(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(group_json(&s.describe_group(&caller, &group)?)))
}

/// Sets a group's offsets on every partition of a topic (only while it
/// has no members); answers the new offsets.
pub async fn reset_offsets(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Reset = parse(&body)?;
    let to = match &req.to {
        Value::String(to) => OffsetReset::parse(to)?,
        Value::Number(n) => OffsetReset::parse(&n.to_string())?,
        _ => return Err(ApiError::invalid("\"to\" must be a string or an offset")),
    };
    let topic = req.topic.clone();
    let offsets: Vec<Value> = s
        .reset_group_offsets(&caller, group, req.topic, to)
        .await?
        .into_iter()
        .map(|(p, o)| json!({"topic": topic, "partition": p, "offset": o}))
        .collect();
    Ok(Json(json!({ "offsets": offsets })))
}
