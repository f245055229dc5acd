//! Integration tests of the codec: round trips, hostile input, the op table
//! and the fuzz seed corpus. One binary with a module per concern (see
//! ARCHITECTURE.md, "Tests").

mod code_table;
mod corpus;
mod malformed;
mod roundtrip;
mod support;
