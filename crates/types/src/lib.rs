//! Spool's shared vocabulary: the stable error-code table ([`ErrorCode`]),
//! every named limit ([`limits`]), validated names ([`TopicName`]) and the
//! one rule for group and subscription names ([`check_group_name`]), the
//! record headers Spool gives a meaning to
//! ([`headers`]) and request statuses ([`RequestStatus`]). Front ends parse
//! into these types at the edge; everything below uses them.
//!
//! This crate does no I/O and depends on nothing (serde only with its
//! `serde` feature); every other crate may use it.
//! Wire codes and limits defined here are a public contract: a code, once
//! published, keeps its number and name forever, and a retired one is never reused.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error_code;
pub mod headers;
pub mod limits;
pub mod names;
pub mod partitioner;
pub mod requests;

pub use error_code::ErrorCode;
pub use names::{check_group_name, GroupNameError, NameError, TopicName, TopicPattern};
pub use requests::RequestStatus;
