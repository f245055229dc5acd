//! `/openapi.json` is complete, checked against a running server: every
//! route the router registers (its paths read from the router's source, its
//! methods found by asking the server) is documented and every documented
//! operation is routed; every request body has a schema with properties;
//! every path and query parameter is listed; every error is a problem
//! document with its stable codes. And `/docs` renders it.

use serde_json::Value;
use spool_testkit::http::{call, get};
use spool_testkit::TestServer;
use std::collections::BTreeSet;

/// The router's source: the paths it registers are read from it.
const ROUTER_SOURCE: &str = include_str!("../../src/http/mod.rs");

/// Every path literal given to `.route(…)` in the router.
fn routed_paths() -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = ROUTER_SOURCE;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let start = rest.find('"').expect("a path literal") + 1;
        let end = start + rest[start..].find('"').expect("its end");
        paths.push(rest[start..end].to_owned());
    }
    paths
}

fn concrete(path: &str) -> String {
    path.replace("{topic}", "t")
        .replace("{sub}", "s")
        .replace("{id}", "x")
        .replace("{group}", "g")
}

/// The methods the server answers on `path` (anything but 405).
async fn routed_methods(addr: std::net::SocketAddr, path: &str) -> Vec<String> {
    let mut methods = Vec::new();
    for method in ["get", "post", "put", "patch", "delete"] {
        let body = (method != "get").then_some("{}");
        let r = call(addr, &method.to_uppercase(), &concrete(path), body).await;
        if r.status != 405 {
            methods.push(method.to_owned());
        }
    }
    methods
}

/// `#/components/schemas/X` resolved in `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(&r.replacen('#', "", 1))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            ops.push((path.clone(), method.clone(), op));
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_operation_routed() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let doc = get(addr, "/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let doc = doc.body;
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(p, m, _)| (m, p))
        .collect();
    let mut routed = BTreeSet::new();
    let paths = routed_paths();
    assert!(paths.len() >= 25, "router source not understood: {paths:?}");
    for path in paths {
        let methods = routed_methods(addr, &path).await;
        assert!(!methods.is_empty(), "{path} answers no method");
        routed.extend(methods.into_iter().map(|m| (m, path.clone())));
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed, not documented: {undocumented:?}"
    );
    assert!(unrouted.is_empty(), "documented, not routed: {unrouted:?}");
    // An unknown path or method is a problem document too.
    let r = get(addr, "/v1/nothing").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("UNKNOWN_REQUEST_TYPE"))
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = call(addr, "PUT", "/v1/topics", Some("{}")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_parameters_and_errors_are_described() {
    let server = TestServer::start_http().await;
    let doc = get(server.http(), "/openapi.json").await.body;
    for (path, method, op) in operations(&doc) {
        let at = format!("{method} {path}");
        // Every request body: JSON with an object schema that has properties.
        if let Some(body) = op.get("requestBody") {
            let schema = &body["content"]["application/json"]["schema"];
            let schema = resolve(&doc, schema);
            assert_eq!(
                schema["type"], "object",
                "{at}: body is not an object schema"
            );
            let props = schema["properties"].as_object();
            assert!(
                props.is_some_and(|p| !p.is_empty()),
                "{at}: body has no properties"
            );
            let example = schema.get("example").or(schema.get("examples"));
            assert!(example.is_some(), "{at}: body has no example");
        } else {
            assert!(
                !["post", "patch"].contains(&method.as_str()) || path.ends_with("/redrive"),
                "{at}: no request body described"
            );
        }
        // Every `{name}` of the path is a described path parameter.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{at}: path parameter {name} not described"
            );
        }
        // A success with its schema (204 has none), and the problem answers.
        let responses = op["responses"].as_object().expect("responses");
        let success = responses.iter().find(|(s, _)| s.starts_with('2'));
        let (status, success) = success.unwrap_or_else(|| panic!("{at}: no success answer"));
        if status != "204" {
            let content = success["content"].as_object();
            assert!(
                content.is_some_and(|c| !c.is_empty()),
                "{at}: success without content"
            );
        }
        if path.starts_with("/v1/") {
            for status in ["400", "401", "403", "404", "429", "500", "503"] {
                assert!(responses.contains_key(status), "{at}: no {status} answer");
            }
        }
        assert!(responses.contains_key("default"), "{at}: no default answer");
    }
    // The query parameters.
    let query = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    let fetch = query("/v1/topics/{topic}/messages", "get");
    for name in ["partition", "offset", "max_bytes", "wait_ms"] {
        assert!(
            fetch.contains(&name.to_owned()),
            "fetch lacks {name}: {fetch:?}"
        );
    }
    assert_eq!(query("/v1/requests/{id}", "get"), ["wait_ms"]);
    assert_eq!(query("/v1/topics", "get"), ["pattern"]);
    assert_eq!(query("/v1/groups/{group}/offsets", "get"), ["topic"]);
    assert!(query("/v1/events", "get").contains(&"wait_ms".to_owned()));
    // The fields that used to be known only to the handlers.
    let text = doc.to_string();
    for field in [
        "push_endpoint",
        "max_in_flight",
        "message_id",
        "delay_ms",
        "\"mode\"",
        "\"ordered\"",
        "dead_letter_topic",
        "deliver_at_ms",
        "extend_ms",
        "callback_url",
    ] {
        assert!(text.contains(field), "{field} is not documented");
    }
    // Links name operations that exist, with parameters they take.
    let ids: BTreeSet<&str> = operations(&doc)
        .iter()
        .filter_map(|(_, _, op)| op["operationId"].as_str())
        .collect();
    let mut links = 0;
    for (path, method, op) in operations(&doc) {
        for response in op["responses"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
        {
            for link in response["links"]
                .as_object()
                .into_iter()
                .flat_map(|l| l.values())
            {
                let to = link["operationId"].as_str().unwrap_or_default();
                assert!(ids.contains(to), "{method} {path}: link to unknown {to}");
                links += 1;
            }
        }
    }
    assert!(links >= 10, "only {links} links");
    // Every stable code is listed as a problem's `code`.
    let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"].clone();
    let codes: Vec<&str> = codes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for code in spool_types::ErrorCode::ALL {
        assert!(
            codes.contains(&code.name()),
            "{} not in the Problem codes",
            code.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_renders_the_document_without_outside_assets() {
    let server = TestServer::start_http().await;
    let addr = server.http();
    let doc = get(addr, "/openapi.json").await.body;
    let page = get(addr, "/docs").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let html = page.raw;
    for (path, _, op) in operations(&doc) {
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(
            html.contains(&format!("id=\"op-{id}\"")),
            "{id} not on the page"
        );
        let shown = path.replace('&', "&amp;");
        assert!(html.contains(&shown), "{path} not on the page");
    }
    for name in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(
            html.contains(&format!("id=\"schema-{name}\"")),
            "{name} not on the page"
        );
    }
    assert!(!html.contains("<script"), "the page loads scripts");
    assert!(
        !html.contains("src=\"http"),
        "the page loads outside assets"
    );
    assert!(html.contains("QUEUE_FULL"));
}
