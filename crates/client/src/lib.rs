//! Async Rust client for Spool: producer, consumer, push subscriber, admin.
