//! [`Connect`]: where clients come from — a Spool server over the network
//! ([`Remote`]) or a broker inside this process (`spool_embedded::Embedded`).
//! Application code written against `impl Connect` runs unchanged on
//! either: moving from the in-app queue to a separate server changes the
//! one line that builds the connector.

use crate::client::{Client, ClientOptions};
use crate::error::ClientError;
use std::future::Future;

/// Hands out connections to a Spool broker. Every connection is a
/// [`Client`], with the same API and the same behaviour wherever the broker
/// runs.
pub trait Connect: Send + Sync {
    /// Opens a new connection (the Hello handshake done).
    fn connect(&self) -> impl Future<Output = Result<Client, ClientError>> + Send;
}

/// A Spool server at a network address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    addr: String,
    options: ClientOptions,
}

impl Remote {
    /// The server at `addr` (`host:port`), with default options.
    pub fn new(addr: impl Into<String>) -> Remote {
        Remote {
            addr: addr.into(),
            options: ClientOptions::default(),
        }
    }

    /// Connects with `options` (token, TLS, client id).
    pub fn with_options(mut self, options: ClientOptions) -> Remote {
        self.options = options;
        self
    }

    /// The server's address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Connect for Remote {
    fn connect(&self) -> impl Future<Output = Result<Client, ClientError>> + Send {
        Client::connect(self.addr.clone(), self.options.clone())
    }
}
