//! Integration tests: each starts the real `spool` binary on an ephemeral
//! loopback port with a temporary data directory and drives it through the
//! CLI, the Rust client or raw bytes. One test binary, a module per feature.

mod auth;
mod backpressure;
mod cli;
mod cluster;
mod cluster_faults;
mod cluster_tls;
mod corrupt;
mod crash;
mod crash_loop;
mod descriptors;
mod full_disk;
mod group_admin;
mod groups;
mod hostile;
mod hung_up;
mod metrics_help;
mod patterns;
mod queue_crash;
mod queues;
mod raw;
mod requests;
mod same_api;
mod subscription_alter;
mod subscription_push;
mod support;
mod tls;
