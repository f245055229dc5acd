//! The server's integration tests: one test binary, a module per area.

mod connection;
mod http;
mod in_process;
mod openapi;
mod outbound;
mod queues;
mod waits;
