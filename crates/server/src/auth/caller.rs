//! Who a request comes from ([`Caller`]) and whether it may do what it
//! asks ([`Need`]).

use super::Grants;
use spool_broker::BrokerError;
use spool_types::ErrorCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// An authenticated token holder.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub grants: Grants,
    /// Cancelled when the token is revoked: connections that authenticated
    /// with it are refused from their next request on, and their waits and
    /// push subscriptions, which listen for it, end at once.
    pub(super) revoked: CancellationToken,
}

impl Principal {
    pub(super) fn new(name: String, grants: Grants) -> Principal {
        Principal {
            name,
            grants,
            revoked: CancellationToken::new(),
        }
    }
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
        if p.revoked.is_cancelled() {
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

    /// Resolves once the caller's token is revoked (never for an open
    /// caller), so that a wait or a push subscription ends at the
    /// revocation rather than at the client's next request.
    pub async fn revoked(&self) {
        match self {
            Caller::Open => std::future::pending().await,
            Caller::Token(p) => p.revoked.cancelled().await,
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
