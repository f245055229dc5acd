//! The `entry-mode` marker: a log directory written in entry mode holds this
//! file (one common file header, magic `SPOOLEMD`, value 0), created durably
//! before its first segment, so the directory is never opened in the wrong
//! mode: a plain open would misread its control batches as corruption, and
//! an entry-mode open of a plain log would number entries the log never
//! had.

use crate::{file_header, fsutil, LogError};
use std::path::Path;

const MARKER_FILE: &str = "entry-mode";
const MARKER_MAGIC: [u8; 8] = *b"SPOOLEMD";

/// Checks that `dir` may be opened in the requested mode, marking it if it
/// is opened in entry mode for the first time. `has_segments`: whether the
/// directory holds any segment file.
pub(crate) fn check(dir: &Path, entry_mode: bool, has_segments: bool) -> Result<(), LogError> {
    let path = dir.join(MARKER_FILE);
    let marked = path.try_exists().map_err(|e| LogError::io(&path, e))?;
    match (entry_mode, marked) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(LogError::WrongMode(format!(
            "{} is a log in entry mode (a replicated partition's Raft log; it has an \
             `entry-mode` file): open it with LogConfig::entry_mode = true",
            dir.display()
        ))),
        (true, false) if has_segments => Err(LogError::WrongMode(format!(
            "{} holds a plain (single-node) log: entry mode needs an empty directory; \
             open it with LogConfig::entry_mode = false, or move its segments away",
            dir.display()
        ))),
        // Durable (file fdatasync'd, directory fsync'd) before any segment
        // exists, so a crash cannot leave entry-mode segments unmarked.
        (true, false) => fsutil::write_atomic(&path, &file_header::encode(MARKER_MAGIC, 0)),
    }
}
