//! The `spool` binary: `spool server` and the client commands.
fn main() {}
