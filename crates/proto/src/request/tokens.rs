//! Access tokens (ops 70 and 72; ListTokens has no body).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

wire_struct! {
    /// Makes an access token (admin only). The server answers with the
    /// token itself, the only time it is ever shown; it keeps only its hash.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CreateToken {
        /// Unique among the server's tokens; names it in `ListTokens`,
        /// `RevokeToken` and the logs.
        pub name: String => string("create_token.name"),
        /// Topic names or patterns the token may publish to (and submit
        /// requests on).
        pub produce: Vec<String> =>
            string_array("create_token.produce", SUBSCRIPTION_TOPICS_MAX),
        /// Topic names or patterns the token may consume from.
        pub consume: Vec<String> =>
            string_array("create_token.consume", SUBSCRIPTION_TOPICS_MAX),
        /// Everything else too: topics, subscriptions, tokens.
        pub admin: bool => bool("create_token.admin"),
    }
}

wire_struct! {
    /// Withdraws a token (admin only); connections using it are refused
    /// from their next request on.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RevokeToken {
        pub name: String => string("revoke_token.name"),
    }
}
