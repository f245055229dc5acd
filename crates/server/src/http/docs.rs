//! `/docs`: the API reference for people, one HTML page rendered on the
//! server from the OpenAPI document (so it says exactly what
//! `/openapi.json` says) — every operation with its parameters, body,
//! answers and errors, then every schema. No scripts, no outside assets.

use super::openapi::{spec, METHODS};
use axum::response::Html;
use serde_json::Value;
use std::fmt::Write;
use std::sync::OnceLock;

#[utoipa::path(get, path = "/docs", tag = "operations",
    operation_id = "docs",
    summary = "This reference as an HTML page",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn page() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(spec())).as_str())
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;\
padding:0 1em;color:#222}code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f5;\
padding:.6em;overflow:auto}table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid \
#ddd;padding:.2em .5em;text-align:left;vertical-align:top}.op{border-top:1px solid #ccc;\
margin-top:1.5em}.m{font-weight:bold;text-transform:uppercase}";

/// `s` with HTML's special characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A property's description, also when it sits beside a `$ref` inside a
/// `oneOf` (how an optional named schema is described).
fn description(prop: &Value) -> &str {
    let inner = prop["oneOf"].as_array().into_iter().flatten();
    std::iter::once(prop)
        .chain(inner)
        .map(|p| text(p, "description"))
        .find(|d| !d.is_empty())
        .unwrap_or("")
}

/// The name a `$ref` points at (`#/components/schemas/Name` → `Name`).
fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// A schema's type, briefly, as HTML (named schemas link to their section).
fn type_html(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = esc(ref_name(r));
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = parts.iter().map(type_html).collect();
            return parts.join(" | ");
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect();
        return format!("one of {}", values.join(", "));
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            let ts: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            ts.join(" | ")
        }
        _ => "any".to_owned(),
    };
    if let Some(items) = schema.get("items") {
        return format!("array of {}", type_html(items));
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return format!("map of {}", type_html(values));
    }
    esc(&ty)
}

/// Bounds and defaults worth showing beside a description.
fn limits(schema: &Value) -> String {
    let mut out = String::new();
    for key in ["minimum", "maximum", "minItems", "default"] {
        if let Some(v) = schema.get(key) {
            let _ = write!(out, " <i>{key}: {}</i>", esc(&v.to_string()));
        }
    }
    out
}

/// A table of an object schema's properties.
fn properties_table(schema: &Value, out: &mut String) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>");
    for (name, prop) in props {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(name),
            type_html(prop),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                ""
            },
            esc(description(prop)),
            limits(prop),
        );
    }
    out.push_str("</table>");
}

fn parameters_html(op: &Value, out: &mut String) {
    let Some(params) = op.get("parameters").and_then(Value::as_array) else {
        return;
    };
    out.push_str("<p>Parameters:</p><table><tr><th>name</th><th>in</th><th>type</th>");
    out.push_str("<th>required</th><th>meaning</th></tr>");
    for p in params {
        let schema = p.get("schema").unwrap_or(&Value::Null);
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(text(p, "name")),
            esc(text(p, "in")),
            type_html(schema),
            if p["required"] == Value::Bool(true) {
                "yes"
            } else {
                ""
            },
            esc(text(p, "description")),
            limits(schema),
        );
    }
    out.push_str("</table>");
}

/// `schema`, or the named schema it refers to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| doc.pointer(r.trim_start_matches('#')))
        .unwrap_or(schema)
}

/// A schema's first example, pretty-printed.
fn example_html(schema: &Value, out: &mut String) {
    let example = schema.get("example").or(schema.pointer("/examples/0"));
    if let Some(example) = example {
        let pretty = serde_json::to_string_pretty(example).unwrap_or_default();
        let _ = write!(out, "<p>Example:</p><pre>{}</pre>", esc(&pretty));
    }
}

fn body_html(doc: &Value, op: &Value, out: &mut String) {
    let Some(content) = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
    else {
        return;
    };
    for (media, body) in content {
        let schema = body.get("schema").unwrap_or(&Value::Null);
        let _ = write!(
            out,
            "<p>Body (<code>{}</code>): {}</p>",
            esc(media),
            type_html(schema)
        );
        let schema = resolve(doc, schema);
        properties_table(schema, out);
        example_html(schema, out);
    }
}

fn responses_html(op: &Value, out: &mut String) {
    let Some(responses) = op.get("responses").and_then(Value::as_object) else {
        return;
    };
    out.push_str("<p>Answers:</p><table>");
    let mut problems = Vec::new();
    for (status, r) in responses {
        if r.get("$ref").is_some() {
            problems.push(esc(status));
            continue;
        }
        let schema = r
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.values().next())
            .and_then(|m| m.get("schema"))
            .map(type_html)
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{schema}</td></tr>",
            esc(status),
            esc(text(r, "description"))
        );
    }
    if !problems.is_empty() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>a problem document; its <code>code</code> by status: \
             see <a href=\"#errors\">Errors</a></td><td><a href=\"#schema-Problem\">Problem</a></td></tr>",
            problems.join(", ")
        );
    }
    out.push_str("</table>");
}

fn operation_html(doc: &Value, path: &str, method: &str, op: &Value, out: &mut String) {
    let id = esc(text(op, "operationId"));
    let _ = write!(
        out,
        "<div class=\"op\" id=\"op-{id}\"><h3><span class=\"m\">{}</span> <code>{}</code></h3><p>{}</p>",
        esc(method),
        esc(path),
        esc(text(op, "summary")),
    );
    let description = text(op, "description");
    if !description.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(description));
    }
    parameters_html(op, out);
    body_html(doc, op, out);
    responses_html(op, out);
    out.push_str("</div>");
}

fn operations_html(doc: &Value, out: &mut String) {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return;
    };
    let tags: Vec<&Value> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    for tag in tags {
        let name = text(tag, "name");
        let _ = write!(
            out,
            "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>",
            esc(name),
            esc(text(tag, "description"))
        );
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == name));
                if tagged {
                    operation_html(doc, path, method, op, out);
                }
            }
        }
    }
}

fn schemas_html(doc: &Value, out: &mut String) {
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    for (name, schema) in schemas {
        let _ = write!(
            out,
            "<h3 id=\"schema-{0}\">{0}</h3><p>{1}</p>",
            esc(name),
            esc(text(schema, "description"))
        );
        if schema.get("properties").is_some() {
            properties_table(schema, out);
        } else {
            let _ = write!(out, "<p>{}</p>", type_html(schema));
            for variant in schema["oneOf"].as_array().into_iter().flatten() {
                properties_table(variant, out);
            }
        }
        example_html(schema, out);
    }
}

fn errors_html(out: &mut String) {
    out.push_str("<h2 id=\"errors\">Errors</h2><p>Every error is an ");
    out.push_str("<code>application/problem+json</code> document (schema ");
    out.push_str("<a href=\"#schema-Problem\">Problem</a>); programs branch on its ");
    out.push_str("<code>code</code>. By HTTP status:</p><table>");
    for (status, codes) in super::openapi::error_statuses() {
        let codes: Vec<String> = codes.iter().map(|c| format!("<code>{c}</code>")).collect();
        let _ = write!(
            out,
            "<tr><td>{status}</td><td>{}</td></tr>",
            codes.join(", ")
        );
    }
    out.push_str("</table>");
}

/// The whole page for `doc`.
pub fn render(doc: &Value) -> String {
    let title = esc(doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("API"));
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>"
    );
    let description = doc.pointer("/info/description").and_then(Value::as_str);
    let _ = write!(
        out,
        "<p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         <a href=\"#errors\">Errors</a> · <a href=\"#schemas\">Schemas</a></p>",
        esc(description.unwrap_or(""))
    );
    operations_html(doc, &mut out);
    errors_html(&mut out);
    schemas_html(doc, &mut out);
    out.push_str("</body></html>");
    out
}
