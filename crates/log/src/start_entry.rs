//! The `start-entry` file of a log in entry mode: the index of the first
//! entry of its first segment, kept for when that segment's `.entryindex`
//! (which records it too) is missing or damaged. The same shape as
//! `start-offset`: one common file header (magic `SPOOLSEN`) whose value is
//! the index, replaced atomically whenever a purge, retention or a reset
//! moves the log's start. Without the file the first entry is 1.

use crate::{file_header, fsutil, LogError};
use std::path::Path;

const START_ENTRY_FILE: &str = "start-entry";
const START_ENTRY_MAGIC: [u8; 8] = *b"SPOOLSEN";

/// The index of the first entry when a log holds none yet.
pub const FIRST_ENTRY_INDEX: u64 = 1;

/// The recorded first entry index, `None` if there is no file, or why the
/// file could not be used.
pub(crate) fn read(dir: &Path) -> Result<Option<u64>, String> {
    let path = dir.join(START_ENTRY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => file_header::decode(START_ENTRY_MAGIC, &bytes)
            .and_then(|v| u64::try_from(v).map_err(|_| format!("negative entry index {v}")))
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Records `index` durably before it returns.
pub(crate) fn write(dir: &Path, index: u64) -> Result<(), LogError> {
    let value = i64::try_from(index)
        .map_err(|_| LogError::InvalidConfig(format!("entry index {index} is too large")))?;
    fsutil::write_atomic(
        &dir.join(START_ENTRY_FILE),
        &file_header::encode(START_ENTRY_MAGIC, value),
    )
}
