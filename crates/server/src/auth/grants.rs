//! What a token may do, and whether a grant covers what a request names.

use super::TOKEN_PATTERNS_MAX;
use spool_types::TopicPattern;

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

    pub(super) fn may_produce(&self, topic: &str) -> bool {
        self.admin || self.produce.iter().any(|g| covers(g, topic))
    }

    pub(super) fn may_consume(&self, topic_or_pattern: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> TopicPattern {
        TopicPattern::new(s).unwrap()
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
}
