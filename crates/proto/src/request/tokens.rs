//! Access tokens (ops 70 and 72; ListTokens has no body).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

/// Makes an access token (admin only). The server answers with the token
/// itself, the only time it is ever shown; it keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    /// Unique among the server's tokens; names it in `ListTokens`,
    /// `RevokeToken` and the logs.
    pub name: String,
    /// Topic names or patterns the token may publish to (and submit
    /// requests on).
    pub produce: Vec<String>,
    /// Topic names or patterns the token may consume from.
    pub consume: Vec<String>,
    /// Everything else too: topics, subscriptions, tokens.
    pub admin: bool,
}

impl Body for CreateToken {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("create_token.name", &self.name)?;
        w.string_array(
            "create_token.produce",
            &self.produce,
            SUBSCRIPTION_TOPICS_MAX,
        )?;
        w.string_array(
            "create_token.consume",
            &self.consume,
            SUBSCRIPTION_TOPICS_MAX,
        )?;
        w.bool(self.admin);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateToken {
            name: r.string("create_token.name")?,
            produce: r.string_array("create_token.produce", SUBSCRIPTION_TOPICS_MAX)?,
            consume: r.string_array("create_token.consume", SUBSCRIPTION_TOPICS_MAX)?,
            admin: r.bool("create_token.admin")?,
        })
    }
}

/// Withdraws a token (admin only); connections using it are refused from
/// their next request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeToken {
    pub name: String,
}

impl Body for RevokeToken {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("revoke_token.name", &self.name)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(RevokeToken {
            name: r.string("revoke_token.name")?,
        })
    }
}
