//! Integration tests of the durable log against real files and real fsync.
//! One binary with a module per concern (see ARCHITECTURE.md, "Tests").

mod basic;
mod crash;
mod model;
mod support;
