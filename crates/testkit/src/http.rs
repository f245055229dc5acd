//! One request per connection (`Connection: close`), the whole reply read
//! to its end and parsed: status, headers and a JSON body (or the body as a
//! JSON string when it is not JSON, as `/metrics` is).
//!
//! The async functions take the server's address; [`blocking`] has the
//! same calls for tests that drive a separate `spool` process.

use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
    /// The reply as it arrived (status line, headers and body), as text.
    pub raw: String,
}

impl Reply {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of a request with a JSON body (empty when `None`) and, given a
/// token, an `Authorization: Bearer` header.
pub fn request(method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> String {
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Parses a whole reply; panics when it has no status line.
pub fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body_text = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let body = serde_json::from_str(&body_text).unwrap_or(Value::String(body_text));
    Reply {
        status,
        headers,
        body,
        raw: text,
    }
}

/// The body of a `Transfer-Encoding: chunked` reply.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `method path` with `body` (JSON, if any).
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request(method, path, body, None).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, None).await
}

/// `POST path` with a JSON `body`.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    call(addr, "POST", path, Some(body)).await
}

/// The same calls on `std` sockets, to a `host:port`.
pub mod blocking {
    use super::{parse, request, Reply};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// `method path` with `body` (JSON, if any).
    pub fn call(addr: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
        send(addr, &request(method, path, body, None), None)
    }

    /// `method path` with `body` and, given one, a bearer `token`; the reply
    /// must start within 10 s.
    pub fn call_as(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> Reply {
        let req = request(method, path, Some(body), token);
        send(addr, &req, Some(Duration::from_secs(10)))
    }

    /// `GET path`.
    pub fn get(addr: &str, path: &str) -> Reply {
        call(addr, "GET", path, None)
    }

    /// `POST path` with a JSON `body`.
    pub fn post(addr: &str, path: &str, body: &str) -> Reply {
        call(addr, "POST", path, Some(body))
    }

    fn send(addr: &str, req: &str, read_timeout: Option<Duration>) -> Reply {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(read_timeout).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        parse(&raw)
    }
}
