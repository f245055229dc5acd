//! Authentication and authorization: who a request comes from and what it
//! may do. Shared by both listeners.
//!
//! Authentication is on once an admin token is configured (the bootstrap
//! token, [`ServerConfig::admin_token`](crate::ServerConfig)); then every
//! request needs a valid token, and each token carries [`Grants`]: topic
//! patterns it may produce to, patterns it may consume from, and whether it
//! is an admin. Without an admin token every request is allowed (and the
//! binary binds only loopback addresses unless told `--insecure`).
//!
//! Tokens are random (32 bytes from the operating system, shown as
//! `spool_` + 64 hex digits) and stored only as their SHA-256 hash, in
//! `<data_dir>/tokens.json`, replaced atomically on every change. A
//! presented token is hashed and compared with every known hash in
//! constant time. Failed authentications are logged with the peer address,
//! at most [`AUTH_FAILURES_PER_MINUTE`] per address per minute; past that
//! the address is refused unchecked (and unlogged) until its minute is over.

use hex::FromHex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spool_broker::BrokerError;
use spool_types::{ErrorCode, TopicPattern};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The name the bootstrap admin token goes by (in logs); no stored token
/// may take it.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin";
pub use spool_types::limits::TOKEN_NAME_LEN_MAX;
pub use spool_types::limits::TOKEN_PATTERNS_MAX;
/// Shortest admin token accepted from the configuration.
pub const ADMIN_TOKEN_LEN_MIN: usize = 16;
/// Failed authentications per peer address per minute that are checked and
/// logged; past that the address is refused unchecked until the minute is
/// over.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 10;
/// The token store, under the data directory.
pub const TOKENS_FILE: &str = "tokens.json";
/// Permission bits of the files holding secrets or their hashes (the token
/// store, the generated callback secret): owner read/write only.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// What every generated token starts with (so it is recognisable in a
/// leaked file or a secret scanner).
const TOKEN_PREFIX: &str = "spool_";
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
use spool_types::limits::FAILURE_PEERS_MAX;
const STORE_VERSION: u32 = 1;

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a token may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Topics (names or patterns) it may publish to and submit requests on.
    pub produce: Vec<TopicPattern>,
    /// Topics (names or patterns) it may consume from.
    pub consume: Vec<TopicPattern>,
    /// Everything, including topics, subscriptions and tokens.
    pub admin: bool,
}

impl Grants {
    /// Parses permission lists, naming the offending pattern.
    pub fn parse(produce: &[String], consume: &[String], admin: bool) -> Result<Grants, String> {
        let list = |what: &str, items: &[String]| -> Result<Vec<TopicPattern>, String> {
            if items.len() > TOKEN_PATTERNS_MAX {
                return Err(format!("at most {TOKEN_PATTERNS_MAX} {what} patterns"));
            }
            items
                .iter()
                .map(|p| TopicPattern::new(p).map_err(|e| format!("{what} pattern {p:?}: {e}")))
                .collect()
        };
        Ok(Grants {
            produce: list("produce", produce)?,
            consume: list("consume", consume)?,
            admin,
        })
    }

    fn may_produce(&self, topic: &str) -> bool {
        self.admin || self.produce.iter().any(|g| covers(g, topic))
    }

    fn may_consume(&self, topic_or_pattern: &str) -> bool {
        self.admin || self.consume.iter().any(|g| covers(g, topic_or_pattern))
    }
}

/// Whether every topic `wanted` (a name or a pattern) can match is matched
/// by `grant`. A name is covered if the grant matches it; a pattern only if
/// the grant is at least as wide token by token (`orders.*` covers
/// `orders.*` and `orders.eu`, not `orders.>`; `orders.>` covers both).
pub fn covers(grant: &TopicPattern, wanted: &str) -> bool {
    if !wanted.split('.').any(|t| t == "*" || t == ">") {
        return grant.matches(wanted);
    }
    let want: Vec<&str> = wanted.split('.').collect();
    let have: Vec<&str> = grant.as_str().split('.').collect();
    for (i, g) in have.iter().enumerate() {
        if *g == ">" {
            // One or more tokens, whatever they are.
            return i < want.len();
        }
        let Some(w) = want.get(i) else {
            return false;
        };
        match (*g, *w) {
            (_, ">") => return false,
            ("*", _) => {}
            (literal, w) if literal == w => {}
            _ => return false,
        }
    }
    have.len() == want.len()
}

/// An authenticated token holder.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub grants: Grants,
    /// Set when the token is revoked; connections that authenticated with
    /// it are refused from their next request on.
    revoked: AtomicBool,
}

/// What a request needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// Any valid token.
    Any,
    Admin,
    /// Produce to this topic.
    Produce(&'a str),
    /// Consume from this topic or pattern.
    Consume(&'a str),
    /// Consume from something (group calls that name no topic).
    ConsumeSomething,
    /// Produce to or consume from this topic (reading its description or a
    /// request record on it).
    ProduceOrConsume(&'a str),
}

/// What a caller does with a request record; the record's queue decides
/// whether it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAccess {
    /// Read it (the submitter waiting for its result, or a worker).
    Read,
    /// Complete or fail it (a worker).
    Settle,
}

impl RecordAccess {
    pub fn need(self, queue: &str) -> Need<'_> {
        match self {
            RecordAccess::Read => Need::ProduceOrConsume(queue),
            RecordAccess::Settle => Need::Consume(queue),
        }
    }
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off: everything is allowed.
    Open,
    Token(Arc<Principal>),
}

impl Caller {
    /// Allows the request, or says why not: `UNAUTHENTICATED` for a token
    /// revoked since, `FORBIDDEN` for a permission it lacks.
    pub fn check(&self, need: Need<'_>) -> Result<(), BrokerError> {
        let Caller::Token(p) = self else {
            return Ok(());
        };
        if p.revoked.load(Ordering::Acquire) {
            return Err(BrokerError::new(
                ErrorCode::Unauthenticated,
                format!("token {:?} has been revoked", p.name),
            ));
        }
        if self.may(need) {
            return Ok(());
        }
        let name = &p.name;
        let message = match need {
            Need::Any => format!("token {name:?} may not do this"),
            Need::Admin => format!("token {name:?} is not an admin token"),
            Need::Produce(t) => format!("token {name:?} may not produce to {t}"),
            Need::Consume(t) => format!("token {name:?} may not consume from {t}"),
            Need::ConsumeSomething => format!("token {name:?} may not consume"),
            Need::ProduceOrConsume(t) => format!("token {name:?} has no permission on {t}"),
        };
        Err(BrokerError::new(ErrorCode::Forbidden, message))
    }

    /// Whether the request is allowed (revocation aside); for filtering
    /// lists down to what a caller may see.
    pub fn may(&self, need: Need<'_>) -> bool {
        let Caller::Token(p) = self else {
            return true;
        };
        let g = &p.grants;
        match need {
            Need::Any => true,
            Need::Admin => g.admin,
            Need::Produce(t) => g.may_produce(t),
            Need::Consume(t) => g.may_consume(t),
            Need::ConsumeSomething => g.admin || !g.consume.is_empty(),
            Need::ProduceOrConsume(t) => g.may_produce(t) || g.may_consume(t),
        }
    }

    /// The token's name, for logs.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token(p) => Some(&p.name),
        }
    }
}

/// A stored token as `tokens.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    /// SHA-256 of the token, lower-case hex.
    sha256: String,
    produce: Vec<String>,
    consume: Vec<String>,
    admin: bool,
    created_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    tokens: Vec<StoredToken>,
}

struct Entry {
    stored: StoredToken,
    hash: [u8; 32],
    principal: Arc<Principal>,
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSummary {
    pub name: String,
    pub produce: Vec<String>,
    pub consume: Vec<String>,
    pub admin: bool,
    pub created_ms: u64,
}

/// Failed authentications per peer address, in fixed one-minute windows.
#[derive(Default)]
struct Failures {
    peers: HashMap<IpAddr, (Instant, u32)>,
}

impl Failures {
    /// Whether `ip` used up its failures for this window.
    fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.peers.get(&ip) {
            Some((start, n)) if now.duration_since(*start) < FAILURE_WINDOW => {
                *n >= AUTH_FAILURES_PER_MINUTE
            }
            Some(_) => {
                self.peers.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts a failure; returns how many `ip` has in this window.
    fn record(&mut self, ip: IpAddr, now: Instant) -> u32 {
        if self.peers.len() >= FAILURE_PEERS_MAX {
            self.peers
                .retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        }
        let entry = self.peers.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

/// A token bucket: `rate_per_s` requests a second on average, bursts of
/// up to one second's worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-token request rates ([`Auth::charge`]).
#[derive(Default)]
struct Rates {
    /// 0: unlimited.
    rate_per_s: u32,
    buckets: HashMap<String, Bucket>,
}

impl Rates {
    /// Takes one request from `name`'s bucket, or says how long until one
    /// is available.
    fn take(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.rate_per_s);
        if rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= RATE_BUCKETS_MAX && !self.buckets.contains_key(name) {
            // Full buckets say nothing; forget them.
            self.buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < rate
            });
        }
        let bucket = self.buckets.entry(name.to_owned()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

use spool_types::limits::RATE_BUCKETS_MAX;

/// The server's tokens and the bootstrap admin token.
pub struct Auth {
    admin: Option<([u8; 32], Arc<Principal>)>,
    path: PathBuf,
    tokens: Mutex<Vec<Entry>>,
    failures: Mutex<Failures>,
    rates: Mutex<Rates>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.enabled())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality that takes the same time wherever the inputs differ, so a
/// presented token's hash reveals nothing through timing.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

fn invalid(message: impl Into<String>) -> BrokerError {
    BrokerError::new(ErrorCode::InvalidRequest, message)
}

/// Checks a token name: 1 to 64 of `[A-Za-z0-9._-]`, not the bootstrap name.
pub fn check_token_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > TOKEN_NAME_LEN_MAX
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "token name {name:?}: use 1 to {TOKEN_NAME_LEN_MAX} of A-Z a-z 0-9 . _ -"
        ));
    }
    if name == BOOTSTRAP_TOKEN_NAME {
        return Err(format!(
            "token name {name:?} is reserved for the configured admin token"
        ));
    }
    Ok(())
}

/// A new random token: `spool_` and 32 bytes from the operating system in hex.
fn generate_token() -> Result<String, BrokerError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        BrokerError::new(
            ErrorCode::Internal,
            format!("no randomness for a token: {e}"),
        )
    })?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

impl Auth {
    /// Loads `<data_dir>/tokens.json` (absent: no tokens yet). With an
    /// admin token, authentication is on.
    pub fn open(data_dir: &Path, admin_token: Option<&Secret>) -> anyhow::Result<Auth> {
        let path = data_dir.join(TOKENS_FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => load(&bytes).map_err(|e| {
                anyhow::anyhow!("cannot read the token store {}: {e}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read the token store {}: {e}", path.display()),
        };
        let admin = admin_token.map(|t| {
            let principal = Principal {
                name: BOOTSTRAP_TOKEN_NAME.to_owned(),
                grants: Grants {
                    admin: true,
                    ..Grants::default()
                },
                revoked: AtomicBool::new(false),
            };
            (sha256(t.expose()), Arc::new(principal))
        });
        if admin.is_none() && !entries.is_empty() {
            tracing::warn!(
                "{} holds {} token(s) but no admin token is configured: authentication is off",
                path.display(),
                entries.len()
            );
        }
        Ok(Auth {
            admin,
            path,
            tokens: Mutex::new(entries),
            failures: Mutex::new(Failures::default()),
            rates: Mutex::new(Rates::default()),
        })
    }

    /// Authentication off: every request allowed, no store.
    pub fn disabled() -> Auth {
        Auth {
            admin: None,
            path: PathBuf::new(),
            tokens: Mutex::new(Vec::new()),
            failures: Mutex::new(Failures::default()),
            rates: Mutex::new(Rates::default()),
        }
    }

    /// Limits each token to `rate_per_s` requests a second (both listeners
    /// together; bursts of one second's worth); `None` or 0: unlimited.
    pub fn set_rate_limit(&self, rate_per_s: Option<u32>) {
        lock(&self.rates).rate_per_s = rate_per_s.unwrap_or(0);
    }

    /// Counts one request against the caller's rate limit: `RATE_LIMITED`
    /// (with a retry hint) when its token is over it. Open callers (no
    /// authentication) are not limited.
    pub fn charge(&self, caller: &Caller) -> Result<(), BrokerError> {
        let Caller::Token(p) = caller else {
            return Ok(());
        };
        let (waited, rate) = {
            let mut rates = lock(&self.rates);
            (rates.take(&p.name, Instant::now()), rates.rate_per_s)
        };
        waited.map_err(|wait| {
            metrics::counter!("spool_rate_limited_total", "token" => p.name.clone()).increment(1);
            BrokerError::new(
                ErrorCode::RateLimited,
                format!(
                    "token {:?} is over its limit of {rate} requests per second; slow down",
                    p.name
                ),
            )
            .retry_after(u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1))
        })
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// Who presents `token`. With authentication off, anyone is
    /// [`Caller::Open`]; otherwise a missing or unknown token is
    /// `UNAUTHENTICATED`, logged with `peer` (within the rate limit).
    pub fn authenticate(
        &self,
        token: Option<&str>,
        peer: SocketAddr,
        via: &'static str,
    ) -> Result<Caller, BrokerError> {
        let Some((admin_hash, admin)) = &self.admin else {
            return Ok(Caller::Open);
        };
        let now = Instant::now();
        if lock(&self.failures).blocked(peer.ip(), now) {
            return Err(BrokerError::new(
                ErrorCode::Unauthenticated,
                "too many failed authentications from this address; try again in a minute",
            ));
        }
        let reason = match token {
            None => "no token",
            Some(t) => {
                let hash = sha256(t);
                // Compare with every hash, whatever matches, so the time
                // taken says nothing about which (if any) did.
                let mut found = ct_eq(&hash, admin_hash).then(|| Arc::clone(admin));
                for e in lock(&self.tokens).iter() {
                    if ct_eq(&hash, &e.hash) && found.is_none() {
                        found = Some(Arc::clone(&e.principal));
                    }
                }
                if let Some(p) = found {
                    return Ok(Caller::Token(p));
                }
                "unknown token"
            }
        };
        let failures = lock(&self.failures).record(peer.ip(), now);
        if failures <= AUTH_FAILURES_PER_MINUTE {
            tracing::warn!(%peer, via, "authentication failed: {reason}");
        }
        if failures == AUTH_FAILURES_PER_MINUTE {
            tracing::warn!(
                %peer,
                via,
                "{AUTH_FAILURES_PER_MINUTE} failed authentications from {} within a minute: \
                 refusing it unchecked, without logging, until the minute is over",
                peer.ip()
            );
        }
        let message = match token {
            None => "a token is required (--token, SPOOL_TOKEN, or Authorization: Bearer)",
            Some(_) => "the token is not valid",
        };
        Err(BrokerError::new(ErrorCode::Unauthenticated, message))
    }

    /// Makes a token; returns it in clear, the only time it exists so.
    pub fn create(
        &self,
        name: &str,
        produce: &[String],
        consume: &[String],
        admin: bool,
        now_ms: i64,
    ) -> Result<String, BrokerError> {
        check_token_name(name).map_err(invalid)?;
        let grants = Grants::parse(produce, consume, admin).map_err(invalid)?;
        let token = generate_token()?;
        let hash = sha256(&token);
        let stored = StoredToken {
            name: name.to_owned(),
            sha256: hex::encode(hash),
            produce: produce.to_vec(),
            consume: consume.to_vec(),
            admin,
            created_ms: u64::try_from(now_ms).unwrap_or(0),
        };
        let mut tokens = lock(&self.tokens);
        if tokens.iter().any(|e| e.stored.name == name) {
            return Err(invalid(format!(
                "a token named {name:?} exists; revoke it first"
            )));
        }
        let mut all: Vec<StoredToken> = tokens.iter().map(|e| e.stored.clone()).collect();
        all.push(stored.clone());
        self.save(&all)?;
        tokens.push(Entry {
            stored,
            hash,
            principal: Arc::new(Principal {
                name: name.to_owned(),
                grants,
                revoked: AtomicBool::new(false),
            }),
        });
        tracing::info!(token = name, admin, "token created");
        Ok(token)
    }

    /// Every stored token, without secrets, by name.
    pub fn list(&self) -> Vec<TokenSummary> {
        let mut out: Vec<TokenSummary> = lock(&self.tokens)
            .iter()
            .map(|e| TokenSummary {
                name: e.stored.name.clone(),
                produce: e.stored.produce.clone(),
                consume: e.stored.consume.clone(),
                admin: e.stored.admin,
                created_ms: e.stored.created_ms,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Withdraws a token; connections using it are refused from their next
    /// request on.
    pub fn revoke(&self, name: &str) -> Result<(), BrokerError> {
        if name == BOOTSTRAP_TOKEN_NAME {
            return Err(invalid(
                "the admin token comes from the configuration; change it there",
            ));
        }
        let mut tokens = lock(&self.tokens);
        let Some(at) = tokens.iter().position(|e| e.stored.name == name) else {
            return Err(invalid(format!("no token named {name:?}")));
        };
        let rest: Vec<StoredToken> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, e)| e.stored.clone())
            .collect();
        self.save(&rest)?;
        let gone = tokens.remove(at);
        gone.principal.revoked.store(true, Ordering::Release);
        tracing::info!(token = name, "token revoked");
        Ok(())
    }

    /// Replaces the store atomically (a temporary file, fsync'd, renamed
    /// over the old one, the directory fsync'd), readable by the owner only:
    /// the hashes are not the tokens, but nobody else needs to see them.
    fn save(&self, tokens: &[StoredToken]) -> Result<(), BrokerError> {
        let file = StoreFile {
            version: STORE_VERSION,
            tokens: tokens.to_vec(),
        };
        let mut json = serde_json::to_vec_pretty(&file)
            .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
        json.push(b'\n');
        spool_log::fsutil::write_atomic_with_mode(&self.path, &json, SECRET_FILE_MODE)
            .map_err(|e| BrokerError::new(e.code(), format!("cannot save the token store: {e}")))
    }
}

fn load(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let file: StoreFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != STORE_VERSION {
        return Err(format!(
            "version {} (this server reads {STORE_VERSION})",
            file.version
        ));
    }
    file.tokens
        .into_iter()
        .map(|stored| {
            let hash = <[u8; 32]>::from_hex(&stored.sha256)
                .ok()
                .ok_or_else(|| format!("token {:?}: bad hash", stored.name))?;
            let grants = Grants::parse(&stored.produce, &stored.consume, stored.admin)
                .map_err(|e| format!("token {:?}: {e}", stored.name))?;
            let principal = Arc::new(Principal {
                name: stored.name.clone(),
                grants,
                revoked: AtomicBool::new(false),
            });
            Ok(Entry {
                stored,
                hash,
                principal,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> TopicPattern {
        TopicPattern::new(s).unwrap()
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let mut rates = Rates {
            rate_per_s: 10,
            ..Rates::default()
        };
        let t0 = Instant::now();
        for _ in 0..10 {
            rates.take("a", t0).unwrap();
        }
        let wait = rates.take("a", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another token has its own bucket.
        rates.take("b", t0).unwrap();
        // 100 ms later one request's worth is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        rates.take("a", t1).unwrap();
        assert!(rates.take("a", t1).is_err());
        // Unlimited when the rate is 0.
        rates.rate_per_s = 0;
        for _ in 0..1000 {
            rates.take("a", t1).unwrap();
        }
    }

    #[test]
    fn patterns_cover_names_and_narrower_patterns() {
        let star = pattern("orders.*");
        assert!(covers(&star, "orders.eu"));
        assert!(!covers(&star, "orders"));
        assert!(!covers(&star, "orders.eu.west"));
        assert!(!covers(&star, "payments"));
        assert!(covers(&star, "orders.*"));
        assert!(!covers(&star, "orders.>"));
        assert!(!covers(&star, "*.eu"));
        let deep = pattern("orders.>");
        assert!(covers(&deep, "orders.eu.west"));
        assert!(covers(&deep, "orders.*"));
        assert!(covers(&deep, "orders.>"));
        assert!(covers(&deep, "orders.*.west"));
        assert!(!covers(&deep, "orders"));
        assert!(!covers(&deep, ">"));
        let all = pattern(">");
        assert!(covers(&all, "anything.at.all"));
        assert!(covers(&all, ">"));
        let exact = pattern("payments");
        assert!(covers(&exact, "payments"));
        assert!(!covers(&exact, "payments.*"));
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn tokens_are_stored_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Secret::new("bootstrap-admin-token");
        let auth = Auth::open(dir.path(), Some(&admin)).unwrap();
        assert!(matches!(
            auth.authenticate(Some("bootstrap-admin-token"), peer(), "test"),
            Ok(Caller::Token(p)) if p.grants.admin
        ));
        let token = auth
            .create("orders", &["orders.*".into()], &[], false, 1)
            .unwrap();
        assert!(token.starts_with("spool_") && token.len() == 6 + 64);
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&token));
        assert!(stored.contains(&hex::encode(sha256(&token))));

        let caller = auth.authenticate(Some(&token), peer(), "test").unwrap();
        assert!(caller.check(Need::Produce("orders.eu")).is_ok());
        let e = caller.check(Need::Produce("payments")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = caller.check(Need::Consume("orders.eu")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(caller.check(Need::ProduceOrConsume("orders.eu")).is_ok());
        assert_eq!(
            caller.check(Need::Admin).unwrap_err().code,
            ErrorCode::Forbidden
        );

        // Reopened from disk, the token still works.
        let again = Auth::open(dir.path(), Some(&admin)).unwrap();
        assert!(again.authenticate(Some(&token), peer(), "test").is_ok());
        assert_eq!(again.list().len(), 1);

        auth.revoke("orders").unwrap();
        let e = caller.check(Need::Produce("orders.eu")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        let e = auth.authenticate(Some(&token), peer(), "test").unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        assert!(auth.create("admin", &[], &[], true, 1).is_err());
        assert!(auth.create("bad name", &[], &[], true, 1).is_err());
        assert!(auth
            .create("x", &["orders.>.x".into()], &[], true, 1)
            .is_err());
    }

    #[test]
    fn failures_are_rate_limited_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Secret::new("bootstrap-admin-token");
        let auth = Auth::open(dir.path(), Some(&admin)).unwrap();
        for _ in 0..AUTH_FAILURES_PER_MINUTE {
            assert!(auth.authenticate(Some("wrong"), peer(), "test").is_err());
        }
        // Refused unchecked now, even with the right token ...
        assert!(auth
            .authenticate(Some("bootstrap-admin-token"), peer(), "test")
            .is_err());
        // ... but only from that address.
        let other: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        assert!(auth
            .authenticate(Some("bootstrap-admin-token"), other, "test")
            .is_ok());
    }

    #[test]
    fn without_an_admin_token_everything_is_open() {
        let auth = Auth::disabled();
        assert!(!auth.enabled());
        let caller = auth.authenticate(None, peer(), "test").unwrap();
        assert!(caller.check(Need::Admin).is_ok());
        assert!(format!("{:?}", Secret::new("hush")) == "<redacted>");
    }
}
