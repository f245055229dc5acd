//! Spool's shared vocabulary: the stable error-code table ([`ErrorCode`]),
//! every named limit ([`limits`]) and validated names ([`TopicName`]).
//!
//! This crate does no I/O and depends on nothing; every other crate may use it.
//! Wire codes and limits defined here are a public contract: a code, once
//! published, keeps its number and name forever, and a retired one is never reused.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error_code;
pub mod limits;
pub mod names;
pub mod partitioner;

pub use error_code::ErrorCode;
pub use names::{NameError, TopicName, TopicPattern};
