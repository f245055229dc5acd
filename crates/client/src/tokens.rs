//! Access tokens (admin only): [`Client::create_token`] returns a new token
//! once, [`Client::list_tokens`] shows names and permissions (never
//! secrets), [`Client::revoke_token`] withdraws one. A client presents its
//! own token in [`ClientOptions::token`](crate::ClientOptions).

use crate::client::{unexpected, Client};
use crate::error::ClientError;
use spool_proto::{self as p, Request, ResponseBody};

/// What a new token may do. Patterns use the subscription wildcard syntax
/// (`orders.*` one level, `orders.>` any depth).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenGrants {
    /// Topics it may publish to (and submit requests on).
    pub produce: Vec<String>,
    /// Topics it may consume from.
    pub consume: Vec<String>,
    /// Everything else too: topics, subscriptions, tokens.
    pub admin: bool,
}

impl Client {
    /// Creates a token named `name`; returns the token itself, which the
    /// server does not keep (only its hash) and cannot show again.
    pub async fn create_token(
        &self,
        name: &str,
        grants: TokenGrants,
    ) -> Result<String, ClientError> {
        let request = Request::CreateToken(p::CreateToken {
            name: name.to_owned(),
            produce: grants.produce,
            consume: grants.consume,
            admin: grants.admin,
        });
        match self.call(request).await? {
            ResponseBody::TokenCreated(created) => Ok(created.token),
            other => Err(unexpected(&other, p::Op::CreateToken)),
        }
    }

    /// The server's tokens by name, with their permissions.
    pub async fn list_tokens(&self) -> Result<Vec<p::TokenInfo>, ClientError> {
        match self.call(Request::ListTokens).await? {
            ResponseBody::Tokens(tokens) => Ok(tokens),
            other => Err(unexpected(&other, p::Op::ListTokens)),
        }
    }

    /// Withdraws a token: requests with it fail `UNAUTHENTICATED` from now
    /// on, including on connections already open.
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let request = Request::RevokeToken(p::RevokeToken {
            name: name.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::TokenRevoked => Ok(()),
            other => Err(unexpected(&other, p::Op::RevokeToken)),
        }
    }
}
