//! The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json`
//! and rendered for people at `/docs`. Generated: each operation comes from
//! its handler's `#[utoipa::path]` and each body, parameter and answer from
//! the handlers' own types (`ToSchema`, `IntoParams`). What the macros do
//! not know is added here from the code tables themselves: the error
//! answers (problem documents, by status, with the stable codes each
//! status carries, from [`status_for`]), the bearer-token scheme and the
//! links between operations (`links`).

use super::error::status_for;
use super::OPEN_PATHS;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use spool_types::ErrorCode;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Spool HTTP API",
        description = "Topics, publishing, reading, queue subscriptions, consumer groups and \
            asynchronous requests as JSON. Errors are `application/problem+json` documents whose \
            `code` is one of Spool's stable error codes (the binary protocol's too). With \
            authentication on, every path but /healthz, /readyz, /metrics, /openapi.json and \
            /docs needs `Authorization: Bearer <token>`. A readable version of this document is \
            served at /docs."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics_text,
        document,
        super::docs::page,
        super::topics::create_topic,
        super::topics::list_topics,
        super::topics::describe_topic,
        super::topics::alter_topic,
        super::topics::delete_topic,
        super::topics::publish,
        super::topics::fetch,
        super::topics::events,
        super::create_subscription,
        super::list_subscriptions,
        super::alter_subscription,
        super::delete_subscription,
        super::receive,
        super::ack,
        super::nack,
        super::extend,
        super::redrive,
        super::groups::join,
        super::groups::heartbeat,
        super::groups::commit,
        super::groups::leave,
        super::groups::list,
        super::groups::describe,
        super::groups::delete,
        super::groups::offsets,
        super::groups::reset_offsets,
        super::requests::submit,
        super::requests::status,
        super::requests::complete,
        super::requests::fail,
    ),
    components(schemas(super::views::Problem)),
    tags(
        (name = "topics", description = "Create, list, describe, change and delete topics"),
        (name = "messages", description = "Publish to a topic; read a partition from an offset"),
        (name = "subscriptions", description = "Queue subscriptions: lease, ack, nack, extend, redrive"),
        (name = "groups", description = "Consumer groups: join, heartbeat, commit, leave; administration"),
        (name = "requests", description = "Asynchronous requests: submit, wait, complete, fail"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn spec() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_error_responses(&mut doc);
    add_security(&mut doc);
    super::links::add(&mut doc);
    if let Some(code) = doc.pointer_mut("/components/schemas/Problem/properties/code") {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        code["enum"] = json!(names);
    }
    doc
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    operation_id = "openapi",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", body = Value)))]
pub async fn document() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| spec().to_string());
    let mut response = text.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Each error status the API answers with, and the codes it carries.
pub fn error_statuses() -> BTreeMap<u16, Vec<&'static str>> {
    let mut statuses: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for &code in ErrorCode::ALL {
        statuses
            .entry(status_for(code).as_u16())
            .or_default()
            .push(code.name());
    }
    // A request body that never arrived (see `body::read_body`).
    statuses
        .entry(408)
        .or_default()
        .push(ErrorCode::Timeout.name());
    statuses
}

fn problem_response(description: String) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}
        }}
    })
}

/// Names every error status in `components/responses` and refers each
/// operation to all of them (an operation's own answer for a status, if it
/// has one, stays), plus a `default` problem.
fn add_error_responses(doc: &mut Value) {
    let mut shared = Map::new();
    for (status, codes) in error_statuses() {
        let text = format!("A problem document; `code` is one of {}", codes.join(", "));
        shared.insert(format!("Problem{status}"), problem_response(text));
    }
    let statuses: Vec<String> = error_statuses().keys().map(u16::to_string).collect();
    for_each_operation(doc, |_, _, op| {
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            return;
        };
        for status in &statuses {
            let reference = json!({"$ref": format!("#/components/responses/Problem{status}")});
            responses.entry(status.clone()).or_insert(reference);
        }
        let other = problem_response("Any other error, as a problem document".to_owned());
        responses.entry("default").or_insert(other);
    });
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert("responses".to_owned(), Value::Object(shared));
    }
}

/// The bearer-token scheme, required by every operation but the open ones.
fn add_security(doc: &mut Value) {
    for_each_operation(doc, |path, _, op| {
        op["security"] = if OPEN_PATHS.contains(&path) {
            json!([])
        } else {
            json!([{"bearer": []}])
        };
    });
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".to_owned(),
            json!({"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `spool token create` (or the admin token). \
                    Needed only when the server runs with authentication on."
            }}),
        );
    }
}

/// The HTTP methods an OpenAPI path item may hold.
pub const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// Calls `f(path, method, operation)` for every operation of `doc`.
pub fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Value)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(*method) {
                f(path, method, op);
            }
        }
    }
}
