//! Spool's durable log: one append-only, segmented log per partition on local
//! disk. This is the heart of the product.
//!
//! - [`Log`] appends record batches by one path: [`Log::write`] puts a batch
//!   in the file, [`Log::sync_to`] makes offsets durable with group commit
//!   ([`Log::write_durable`] does both on the caller's thread). It reads whole
//!   stored batches by offset or timestamp ([`Log::read`],
//!   [`Log::read_from_timestamp`]), applies retention, advances the
//!   low-water mark and truncates a suffix.
//! - [`Syncer`] waits for fdatasyncs on a few shared threads and runs a
//!   completion, for callers (the server) that must not park a thread each.
//! - [`LogConfig`] and [`Durability`] choose when an append counts as done.
//! - [`RecoveryReport`] says what opening a log repaired.
//! - *Entry mode* ([`LogConfig::entry_mode`]) makes the log a Raft log
//!   without it knowing of Raft: every batch is a numbered entry with a
//!   term ([`Log::write_entry`], [`Log::read_entries`], [`Log::entry_bounds`],
//!   [`Log::truncate_entries_from`], [`Log::purge_entries_to`],
//!   [`Log::reset_entries`]), control batches (no records) may be stored,
//!   and readers of offsets stop at the committed end
//!   ([`Log::set_committed_end`]).
//!
//! Formats (each owned by one module): segment files (`segment`), indexes
//! (`index`), the common file header (`file_header`), the low-water mark
//! (`start_offset`); in entry mode the entry index (`entry_index`), the
//! first entry index (`start_entry`) and the mode marker (`mode_marker`);
//! batches are Kafka
//! RecordBatch v2 from `spool-batch`. See `docs/storage-format.md`.
//!
//! The log is synchronous `std` code: it knows nothing of topics, networks or
//! async runtimes, and never reads the clock (time arrives as `now_ms`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod entry_index;
mod error;
mod file_cache;
mod file_header;
pub mod fsutil;
mod index;
mod log;
mod mode_marker;
mod read_buffers;
mod scan;
mod segment;
mod start_entry;
mod start_offset;
mod syncer;

pub use config::{Durability, LogConfig};
pub use error::LogError;
pub use file_cache::{SealedFileCache, SEALED_FILES_OPEN_MAX};
pub use log::{
    Appended, EntryAppended, EntryBounds, EntryId, Log, LogStats, ReadBatches, RecoveryReport,
    RetentionCut, StoredEntry,
};
pub use segment::{parse_segment_name, SEGMENT_FILES, SEGMENT_FILES_ENTRY_MODE};
pub use start_entry::FIRST_ENTRY_INDEX;
pub use syncer::{SyncDone, Syncer, SYNCER_THREADS_DEFAULT};
