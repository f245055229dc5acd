//! Per-log settings: durability, segment rolling, indexing and retention.

use crate::LogError;
use spool_types::limits::{
    INDEX_INTERVAL_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};

/// When an append counts as done. See `docs/storage-format.md` for what each
/// choice promises after a process crash and after a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append returns only after its bytes are fdatasync'd. Concurrent
    /// appends share one fdatasync (group commit).
    Always,
    /// Appends return once written to the OS; the log is fdatasync'd at least
    /// every `interval_ms` while there is unsynced data.
    Interval { interval_ms: u32 },
    /// Appends return once written to the OS; syncing is left to the OS
    /// (and to segment rolls, which always sync the sealed segment).
    Never,
}

impl Durability {
    pub fn name(&self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Interval { .. } => "interval",
            Durability::Never => "never",
        }
    }
}

/// Settings of one log. Cheap to clone; can be changed on an open log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub durability: Durability,
    /// Roll to a new segment once the active one reaches this many bytes.
    pub segment_bytes: u64,
    /// Roll to a new segment once the active one's first append is this old.
    pub segment_ms: Option<u64>,
    /// Bytes of batches between two entries of the sparse offset index.
    pub index_interval_bytes: u32,
    /// Delete the oldest sealed segments while the log exceeds this size.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Refuse to open, rather than cut the log, when a complete batch of the
    /// active segment fails its CRC with more batches after it. For logs
    /// written one fdatasync'd append at a time (metadata), where a crash
    /// can tear only the last batch: anything else is damage, and cutting
    /// would silently drop what came after it.
    pub strict_recovery: bool,
    /// Open the log in *entry mode*, as the Raft log of a replicated
    /// partition: every batch is a numbered entry with a term, control
    /// batches (no records) may be stored, and readers of offsets stop at
    /// the committed end (see `Log::write_entry`, `docs/storage-format.md`).
    /// Fixed when the log is opened: a directory remembers its mode (its
    /// `entry-mode` marker) and refuses to be opened in the other one, and
    /// `Log::set_config` refuses to change it.
    pub entry_mode: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Always,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: None,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_bytes: None,
            retention_ms: None,
            strict_recovery: false,
            entry_mode: false,
        }
    }
}

impl LogConfig {
    /// Checks every setting against its documented range.
    pub fn validate(&self) -> Result<(), LogError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(LogError::InvalidConfig(format!(
                "segment_bytes {} must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "index_interval_bytes must be at least 1".into(),
            ));
        }
        if let Durability::Interval { interval_ms: 0 } = self.durability {
            return Err(LogError::InvalidConfig(
                "durability interval_ms must be at least 1".into(),
            ));
        }
        if self.segment_ms == Some(0) {
            return Err(LogError::InvalidConfig(
                "segment_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
