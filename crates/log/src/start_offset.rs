//! The `start-offset` file: a log's low-water mark, kept across restarts.
//! A common file header (`file_header`) whose value is the start offset,
//! replaced atomically (`fsutil::write_atomic`). See `docs/storage-format.md`.

use crate::{file_header, fsutil, LogError};
use std::path::Path;

/// Name of the file that records the low-water mark.
const START_OFFSET_FILE: &str = "start-offset";
const START_OFFSET_MAGIC: [u8; 8] = *b"SPOOLSTO";

/// The recorded start offset, `None` if there is no file yet, or why the file
/// could not be used (the caller resets the start offset and reports it).
pub(crate) fn read(dir: &Path) -> Result<Option<i64>, String> {
    let path = dir.join(START_OFFSET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => file_header::decode(START_OFFSET_MAGIC, &bytes)
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Records `offset` durably before it returns.
pub(crate) fn write(dir: &Path, offset: i64) -> Result<(), LogError> {
    fsutil::write_atomic(
        &dir.join(START_OFFSET_FILE),
        &file_header::encode(START_OFFSET_MAGIC, offset),
    )
}
