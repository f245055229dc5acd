//! The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json`.
//! A test checks that every path listed here is routed and vice versa.

use axum::Json;
use serde_json::{json, Value};

/// Every (method, path) the router serves; the test compares against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
    ("post", "/v1/topics"),
    ("get", "/v1/topics"),
    ("get", "/v1/topics/{topic}"),
    ("delete", "/v1/topics/{topic}"),
    ("patch", "/v1/topics/{topic}"),
    ("post", "/v1/topics/{topic}/messages"),
    ("get", "/v1/topics/{topic}/messages"),
    ("post", "/v1/topics/{topic}/subscriptions"),
    ("get", "/v1/topics/{topic}/subscriptions"),
    ("delete", "/v1/topics/{topic}/subscriptions/{sub}"),
    ("patch", "/v1/topics/{topic}/subscriptions/{sub}"),
    ("post", "/v1/topics/{topic}/subscriptions/{sub}/receive"),
    ("post", "/v1/topics/{topic}/subscriptions/{sub}/ack"),
    ("post", "/v1/topics/{topic}/subscriptions/{sub}/nack"),
    ("post", "/v1/topics/{topic}/subscriptions/{sub}/extend"),
    ("post", "/v1/topics/{topic}/subscriptions/{sub}/redrive"),
    ("get", "/v1/events"),
    ("post", "/v1/groups/{group}/join"),
    ("post", "/v1/groups/{group}/heartbeat"),
    ("post", "/v1/groups/{group}/commit"),
    ("post", "/v1/groups/{group}/leave"),
    ("get", "/v1/groups"),
    ("get", "/v1/groups/{group}"),
    ("delete", "/v1/groups/{group}"),
    ("get", "/v1/groups/{group}/offsets"),
    ("post", "/v1/groups/{group}/reset-offsets"),
    ("post", "/v1/requests"),
    ("get", "/v1/requests/{id}"),
    ("post", "/v1/requests/{id}/complete"),
    ("post", "/v1/requests/{id}/fail"),
];

fn summary(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("get", "/healthz") => "Liveness check",
        ("get", "/readyz") => "Readiness check",
        ("get", "/openapi.json") => "This document",
        ("get", "/metrics") => "Prometheus metrics (text format)",
        ("post", "/v1/topics") => "Create a topic",
        ("get", "/v1/topics") => "List topics",
        ("get", "/v1/topics/{topic}") => {
            "Describe a topic: settings, offsets and depth per partition"
        }
        ("delete", "/v1/topics/{topic}") => "Delete a topic",
        ("patch", "/v1/topics/{topic}") => "Change a topic's limits, retention or durability (fields as in create; 0 clears a limit)",
        ("post", "/v1/topics/{topic}/messages") => {
            "Publish messages (one atomic batch per partition)"
        }
        ("get", "/v1/topics/{topic}/messages") => "Read messages of a partition from an offset",
        ("post", "/v1/topics/{topic}/subscriptions") => "Create a queue (or stream) subscription",
        ("get", "/v1/topics/{topic}/subscriptions") => "List queue subscriptions",
        ("delete", "/v1/topics/{topic}/subscriptions/{sub}") => "Delete a queue subscription",
        ("patch", "/v1/topics/{topic}/subscriptions/{sub}") => "Change a queue subscription's ack timeout, max deliveries, backoff, dead-letter topic or push endpoint (null removes the last two)",
        ("post", "/v1/topics/{topic}/subscriptions/{sub}/receive") => {
            "Lease messages (long poll with wait_ms)"
        }
        ("post", "/v1/topics/{topic}/subscriptions/{sub}/ack") => {
            "Acknowledge leased messages by receipt"
        }
        ("post", "/v1/topics/{topic}/subscriptions/{sub}/nack") => {
            "Give leased messages back, with an optional delay"
        }
        ("post", "/v1/topics/{topic}/subscriptions/{sub}/extend") => "Extend leases",
        ("post", "/v1/topics/{topic}/subscriptions/{sub}/redrive") => {
            "Move dead letters back to the topic"
        }
        ("get", "/v1/events") => "Read the side channel (spool.errors)",
        ("post", "/v1/groups/{group}/join") => {
            "Join a consumer group: member id, generation, assigned partitions with offsets"
        }
        ("post", "/v1/groups/{group}/heartbeat") => {
            "Keep a member alive; answers the current assignment"
        }
        ("post", "/v1/groups/{group}/commit") => "Commit offsets for held partitions",
        ("post", "/v1/groups/{group}/leave") => "Leave a consumer group",
        ("delete", "/v1/groups/{group}") => "Delete a consumer group without members, and its committed offsets",
        ("get", "/v1/groups/{group}/offsets") => "A group's committed offsets on a topic",
        ("get", "/v1/groups") => "List consumer groups: members, committed offsets and lag",
        ("get", "/v1/groups/{group}") => {
            "Describe a consumer group: members with their partitions, committed offsets and lag"
        }
        ("post", "/v1/groups/{group}/reset-offsets") => "Set a group's offsets on a topic (earliest, latest, an offset, an RFC 3339 time or @MS); only while it has no members",
        ("post", "/v1/requests") => "Submit an asynchronous request (202 Accepted + Location and Retry-After)",
        ("get", "/v1/requests/{id}") => "A request's record; wait_ms holds until it finishes",
        ("post", "/v1/requests/{id}/complete") => "Complete a request with a result",
        ("post", "/v1/requests/{id}/fail") => "Fail a request (retry or not)",
        _ => "",
    }
}

/// The OpenAPI document.
pub fn spec() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary(method, path),
            "parameters": params,
            "responses": {
                "200": {"description": "Success"},
                "default": {"description": "Error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        if *method == "post" || *method == "patch" {
            op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Spool HTTP API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {"Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}, "code_number": {"type": "integer"},
                "retry_after_ms": {"type": ["integer", "null"]}
            }
        }}}
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
