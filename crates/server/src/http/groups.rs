//! `/v1/groups/{group}/…`: consumer groups (stream subscriptions) over HTTP —
//! join, heartbeat, commit, leave and committed offsets, and their
//! administration (list, describe, reset offsets, delete) — the same calls
//! the binary protocol offers. Messages are then read with
//! `GET /v1/topics/{topic}/messages?partition=P&offset=O`.

use super::params::{ApiPath, ApiQuery, GroupPath, OffsetsQuery};
use super::views::{
    AssignmentView, Committed, CommittedOffset, CommittedOffsets, GroupList, GroupView,
    PartitionOffset, ResetOffsets,
};
use super::{parse, ApiResult, AppState};
use crate::auth::{Caller, Need};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use spool_broker::{OffsetReset, StartFrom};
use utoipa::ToSchema;

/// Where a member starts on partitions its group has no offset for.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The log start (the default).
    Earliest,
    /// Only messages written from now on.
    Latest,
}

/// `POST /v1/groups/{group}/join`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"topics": ["orders.*"], "session_timeout_ms": 30000, "start": "earliest"})))]
pub struct JoinRequest {
    /// Topics or patterns to consume.
    topics: Vec<String>,
    /// To rejoin as the same member (else a new ID is given).
    member_id: Option<String>,
    /// The member is dropped after this long without a heartbeat (default 30000).
    session_timeout_ms: Option<u64>,
    /// Default `earliest`.
    start: Option<Start>,
    /// Shown in descriptions (default `http`).
    client_id: Option<String>,
}

/// `POST /v1/groups/{group}/heartbeat`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"member_id": "m-1", "generation": 3})))]
pub struct HeartbeatRequest {
    member_id: String,
    /// The generation the member last saw.
    generation: u32,
}

/// One offset to commit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetToCommit {
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    topic: String,
    partition: u32,
    /// The next offset to read.
    offset: i64,
}

/// `POST /v1/groups/{group}/commit`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"member_id": "m-1", "offsets": [{"topic": "orders", "partition": 0, "offset": 42}]})))]
pub struct CommitRequest {
    member_id: String,
    /// Offsets of partitions the member holds.
    offsets: Vec<OffsetToCommit>,
}

/// `POST /v1/groups/{group}/leave`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"member_id": "m-1"})))]
pub struct LeaveRequest {
    member_id: String,
}

/// Where to move a group: an offset, or `"earliest"`, `"latest"`, an
/// offset in digits, an RFC 3339 time or `"@MS"` (ms since the Unix epoch).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ResetTarget {
    Offset(i64),
    Named(String),
}

/// `POST /v1/groups/{group}/reset-offsets`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"topic": "orders", "to": "2026-01-01T00:00:00Z"})))]
pub struct ResetRequest {
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    topic: String,
    to: ResetTarget,
}

#[utoipa::path(post, path = "/v1/groups/{group}/join", tag = "groups",
    operation_id = "join_group",
    summary = "Join a consumer group: member ID, generation, assigned partitions with offsets",
    params(GroupPath),
    request_body = JoinRequest,
    responses((status = 200, description = "The member's assignment", body = AssignmentView)))]
pub async fn join(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    body: Bytes,
) -> ApiResult<Json<AssignmentView>> {
    let req: JoinRequest = parse(&body)?;
    let start = match req.start {
        None | Some(Start::Earliest) => StartFrom::Earliest,
        Some(Start::Latest) => StartFrom::Latest,
    };
    let a = s
        .join_group(
            &caller,
            p.group,
            req.member_id,
            req.client_id.unwrap_or_else(|| "http".to_owned()),
            req.topics,
            req.session_timeout_ms.unwrap_or(30_000),
            start,
        )
        .await?;
    Ok(Json(a.into()))
}

#[utoipa::path(post, path = "/v1/groups/{group}/heartbeat", tag = "groups",
    operation_id = "heartbeat",
    summary = "Keep a member alive; answers the current assignment",
    params(GroupPath),
    request_body = HeartbeatRequest,
    responses((status = 200, description = "The member's assignment", body = AssignmentView)))]
pub async fn heartbeat(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    body: Bytes,
) -> ApiResult<Json<AssignmentView>> {
    caller.check(Need::ConsumeSomething)?;
    let req: HeartbeatRequest = parse(&body)?;
    let a = s
        .heartbeat(&caller, p.group, req.member_id, req.generation)
        .await?;
    Ok(Json(a.into()))
}

#[utoipa::path(post, path = "/v1/groups/{group}/commit", tag = "groups",
    operation_id = "commit_offsets",
    summary = "Commit offsets for held partitions",
    params(GroupPath),
    request_body = CommitRequest,
    responses((status = 200, description = "Committed (durably)", body = Committed)))]
pub async fn commit(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    body: Bytes,
) -> ApiResult<Json<Committed>> {
    let req: CommitRequest = parse(&body)?;
    let offsets: Vec<(String, u32, i64)> = req
        .offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    s.commit(&caller, p.group, req.member_id, offsets).await?;
    Ok(Json(Committed::default()))
}

#[utoipa::path(post, path = "/v1/groups/{group}/leave", tag = "groups",
    operation_id = "leave_group",
    summary = "Leave a consumer group",
    params(GroupPath),
    request_body = LeaveRequest,
    responses((status = 204, description = "Left")))]
pub async fn leave(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.check(Need::ConsumeSomething)?;
    let req: LeaveRequest = parse(&body)?;
    s.leave_group(&caller, p.group, req.member_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/groups/{group}", tag = "groups",
    operation_id = "delete_group",
    summary = "Delete a consumer group without members, and its committed offsets",
    params(GroupPath),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
) -> ApiResult<StatusCode> {
    s.delete_group(&caller, p.group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/groups/{group}/offsets", tag = "groups",
    operation_id = "group_offsets",
    summary = "A group's committed offsets on a topic",
    params(GroupPath, OffsetsQuery),
    responses((status = 200, description = "One per partition of the topic", body = CommittedOffsets)))]
pub async fn offsets(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    ApiQuery(q): ApiQuery<OffsetsQuery>,
) -> ApiResult<Json<CommittedOffsets>> {
    caller.check(Need::Consume(&q.topic))?;
    let n = s.broker.topic(&q.topic)?.partitions.len() as u32;
    let tps: Vec<(String, u32)> = (0..n).map(|p| (q.topic.clone(), p)).collect();
    let committed = s.committed(&caller, &p.group, &tps)?;
    let offsets = tps
        .into_iter()
        .zip(committed)
        .map(|((topic, partition), offset)| CommittedOffset {
            topic,
            partition,
            offset,
        })
        .collect();
    Ok(Json(CommittedOffsets { offsets }))
}

#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    operation_id = "list_groups",
    summary = "List consumer groups: members, committed offsets and lag",
    responses((status = 200, description = "The groups", body = GroupList)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<GroupList>> {
    let groups = s
        .list_groups(&caller)?
        .iter()
        .map(GroupView::from)
        .collect();
    Ok(Json(GroupList { groups }))
}

#[utoipa::path(get, path = "/v1/groups/{group}", tag = "groups",
    operation_id = "describe_group",
    summary = "Describe a consumer group: members with their partitions, committed offsets and lag",
    params(GroupPath),
    responses((status = 200, description = "The group", body = GroupView)))]
pub async fn describe(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
) -> ApiResult<Json<GroupView>> {
    Ok(Json(GroupView::from(&s.describe_group(&caller, &p.group)?)))
}

/// Sets a group's offsets on every partition of a topic (only while it
/// has no members); answers the new offsets.
#[utoipa::path(post, path = "/v1/groups/{group}/reset-offsets", tag = "groups",
    operation_id = "reset_group_offsets",
    summary = "Set a group's offsets on a topic (only while it has no members)",
    params(GroupPath),
    request_body = ResetRequest,
    responses((status = 200, description = "The new offsets", body = ResetOffsets)))]
pub async fn reset_offsets(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    body: Bytes,
) -> ApiResult<Json<ResetOffsets>> {
    let req: ResetRequest = parse(&body)?;
    let to = match &req.to {
        ResetTarget::Named(to) => OffsetReset::parse(to)?,
        ResetTarget::Offset(n) => OffsetReset::parse(&n.to_string())?,
    };
    let topic = req.topic.clone();
    let offsets = s
        .reset_group_offsets(&caller, p.group, req.topic, to)
        .await?
        .into_iter()
        .map(|(partition, offset)| PartitionOffset {
            topic: topic.clone(),
            partition,
            offset,
        })
        .collect();
    Ok(Json(ResetOffsets { offsets }))
}
