//! A tiny blocking HTTP/1.1 client and receiver for tests, so nothing hides
//! the wire.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn call(addr: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
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
    }
}

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

/// A callback receiver: records (body, Spool-Signature) of each POST while
/// `status` is 200; answers `status` either way.
pub struct Receiver {
    pub addr: String,
    #[allow(dead_code)] // tests flip it to simulate a receiver that is down
    pub status: Arc<Mutex<u16>>,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let status = Arc::new(Mutex::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (st, g) = (st.clone(), g.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() < len {
                            continue;
                        }
                        let sig = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(": ")?;
                                k.eq_ignore_ascii_case("spool-signature")
                                    .then(|| v.to_owned())
                            })
                            .unwrap_or_default();
                        let code = *st.lock().unwrap();
                        if code == 200 {
                            g.lock().unwrap().push((body[..len].to_owned(), sig));
                        }
                        let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
                        return;
                    }
                });
            }
        });
        Receiver { addr, status, got }
    }
}

/// Checks `t=<secs>,v1=<hex>` against HMAC-SHA256(secret, "<t>.<body>").
pub fn signature_valid(secret: &[u8], body: &str, header: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Some((t, v1)) = header.split_once(',') else {
        return false;
    };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(format!("{t}.{body}").as_bytes());
    let expect: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expect == v1
}
