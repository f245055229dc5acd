//! Requests Spool sends out on the operator's network — request callbacks
//! and push-endpoint deliveries — with the guards they need: an allow-list
//! of targets (default: the loopback host), no credentials in URLs,
//! timeouts, no redirects, a signature receivers can verify, and failures
//! that tell a client no more than "not reached" (the detail goes to the
//! server log), so that callbacks cannot map which ports are open.
//!
//! URLs are parsed as browsers and the HTTP client parse them (WHATWG, the
//! `url` crate), and compared in that canonical form: the address the
//! client would connect to is the one checked. So `http://2130706433/`,
//! `http://0x7f000001/` and `http://127.1/` are all `127.0.0.1` and allowed
//! exactly when `127.0.0.1` is; `LOCALHOST` is `localhost`; `[::1]` is
//! `::1`. An IP entry never matches a host name or the other way round.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "Spool-Signature";
/// Time allowed for one outbound request, connection included.
pub const OUTBOUND_TIMEOUT_MS: u64 = 10_000;
/// The default allow-list: the loopback host, any port.
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// What a delivery's record says when the target was not reached, whatever
/// the reason (refused connection, reset, timeout, TLS failure): the reason
/// would tell an open port from a closed one.
pub const UNREACHABLE: &str =
    "the receiver could not be reached or did not answer (the server log has the detail)";

/// Where outbound requests may go: entries `[scheme://]host[:port]`, or `*`
/// for any host. An entry without a scheme allows http and https; without
/// a port, any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None`: http or https.
    scheme: Option<String>,
    host: Host,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Ip(IpAddr),
    /// Lower case (and punycode), as the `url` crate gives it.
    Name(String),
}

/// Why a URL may not be requested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It does not parse as a URL.
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// Not http or https.
    #[error("{0}: only http and https URLs are allowed")]
    Scheme(String),
    /// It carries a user name or password (they would go out as Basic
    /// authentication, and come back in the record).
    #[error("URLs with a user name or password are not allowed")]
    Credentials,
    /// Its scheme, host and port match no allow-list entry.
    #[error("{0} is not on the server's outbound allow-list")]
    NotAllowed(String),
}

impl AllowList {
    /// The default: [`LOOPBACK_HOSTS`].
    pub fn loopback() -> AllowList {
        let hosts = LOOPBACK_HOSTS.map(String::from);
        // Constant entries that parse.
        AllowList::parse(&hosts).unwrap_or(AllowList { entries: vec![] })
    }

    /// Parses the configured entries, or says which one is wrong and why.
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        let entries = entries
            .iter()
            .map(|e| Entry::parse(e).map_err(|why| format!("{e:?}: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    /// Checks a URL: http(s), no credentials, and an allowed scheme, host
    /// and port.
    pub fn check(&self, url: &str) -> Result<(), Refused> {
        let parsed = url::Url::parse(url).map_err(|e| Refused::Invalid(e.to_string()))?;
        let scheme = parsed.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(Refused::Scheme(scheme.to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Refused::Credentials);
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => Host::Ip(ip.into()),
            // http(s) URLs always have a host.
            None => return Err(Refused::Invalid("no host".into())),
        };
        // http(s) always have a default port.
        let port = parsed.port_or_known_default().unwrap_or(0);
        if self.entries.iter().any(|e| e.allows(scheme, &host, port)) {
            return Ok(());
        }
        let host = parsed.host_str().unwrap_or_default();
        Err(Refused::NotAllowed(format!("{scheme}://{host}:{port}")))
    }
}

impl Entry {
    fn parse(text: &str) -> Result<Entry, String> {
        const FORM: &str = "an allow-list entry is [http(s)://]host[:port] or *";
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => {
                let s = s.to_ascii_lowercase();
                if !matches!(s.as_str(), "http" | "https") {
                    return Err(format!("only http and https are allowed ({FORM})"));
                }
                (Some(s), rest)
            }
            None => (None, text),
        };
        if rest.is_empty()
            || rest.contains(['/', '@', '?', '#'])
            || rest.contains(char::is_whitespace)
        {
            return Err(FORM.into());
        }
        let (host, port) = split_host_port(rest)?;
        let host = match host {
            "*" => Host::Any,
            h => match h.parse::<Ipv6Addr>() {
                Ok(ip) => Host::Ip(ip.into()),
                Err(_) => match url::Host::parse(h).map_err(|e| format!("{e} ({FORM})"))? {
                    url::Host::Domain(d) => Host::Name(d.to_ascii_lowercase()),
                    url::Host::Ipv4(ip) => Host::Ip(ip.into()),
                    url::Host::Ipv6(ip) => Host::Ip(ip.into()),
                },
            },
        };
        Ok(Entry { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &Host, port: u16) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && (self.host == Host::Any || self.host == *host)
    }
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address (no port), with the
/// brackets taken off.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(p) => Ok(Some(p)),
    };
    if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("an IPv6 address in brackets lacks its `]`")?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, port(p)?)),
                None => Err(format!("{after:?} after `]` is not `:port`")),
            },
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, p)) => Ok((host, port(p)?)),
        None => Ok((text, None)),
    }
}

/// How one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The allow-list refuses the URL (it changed since the URL was
    /// accepted): no use retrying.
    #[error("refused: {0}")]
    Refused(Refused),
    /// No answer; the detail is logged, the record says [`UNREACHABLE`].
    #[error("{UNREACHABLE}")]
    Unreachable,
    /// The receiver answered with this non-2xx status.
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
}

/// POSTs the JSON `body` to `url`, signed with `secret` ([`sign`]); a 2xx
/// answer is success. `what` names the delivery in the log.
pub async fn post_signed(
    client: &reqwest::Client,
    allow: &AllowList,
    url: &str,
    secret: &[u8],
    body: Vec<u8>,
    what: &str,
) -> Result<(), Failure> {
    allow.check(url).map_err(Failure::Refused)?;
    let signature = sign(secret, crate::now_ms() / 1000, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // The whole chain: reqwest's own message hides the cause.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                source = s.source();
            }
            tracing::info!("{what}: POST to {url} failed: {detail}");
            Failure::Unreachable
        })?;
    match response.status() {
        s if s.is_success() => Ok(()),
        s => Err(Failure::Status(s.as_u16())),
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

/// The HTTP client for outbound requests. Built once, when the server
/// starts and before it accepts anyone (with its TLS roots): built later, a
/// flood of connections could take the descriptors the roots need and
/// leave HTTPS callbacks failing for the life of the process.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(OUTBOUND_TIMEOUT_MS))
        .timeout(Duration::from_millis(OUTBOUND_TIMEOUT_MS))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        AllowList::parse(&entries).unwrap()
    }

    #[test]
    fn allow_list_defaults_to_loopback() {
        let a = AllowList::loopback();
        assert!(a.check("http://127.0.0.1:8080/cb").is_ok());
        assert!(a.check("http://localhost/cb").is_ok());
        assert!(a.check("https://localhost:8443/cb").is_ok());
        assert!(a.check("http://example.com/cb").is_err());
        assert!(matches!(
            a.check("ftp://127.0.0.1/x"),
            Err(Refused::Scheme(_))
        ));
        assert!(matches!(a.check("not a url"), Err(Refused::Invalid(_))));
        assert!(list(&["*"]).check("https://example.com").is_ok());
    }

    /// `::1` is in the default; a bracketed host never matched it.
    #[test]
    fn a_bracketed_ipv6_host_matches_its_address() {
        let a = AllowList::loopback();
        assert!(a.check("http://[::1]:8080/cb").is_ok());
        assert!(a.check("http://[0:0:0:0:0:0:0:1]/cb").is_ok());
        // Same address, other spellings of the entry.
        for entry in ["[::1]", "0:0::1", "[::1]:8080"] {
            assert!(
                list(&[entry]).check("http://[::1]:8080/").is_ok(),
                "{entry}"
            );
        }
        // An IPv4-mapped address is not the IPv4 address.
        assert!(a.check("http://[::ffff:127.0.0.1]/cb").is_err());
        assert!(a.check("http://[::2]/cb").is_err());
    }

    #[test]
    fn credentials_in_a_url_are_refused_whatever_the_host() {
        for url in [
            "http://user:pw@127.0.0.1:9000/cb",
            "http://user@localhost/cb",
            "http://:pw@[::1]/cb",
        ] {
            assert_eq!(
                AllowList::loopback().check(url),
                Err(Refused::Credentials),
                "{url}"
            );
            assert_eq!(list(&["*"]).check(url), Err(Refused::Credentials), "{url}");
        }
    }

    /// Other spellings of an IPv4 address are that address: allowed where
    /// it is, refused where it is not — on the port as well.
    #[test]
    fn ipv4_spellings_are_compared_as_the_address_they_mean() {
        let loopback = AllowList::loopback();
        for host in ["2130706433", "0x7f000001", "127.1", "0177.0.0.1"] {
            let url = format!("http://{host}:9000/cb");
            assert!(loopback.check(&url).is_ok(), "{url}");
            assert!(list(&["127.0.0.1:9000"]).check(&url).is_ok(), "{url}");
            let refused = list(&["127.0.0.1:9001"]).check(&url);
            assert_eq!(
                refused,
                Err(Refused::NotAllowed("http://127.0.0.1:9000".into())),
                "{url}"
            );
            // An address is not a name.
            assert!(list(&["localhost"]).check(&url).is_err(), "{url}");
        }
        assert!(list(&["10.0.0.1"]).check("http://2130706433/").is_err());
        // Host names compare case-insensitively, in both places.
        assert!(loopback.check("http://LOCALHOST:1/").is_ok());
        assert!(list(&["Hooks.Internal"])
            .check("http://hooks.INTERNAL/")
            .is_ok());
        assert!(loopback.check("http://localhost.example/").is_err());
    }

    #[test]
    fn entries_may_pin_scheme_and_port() {
        let a = list(&[
            "127.0.0.1:9000",
            "https://hooks.internal",
            "hooks.internal:8080",
        ]);
        assert!(a.check("http://127.0.0.1:9000/x").is_ok());
        assert!(a.check("https://127.0.0.1:9000/x").is_ok());
        assert!(a.check("http://127.0.0.1:9001/x").is_err());
        // Without a port in the URL, the scheme's default is compared.
        assert!(list(&["127.0.0.1:80"]).check("http://127.0.0.1/").is_ok());
        assert!(a.check("https://hooks.internal/x").is_ok());
        assert!(a.check("https://hooks.internal:4443/x").is_ok());
        assert!(a.check("http://hooks.internal/x").is_err());
        assert!(a.check("http://hooks.internal:8080/x").is_ok());
        assert!(list(&["*:443"]).check("https://anywhere.example/").is_ok());
        assert!(list(&["*:443"]).check("http://anywhere.example/").is_err());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "",
            "host:http",
            "host:0",
            "host:70000",
            "ftp://host",
            "host/path",
            "user@host",
            "[::1",
            "[::1]x",
            "two words",
        ] {
            assert!(AllowList::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
        // What configurations so far held still parses.
        assert!(AllowList::parse(&["[::1]".into(), "::1".into(), "*".into()]).is_ok());
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
