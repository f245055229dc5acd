//! An HTTP endpoint for callbacks and push deliveries, on its own threads
//! (so it serves blocking and async tests alike).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Records (body, `Spool-Signature`) of each POST while `status` is 200,
/// and answers `status` either way.
pub struct Receiver {
    /// `host:port`.
    pub addr: String,
    /// What it answers; tests flip it to simulate a receiver that is down.
    pub status: Arc<Mutex<u16>>,
    /// (body, signature) of each request answered with 200.
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    /// Listens on an ephemeral loopback port, answering `status`.
    pub fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let status = Arc::new(Mutex::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { continue };
                let (st, g) = (st.clone(), g.clone());
                std::thread::spawn(move || answer(s, &st, &g));
            }
        });
        Receiver { addr, status, got }
    }
}

/// Reads one request and answers it.
fn answer(mut s: TcpStream, status: &Mutex<u16>, got: &Mutex<Vec<(String, String)>>) {
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
        let len: usize = header(head, "content-length")
            .map(|v| v.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        if body.len() < len {
            continue;
        }
        let sig = header(head, "spool-signature").unwrap_or_default();
        let code = *status.lock().unwrap();
        if code == 200 {
            got.lock().unwrap().push((body[..len].to_owned(), sig));
        }
        let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(reply.as_bytes());
        return;
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        k.eq_ignore_ascii_case(name).then(|| v.to_owned())
    })
}

/// Hex HMAC-SHA256(secret, "<t>.<body>"): the `v1` of a `Spool-Signature`.
/// Computed here from the documented recipe rather than by calling the
/// server's `outbound::sign`, so a test checks the server against the
/// documentation, not against itself.
pub fn sign(secret: &[u8], t: &str, body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// How far a signature's `t` may be from the receiver's clock: what
/// `docs/queues.md` tells receivers to check, against replays.
pub const SIGNATURE_MAX_AGE_S: i64 = 300;

/// Checks a `t=<secs>,v1=<hex>` header as a receiver should: `v1` against
/// [`sign`], and `t` within [`SIGNATURE_MAX_AGE_S`] of now.
pub fn signature_valid(secret: &[u8], body: &str, header: &str) -> bool {
    let Some((t, v1)) = header.split_once(',') else {
        return false;
    };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= SIGNATURE_MAX_AGE_S);
    fresh && sign(secret, t, body) == v1
}
