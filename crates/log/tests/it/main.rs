//! Integration tests of the durable log against real files and real fsync.
//! One binary with a module per concern (see ARCHITECTURE.md, "Tests").

mod basic;
mod crash;
mod entries;
mod entries_model;
mod full_disk;
mod model;
mod sealed_files;
mod support;
