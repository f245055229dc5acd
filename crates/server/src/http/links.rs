//! OpenAPI links: how an answer's values feed the next call (create a
//! topic, then publish to it; receive, then ack what was received; submit a
//! request, then read it). They tell a reader the order of a workflow, and
//! let a stateful fuzzer (schemathesis) walk it.

use serde_json::{json, Value};

/// One link: from an operation's answer (`from`, `status`) to `to`, with
/// its parameters and, if any, its request body as runtime expressions.
struct Link {
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: fn() -> Value,
    body: Option<fn() -> Value>,
}

const TOPIC_FROM_BODY: fn() -> Value = || json!({"topic": "$response.body#/name"});
const TOPIC_FROM_PATH: fn() -> Value = || json!({"topic": "$request.path.topic"});
const SUB_CREATED: fn() -> Value =
    || json!({"topic": "$request.path.topic", "sub": "$response.body#/name"});
const SUB_FROM_PATH: fn() -> Value =
    || json!({"topic": "$request.path.topic", "sub": "$request.path.sub"});
const FIRST_RECEIPT: fn() -> Value = || json!({"receipts": ["$response.body#/messages/0/receipt"]});
const REQUEST_ID: fn() -> Value = || json!({"id": "$response.body#/id"});
const GROUP_FROM_PATH: fn() -> Value = || json!({"group": "$request.path.group"});
const MEMBER: fn() -> Value = || json!({"member_id": "$response.body#/member_id", "generation": "$response.body#/generation"});

const LINKS: &[Link] = &[
    link(
        "create_topic",
        "201",
        "DescribeTopic",
        "describe_topic",
        TOPIC_FROM_BODY,
        None,
    ),
    link(
        "create_topic",
        "201",
        "Publish",
        "publish",
        TOPIC_FROM_BODY,
        None,
    ),
    link(
        "create_topic",
        "201",
        "FetchMessages",
        "fetch_messages",
        TOPIC_FROM_BODY,
        None,
    ),
    link(
        "create_topic",
        "201",
        "Subscribe",
        "create_subscription",
        TOPIC_FROM_BODY,
        None,
    ),
    link(
        "publish",
        "200",
        "FetchMessages",
        "fetch_messages",
        TOPIC_FROM_PATH,
        None,
    ),
    link(
        "create_subscription",
        "201",
        "Receive",
        "receive",
        SUB_CREATED,
        None,
    ),
    link(
        "create_subscription",
        "201",
        "Redrive",
        "redrive",
        SUB_CREATED,
        None,
    ),
    link(
        "receive",
        "200",
        "Ack",
        "ack",
        SUB_FROM_PATH,
        Some(FIRST_RECEIPT),
    ),
    link(
        "receive",
        "200",
        "Nack",
        "nack",
        SUB_FROM_PATH,
        Some(FIRST_RECEIPT),
    ),
    link(
        "receive",
        "200",
        "Extend",
        "extend",
        SUB_FROM_PATH,
        Some(FIRST_RECEIPT),
    ),
    link(
        "submit_request",
        "202",
        "GetRequest",
        "get_request",
        REQUEST_ID,
        None,
    ),
    link(
        "submit_request",
        "202",
        "Complete",
        "complete_request",
        REQUEST_ID,
        None,
    ),
    link(
        "submit_request",
        "202",
        "Fail",
        "fail_request",
        REQUEST_ID,
        None,
    ),
    link(
        "join_group",
        "200",
        "Heartbeat",
        "heartbeat",
        GROUP_FROM_PATH,
        Some(MEMBER),
    ),
    link(
        "join_group",
        "200",
        "Describe",
        "describe_group",
        GROUP_FROM_PATH,
        None,
    ),
];

const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: fn() -> Value,
    body: Option<fn() -> Value>,
) -> Link {
    Link {
        from,
        status,
        name,
        to,
        parameters,
        body,
    }
}

/// Adds [`LINKS`] to the answers of the operations in `doc`.
pub fn add(doc: &mut Value) {
    super::openapi::for_each_operation(doc, |_, _, op| {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        for l in LINKS.iter().filter(|l| l.from == id) {
            let Some(response) = op.pointer_mut(&format!("/responses/{}", l.status)) else {
                continue;
            };
            let mut target = json!({"operationId": l.to, "parameters": (l.parameters)()});
            if let Some(body) = l.body {
                target["requestBody"] = body();
            }
            response["links"][l.name] = target;
        }
    });
}
