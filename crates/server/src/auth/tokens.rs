//! The stored tokens as a state machine: a [`TokenSet`] changes only by
//! applying a [`TokenChange`], in one order, without I/O, a clock or
//! randomness (issue 17's replication boundary). The token itself and the
//! randomness it comes from stay outside: [`Auth::create`](super::Auth::create)
//! generates and hashes it, so a command carries only the hash and could
//! be replicated or logged without exposing a secret. Saving the result
//! (`tokens.json`) and marking a revoked holder are the caller's effects.

use super::{Grants, Principal};
use hex::FromHex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

const STORE_VERSION: u32 = 1;

/// A change to the stored tokens: the command a replicated metadata group
/// would carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenChange {
    /// A new token, as `tokens.json` will hold it (its hash, never the
    /// token itself).
    Created(StoredToken),
    Revoked {
        name: String,
    },
}

/// What applying a change did, for the effects outside the state machine.
#[derive(Debug)]
pub enum Applied {
    Created,
    /// The revoked token's holder, for the caller to mark revoked once the
    /// change is durable. Applying does not mark it: a set applied to as a
    /// copy shares its holders with the set it was copied from, which must
    /// stay as it was if the change is not kept.
    Revoked(Arc<Principal>),
}

/// Why a change was refused; the set is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Created for a name the set holds.
    #[error("a token named {name:?} exists; revoke it first")]
    Exists { name: String },
    /// Revoked for a name the set does not hold.
    #[error("no token named {name:?}")]
    Absent { name: String },
    /// Created with a hash that is not 64 hex digits.
    #[error("token {name:?}: bad hash")]
    BadHash { name: String },
    /// Created with a pattern that does not parse, or too many.
    #[error("token {name:?}: {reason}")]
    BadGrants { name: String, reason: String },
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

/// A stored token as `tokens.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    pub name: String,
    /// SHA-256 of the token, lower-case hex (64 digits).
    pub sha256: String,
    pub produce: Vec<String>,
    pub consume: Vec<String>,
    pub admin: bool,
    /// Milliseconds since the Unix epoch, stamped by whoever built the
    /// command (applying it reads no clock).
    pub created_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    tokens: Vec<StoredToken>,
}

/// A stored token with what is derived from it once, when it is applied:
/// the hash as bytes (compared on every authentication) and its holder.
#[derive(Debug, Clone)]
struct Entry {
    stored: StoredToken,
    hash: [u8; 32],
    principal: Arc<Principal>,
}

/// The stored tokens, by name.
///
/// Cloning shares the holders ([`Principal`]s), so a connection that
/// authenticated before a change keeps the same holder after it.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    tokens: BTreeMap<String, Entry>,
}

/// Equal when the stored tokens are: the hash and the holder follow from
/// them (and a set's holders are never marked revoked, revoking removes
/// them).
impl PartialEq for TokenSet {
    fn eq(&self, other: &TokenSet) -> bool {
        self.tokens.len() == other.tokens.len()
            && self
                .tokens
                .values()
                .zip(other.tokens.values())
                .all(|(a, b)| a.stored == b.stored)
    }
}

impl Eq for TokenSet {}

impl TokenSet {
    /// No tokens.
    pub fn new() -> TokenSet {
        TokenSet::default()
    }

    /// Applies `change`, or refuses it and leaves the set as it was. Pure:
    /// the same changes in the same order give the same set, and no input
    /// panics.
    pub fn apply(&mut self, change: &TokenChange) -> Result<Applied, TokenRefusal> {
        match change {
            TokenChange::Created(stored) => {
                let name = &stored.name;
                if self.tokens.contains_key(name) {
                    return Err(TokenRefusal::Exists { name: name.clone() });
                }
                let hash = <[u8; 32]>::from_hex(&stored.sha256)
                    .map_err(|_| TokenRefusal::BadHash { name: name.clone() })?;
                let grants = Grants::parse(&stored.produce, &stored.consume, stored.admin);
                let grants = grants.map_err(|reason| TokenRefusal::BadGrants {
                    name: name.clone(),
                    reason,
                })?;
                let entry = Entry {
                    stored: stored.clone(),
                    hash,
                    principal: Arc::new(Principal::new(name.clone(), grants)),
                };
                self.tokens.insert(name.clone(), entry);
                Ok(Applied::Created)
            }
            TokenChange::Revoked { name } => match self.tokens.remove(name) {
                Some(gone) => Ok(Applied::Revoked(gone.principal)),
                None => Err(TokenRefusal::Absent { name: name.clone() }),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Every token, without secrets, by name.
    pub fn summaries(&self) -> Vec<TokenSummary> {
        self.tokens
            .values()
            .map(|e| TokenSummary {
                name: e.stored.name.clone(),
                produce: e.stored.produce.clone(),
                consume: e.stored.consume.clone(),
                admin: e.stored.admin,
                created_ms: e.stored.created_ms,
            })
            .collect()
    }

    /// Every token's hash and holder, for authentication.
    pub(super) fn holders(&self) -> impl Iterator<Item = (&[u8; 32], &Arc<Principal>)> {
        self.tokens.values().map(|e| (&e.hash, &e.principal))
    }

    /// Reads `tokens.json`: each stored token applied as created, in the
    /// file's order.
    pub(super) fn load(bytes: &[u8]) -> Result<TokenSet, String> {
        let file: StoreFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != STORE_VERSION {
            return Err(format!(
                "version {} (this server reads {STORE_VERSION})",
                file.version
            ));
        }
        let mut set = TokenSet::new();
        for t in file.tokens {
            set.apply(&TokenChange::Created(t))
                .map_err(|refusal| match refusal {
                    TokenRefusal::Exists { name } => format!("token {name:?} is there twice"),
                    other => other.to_string(),
                })?;
        }
        Ok(set)
    }

    /// The set as `tokens.json` holds it: pretty-printed JSON, one trailing
    /// newline, tokens by name.
    pub(super) fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let file = StoreFile {
            version: STORE_VERSION,
            tokens: self.tokens.values().map(|e| e.stored.clone()).collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file)?;
        json.push(b'\n');
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, hash_byte: u8) -> TokenChange {
        TokenChange::Created(StoredToken {
            name: name.into(),
            sha256: hex::encode([hash_byte; 32]),
            produce: vec!["orders.*".into()],
            consume: vec![],
            admin: false,
            created_ms: 7,
        })
    }

    fn revoked(name: &str) -> TokenChange {
        TokenChange::Revoked { name: name.into() }
    }

    #[test]
    fn apply_creates_then_revokes() {
        let mut set = TokenSet::new();
        assert!(matches!(
            set.apply(&created("orders", 1)),
            Ok(Applied::Created)
        ));
        assert_eq!(set.len(), 1);
        let listed = set.summaries();
        assert_eq!(listed[0].name, "orders");
        assert_eq!(listed[0].produce, vec!["orders.*".to_owned()]);
        assert_eq!(listed[0].created_ms, 7);
        let (hash, holder) = set.holders().next().unwrap();
        assert_eq!(hash, &[1; 32]);
        assert!(holder.grants.may_produce("orders.eu"));

        let Ok(Applied::Revoked(gone)) = set.apply(&revoked("orders")) else {
            panic!("not revoked");
        };
        assert_eq!(gone.name, "orders");
        // Marking the holder is the caller's effect, not the set's.
        assert!(!gone.revoked.is_cancelled());
        assert!(set.is_empty());
    }

    #[test]
    fn apply_refuses_a_duplicate_create_and_leaves_the_set_unchanged() {
        let mut set = TokenSet::new();
        set.apply(&created("orders", 1)).unwrap();
        let before = set.clone();
        let refusal = set.apply(&created("orders", 2)).unwrap_err();
        assert_eq!(
            refusal,
            TokenRefusal::Exists {
                name: "orders".into()
            }
        );
        assert_eq!(
            refusal.to_string(),
            "a token named \"orders\" exists; revoke it first"
        );
        assert_eq!(set, before);
        assert_eq!(set.holders().next().unwrap().0, &[1; 32]);
    }

    #[test]
    fn apply_refuses_revoking_an_unknown_token() {
        let mut set = TokenSet::new();
        set.apply(&created("orders", 1)).unwrap();
        let before = set.clone();
        let refusal = set.apply(&revoked("payments")).unwrap_err();
        assert_eq!(refusal.to_string(), "no token named \"payments\"");
        assert_eq!(set, before);
        assert!(TokenSet::new().apply(&revoked("orders")).is_err());
    }

    #[test]
    fn applying_the_same_changes_gives_equal_sets() {
        let changes = [
            created("b", 1),
            created("a", 2),
            revoked("b"),
            created("c", 3),
            created("a", 4), // refused in both
            revoked("zzz"),  // refused in both
            created("b", 5),
        ];
        let run = || {
            let mut set = TokenSet::new();
            let outcomes: Vec<bool> = changes.iter().map(|c| set.apply(c).is_ok()).collect();
            (set, outcomes)
        };
        let (one, one_outcomes) = run();
        let (two, two_outcomes) = run();
        assert_eq!(one_outcomes, two_outcomes);
        assert_eq!(one, two);
        assert_eq!(one.to_json().unwrap(), two.to_json().unwrap());
        let names: Vec<String> = one.summaries().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_ne!(one, TokenSet::new());
    }

    #[test]
    fn apply_refuses_a_malformed_created_without_panicking() {
        let mut set = TokenSet::new();
        for sha256 in ["", "zz", "00", &"g".repeat(64), &"0".repeat(66), "é"] {
            let change = TokenChange::Created(StoredToken {
                name: "x".into(),
                sha256: sha256.into(),
                produce: vec![],
                consume: vec![],
                admin: true,
                created_ms: 0,
            });
            assert_eq!(
                set.apply(&change).unwrap_err(),
                TokenRefusal::BadHash { name: "x".into() },
                "{sha256:?}"
            );
        }
        let bad_pattern = TokenChange::Created(StoredToken {
            name: "x".into(),
            sha256: hex::encode([0; 32]),
            produce: vec!["orders.>.x".into()],
            consume: vec![],
            admin: false,
            created_ms: 0,
        });
        assert!(matches!(
            set.apply(&bad_pattern),
            Err(TokenRefusal::BadGrants { .. })
        ));
        assert!(set.is_empty());
    }

    #[test]
    fn changes_serialise_tagged() {
        let json = serde_json::to_value(revoked("orders")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"change": "revoked", "name": "orders"})
        );
        let change = created("orders", 1);
        let json = serde_json::to_string(&change).unwrap();
        assert!(
            json.starts_with(r#"{"change":"created","name":"orders""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<TokenChange>(&json).unwrap(), change);
    }

    #[test]
    fn a_store_naming_a_token_twice_is_refused() {
        let mut set = TokenSet::new();
        set.apply(&created("orders", 1)).unwrap();
        let json = String::from_utf8(set.to_json().unwrap()).unwrap();
        assert_eq!(TokenSet::load(json.as_bytes()).unwrap(), set);
        let first = format!(
            r#"{{"name": "orders", "sha256": "{}", "produce": [], "consume": [], "admin": false, "created_ms": 0}},"#,
            hex::encode([2; 32])
        );
        let twice = json.replace("\"tokens\": [", &format!("\"tokens\": [{first}"));
        let e = TokenSet::load(twice.as_bytes()).unwrap_err();
        assert_eq!(e, "token \"orders\" is there twice");
    }
}
