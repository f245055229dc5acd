//! The harness Spool's integration tests share (a dev-dependency only):
//!
//! - [`http`]: a deliberately tiny HTTP/1.1 client, blocking and async, so
//!   nothing hides the wire;
//! - [`receiver`]: an HTTP endpoint that records the callbacks and pushes
//!   it receives, and the check of their `Spool-Signature`;
//! - [`server`]: a [`spool_server::Server`] in-process on ephemeral ports
//!   over a temporary data directory.

pub mod http;
pub mod receiver;
pub mod server;

pub use http::Reply;
pub use receiver::Receiver;
pub use server::TestServer;
