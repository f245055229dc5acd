//! Validated topic names and subscription patterns.
//!
//! Topic names are 1–249 characters of `[a-zA-Z0-9._-]`; names beginning
//! `spool.` are reserved for system topics. Patterns are dot-separated like
//! NATS subjects: `*` matches exactly one token, `>` (last token only) matches
//! one or more tokens.

use crate::limits::{GROUP_NAME_LEN_MAX, TOPIC_NAME_LEN_MAX};
use std::fmt;

/// Prefix reserved for topics the server itself creates.
pub const SYSTEM_TOPIC_PREFIX: &str = "spool.";

/// Why a name or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong { len: usize },
    BadChar { ch: char, position: usize },
    Reserved,
    BadPattern(&'static str),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "name is empty"),
            NameError::TooLong { len } => {
                write!(
                    f,
                    "name is {len} characters; the maximum is {TOPIC_NAME_LEN_MAX}"
                )
            }
            NameError::BadChar { ch, position } => write!(
                f,
                "character {ch:?} at position {position} is not allowed; use [a-zA-Z0-9._-]"
            ),
            NameError::Reserved => {
                write!(
                    f,
                    "names beginning {SYSTEM_TOPIC_PREFIX:?} are reserved for system topics"
                )
            }
            NameError::BadPattern(why) => write!(f, "bad pattern: {why}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Why a group or subscription name was refused (there is one rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNameError;

impl fmt::Display for GroupNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "must be 1 to {GROUP_NAME_LEN_MAX} printable characters")
    }
}

impl std::error::Error for GroupNameError {}

/// Checks a consumer-group or queue-subscription name: 1 to
/// [`GROUP_NAME_LEN_MAX`] bytes with no control characters. Groups and
/// subscriptions share the rule (a stream subscription is a group).
pub fn check_group_name(name: &str) -> Result<(), GroupNameError> {
    let ok =
        !name.is_empty() && name.len() <= GROUP_NAME_LEN_MAX && !name.chars().any(char::is_control);
    ok.then_some(()).ok_or(GroupNameError)
}

/// A topic name that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    /// Validates a user-supplied topic name (reserved prefix refused).
    pub fn new(name: &str) -> Result<TopicName, NameError> {
        let topic = Self::new_system(name)?;
        if name.starts_with(SYSTEM_TOPIC_PREFIX) {
            return Err(NameError::Reserved);
        }
        Ok(topic)
    }

    /// Validates a name the server may use for its own topics (`spool.…` allowed).
    pub fn new_system(name: &str) -> Result<TopicName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let len = name.chars().count();
        if len > TOPIC_NAME_LEN_MAX {
            return Err(NameError::TooLong { len });
        }
        if name == "." || name == ".." {
            // These would name a directory other than the topic's own.
            return Err(NameError::BadPattern("'.' and '..' are not topic names"));
        }
        if let Some((position, ch)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadChar { ch, position });
        }
        Ok(TopicName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_system(&self) -> bool {
        self.0.starts_with(SYSTEM_TOPIC_PREFIX)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic name or a wildcard pattern over dot-separated topic names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    text: String,
    tokens: Vec<String>,
    wildcard: bool,
}

impl TopicPattern {
    pub fn new(text: &str) -> Result<TopicPattern, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.chars().count() > TOPIC_NAME_LEN_MAX {
            return Err(NameError::TooLong {
                len: text.chars().count(),
            });
        }
        let tokens: Vec<String> = text.split('.').map(str::to_owned).collect();
        let last = tokens.len() - 1;
        let mut wildcard = false;
        for (i, token) in tokens.iter().enumerate() {
            match token.as_str() {
                "*" => wildcard = true,
                ">" if i == last => wildcard = true,
                ">" => return Err(NameError::BadPattern("'>' may only be the last token")),
                t if t.contains('*') || t.contains('>') => {
                    return Err(NameError::BadPattern("wildcards must be whole tokens"))
                }
                _ => {}
            }
        }
        if !wildcard {
            // A plain name: validate it as one (system names allowed for reading).
            TopicName::new_system(text)?;
        } else if tokens.iter().any(|t| t.is_empty()) {
            return Err(NameError::BadPattern("empty token between dots"));
        } else {
            for t in tokens.iter().filter(|t| *t != "*" && *t != ">") {
                TopicName::new_system(t)?;
            }
        }
        Ok(TopicPattern {
            text: text.to_owned(),
            tokens,
            wildcard,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        if !self.wildcard {
            return self.text == topic;
        }
        let mut names = topic.split('.');
        for (i, token) in self.tokens.iter().enumerate() {
            match token.as_str() {
                ">" => {
                    debug_assert_eq!(i, self.tokens.len() - 1);
                    return names.next().is_some();
                }
                "*" => {
                    if names.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if names.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        names.next().is_none()
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn group_names_are_one_to_the_most_printable_characters() {
        assert_eq!(check_group_name("billing.v2"), Ok(()));
        assert_eq!(check_group_name(&"g".repeat(GROUP_NAME_LEN_MAX)), Ok(()));
        for bad in [
            String::new(),
            "g".repeat(GROUP_NAME_LEN_MAX + 1),
            "a\nb".into(),
        ] {
            assert_eq!(check_group_name(&bad), Err(GroupNameError), "{bad:?}");
        }
    }
    use super::*;

    #[test]
    fn topic_names() {
        assert!(TopicName::new("orders").is_ok());
        assert!(TopicName::new("orders.eu-1_x").is_ok());
        assert_eq!(TopicName::new(""), Err(NameError::Empty));
        assert_eq!(TopicName::new("spool.errors"), Err(NameError::Reserved));
        assert!(TopicName::new_system("spool.errors").is_ok());
        assert!(matches!(
            TopicName::new("a b"),
            Err(NameError::BadChar {
                ch: ' ',
                position: 1
            })
        ));
        assert!(TopicName::new(&"x".repeat(249)).is_ok());
        assert!(matches!(
            TopicName::new(&"x".repeat(250)),
            Err(NameError::TooLong { .. })
        ));
        assert!(matches!(
            TopicName::new("é"),
            Err(NameError::BadChar { .. })
        ));
    }

    #[test]
    fn patterns() {
        let star = TopicPattern::new("orders.*").unwrap();
        assert!(star.matches("orders.eu"));
        assert!(!star.matches("orders"));
        assert!(!star.matches("orders.eu.x"));
        assert!(!star.matches("ordersx.eu"));
        let tail = TopicPattern::new("orders.>").unwrap();
        assert!(tail.matches("orders.eu"));
        assert!(tail.matches("orders.eu.x.y"));
        assert!(!tail.matches("orders"));
        let plain = TopicPattern::new("orders").unwrap();
        assert!(!plain.is_wildcard());
        assert!(plain.matches("orders"));
        assert!(!plain.matches("orders.eu"));
        let mid = TopicPattern::new("*.created").unwrap();
        assert!(mid.matches("orders.created"));
        assert!(!mid.matches("orders.deleted"));
        assert!(TopicPattern::new("a.>.b").is_err());
        assert!(TopicPattern::new("a.b*").is_err());
        assert!(TopicPattern::new("a..*").is_err());
        assert!(TopicPattern::new(">").unwrap().matches("anything.at.all"));
    }
}
