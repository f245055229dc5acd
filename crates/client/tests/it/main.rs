//! Integration tests of the client against the real server, in process.
//! One binary with a module per concern (see ARCHITECTURE.md, "Tests").

mod client;
mod consumer;
mod queues;
mod support;
