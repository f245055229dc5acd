//! Requests Spool sends out on the operator's network — request callbacks
//! and push-endpoint deliveries — with the guards they need: a host
//! allow-list (default loopback only), timeouts, no redirects, and a
//! signature receivers can verify.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "Spool-Signature";
/// Time allowed for one outbound request, connection included.
pub const OUTBOUND_TIMEOUT_MS: u64 = 10_000;

/// Which hosts outbound requests may go to.
#[derive(Debug, Clone)]
pub struct AllowList {
    hosts: Vec<String>,
}

impl AllowList {
    /// The default: loopback only.
    pub fn loopback() -> AllowList {
        AllowList {
            hosts: vec![
                "127.0.0.1".into(),
                "localhost".into(),
                "::1".into(),
                "[::1]".into(),
            ],
        }
    }

    pub fn new(hosts: Vec<String>) -> AllowList {
        AllowList { hosts }
    }

    /// Checks a URL: http(s) and an allowed host, or a reason why not.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?}: only http and https URLs are allowed"));
        }
        let host = parsed.host_str().unwrap_or_default();
        if self
            .hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(host))
        {
            Ok(())
        } else {
            Err(format!(
                "host {host:?} is not on the outbound allow-list ({})",
                self.hosts.join(", ")
            ))
        }
    }
}

/// The `Spool-Signature` value for `body` at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={unix_seconds},v1={}", hex::encode(digest))
}

/// The HTTP client for outbound requests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(OUTBOUND_TIMEOUT_MS))
        .timeout(Duration::from_millis(OUTBOUND_TIMEOUT_MS))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_defaults_to_loopback() {
        let a = AllowList::loopback();
        assert!(a.check("http://127.0.0.1:8080/cb").is_ok());
        assert!(a.check("http://localhost/cb").is_ok());
        assert!(a.check("http://example.com/cb").is_err());
        assert!(a.check("ftp://127.0.0.1/x").is_err());
        assert!(a.check("not a url").is_err());
        assert!(AllowList::new(vec!["*".into()])
            .check("https://example.com")
            .is_ok());
    }

    /// A known HMAC-SHA256 value (RFC 4231 test case 2: key "Jefe").
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        let sig = sign(b"Jefe", 0, b"");
        assert!(sig.starts_with("t=0,v1="));
        // HMAC-SHA256("Jefe", "what do ya want for nothing?") from RFC 4231.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
