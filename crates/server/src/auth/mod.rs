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
//!
//! Creating or revoking a token is a [`TokenChange`] applied to a copy of
//! the [`TokenSet`] (the state machine, in `tokens.rs`), saved, and only
//! then kept; the token's randomness, the clock and the file stay out here.

mod caller;
mod grants;
mod limits;
mod tokens;

pub use caller::{Caller, Need, Principal, RecordAccess};
pub use grants::{covers, Grants};
pub use tokens::{Applied, StoredToken, TokenChange, TokenRefusal, TokenSet, TokenSummary};

use limits::{Failures, Rates};
use sha2::{Digest, Sha256};
use spool_broker::BrokerError;
use spool_types::ErrorCode;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
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

/// The server's tokens and the bootstrap admin token.
pub struct Auth {
    admin: Option<([u8; 32], Arc<Principal>)>,
    path: PathBuf,
    tokens: Mutex<TokenSet>,
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

/// Requests of token `name` refused with `RATE_LIMITED`.
fn rate_limited(name: &str) -> metrics::Counter {
    metrics::counter!("spool_rate_limited_total", "token" => name.to_owned())
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
        let tokens = match std::fs::read(&path) {
            Ok(bytes) => TokenSet::load(&bytes).map_err(|e| {
                anyhow::anyhow!("cannot read the token store {}: {e}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenSet::new(),
            Err(e) => anyhow::bail!("cannot read the token store {}: {e}", path.display()),
        };
        let admin = admin_token.map(|t| {
            let grants = Grants {
                admin: true,
                ..Grants::default()
            };
            let principal = Principal::new(BOOTSTRAP_TOKEN_NAME.to_owned(), grants);
            (sha256(t.expose()), Arc::new(principal))
        });
        if admin.is_none() && !tokens.is_empty() {
            tracing::warn!(
                "{} holds {} token(s) but no admin token is configured: authentication is off",
                path.display(),
                tokens.len()
            );
        }
        Ok(Auth {
            admin,
            path,
            tokens: Mutex::new(tokens),
            failures: Mutex::new(Failures::default()),
            rates: Mutex::new(Rates::default()),
        })
    }

    /// Authentication off: every request allowed, no store.
    pub fn disabled() -> Auth {
        Auth {
            admin: None,
            path: PathBuf::new(),
            tokens: Mutex::new(TokenSet::new()),
            failures: Mutex::new(Failures::default()),
            rates: Mutex::new(Rates::default()),
        }
    }

    /// Limits each token to `rate_per_s` requests a second (both listeners
    /// together; bursts of one second's worth); `None` or 0: unlimited.
    pub fn set_rate_limit(&self, rate_per_s: Option<u32>) {
        lock(&self.rates).rate_per_s = rate_per_s.unwrap_or(0);
        let names = lock(&self.tokens).summaries().into_iter().map(|t| t.name);
        let admin = self.admin.as_ref().map(|_| BOOTSTRAP_TOKEN_NAME.to_owned());
        for name in names.chain(admin) {
            self.rate_limited_from_zero(&name);
        }
    }

    /// With a rate limit on, `spool_rate_limited_total` of token `name` is
    /// exported from zero, before its first refusal.
    fn rate_limited_from_zero(&self, name: &str) {
        if lock(&self.rates).rate_per_s > 0 {
            rate_limited(name).increment(0);
        }
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
            rate_limited(&p.name).increment(1);
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
                for (known, principal) in lock(&self.tokens).holders() {
                    if ct_eq(&hash, known) && found.is_none() {
                        found = Some(Arc::clone(principal));
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
        // Checked here, before a command exists, so the refusals name what
        // the caller sent; applying checks the grants again, as it must for
        // a command from anywhere.
        check_token_name(name).map_err(invalid)?;
        Grants::parse(produce, consume, admin).map_err(invalid)?;
        let token = generate_token()?;
        self.change(&TokenChange::Created(StoredToken {
            name: name.to_owned(),
            sha256: hex::encode(sha256(&token)),
            produce: produce.to_vec(),
            consume: consume.to_vec(),
            admin,
            created_ms: u64::try_from(now_ms).unwrap_or(0),
        }))?;
        tracing::info!(token = name, admin, "token created");
        self.rate_limited_from_zero(name);
        Ok(token)
    }

    /// Every stored token, without secrets, by name.
    pub fn list(&self) -> Vec<TokenSummary> {
        lock(&self.tokens).summaries()
    }

    /// Withdraws a token; connections using it are refused from their next
    /// request on, and their waits and push subscriptions end now.
    pub fn revoke(&self, name: &str) -> Result<(), BrokerError> {
        if name == BOOTSTRAP_TOKEN_NAME {
            return Err(invalid(
                "the admin token comes from the configuration; change it there",
            ));
        }
        self.change(&TokenChange::Revoked {
            name: name.to_owned(),
        })?;
        tracing::info!(token = name, "token revoked");
        Ok(())
    }

    /// Applies `change` to a copy of the tokens, saves the copy, and only
    /// then makes it the tokens: a refused change or a failed save leaves
    /// them as they were. Under the lock, so changes apply in one order
    /// and each is saved before the next is applied.
    fn change(&self, change: &TokenChange) -> Result<(), BrokerError> {
        let mut tokens = lock(&self.tokens);
        let mut next = tokens.clone();
        let applied = next
            .apply(change)
            .map_err(|refusal| invalid(refusal.to_string()))?;
        self.save(&next)?;
        *tokens = next;
        if let Applied::Revoked(principal) = applied {
            principal.revoked.cancel();
        }
        Ok(())
    }

    /// Replaces the store atomically (a temporary file, fsync'd, renamed
    /// over the old one, the directory fsync'd), readable by the owner only:
    /// the hashes are not the tokens, but nobody else needs to see them.
    fn save(&self, tokens: &TokenSet) -> Result<(), BrokerError> {
        let json = tokens
            .to_json()
            .map_err(|e| BrokerError::new(ErrorCode::Internal, e.to_string()))?;
        spool_log::fsutil::write_atomic_with_mode(&self.path, &json, SECRET_FILE_MODE)
            .map_err(|e| BrokerError::new(e.code(), format!("cannot save the token store: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Auth` in a fresh directory, with the admin token
    /// `bootstrap-admin-token`.
    fn with_admin() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let admin = Secret::new("bootstrap-admin-token");
        let auth = Auth::open(dir.path(), Some(&admin)).unwrap();
        (dir, auth)
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn tokens_are_stored_hashed_and_checked() {
        let (dir, auth) = with_admin();
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
        let again = Auth::open(dir.path(), Some(&Secret::new("bootstrap-admin-token"))).unwrap();
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
        let (_dir, auth) = with_admin();
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
    fn a_failed_save_leaves_the_tokens_unchanged() {
        let (dir, auth) = with_admin();
        let kept = auth.create("kept", &[], &[], false, 1).unwrap();
        let caller = auth.authenticate(Some(&kept), peer(), "test").unwrap();
        // A directory where tokens.json was: the rename over it fails, even
        // as root (permission bits would not stop root).
        let path = dir.path().join(TOKENS_FILE);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();

        let e = auth.create("new", &[], &[], false, 2).unwrap_err();
        assert!(e.message.contains("cannot save the token store"), "{e:?}");
        let names: Vec<String> = auth.list().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["kept"]);

        // A failed revoke neither removes the token nor marks its holder.
        assert!(auth.revoke("kept").is_err());
        assert_eq!(auth.list().len(), 1);
        assert!(caller.check(Need::Any).is_ok());
        assert!(auth.authenticate(Some(&kept), peer(), "test").is_ok());

        // Once the store can be written again, the same changes go through.
        std::fs::remove_dir(&path).unwrap();
        auth.create("new", &[], &[], false, 2).unwrap();
        auth.revoke("kept").unwrap();
        assert_eq!(
            caller.check(Need::Any).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        let reopened = Auth::open(dir.path(), Some(&Secret::new("bootstrap-admin-token"))).unwrap();
        let names: Vec<String> = reopened.list().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["new"]);
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
