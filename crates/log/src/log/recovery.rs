//! [`Log::open`]: opening a log directory and repairing what a crash left.
//!
//! Only the last segment can need repair (every sealed segment was
//! fdatasync'd before its successor was created); leftovers of interrupted
//! file operations are removed. Everything kept is durable on return.

use super::{Inner, Log};
use crate::config::LogConfig;
use crate::entry_index;
use crate::file_cache::{next_log_id, SealedFileCache};
use crate::file_header::{self, FILE_HEADER_BYTES};
use crate::segment::{self, Files, Opening, Segment};
use crate::start_entry::{self, FIRST_ENTRY_INDEX};
use crate::{fsutil, mode_marker, start_offset, LogError};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// What opening a log found and repaired, for the operator's log.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    /// (file, position, bytes dropped, reason) for each cut tail.
    pub truncated: Vec<(PathBuf, u64, u64, String)>,
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Files removed because they were leftovers (temporary files, orphan
    /// indexes, a new segment whose header never reached the disk).
    pub removed: Vec<PathBuf>,
    /// Set when the low-water-mark file was unreadable and was reset.
    pub start_offset_reset: Option<String>,
    /// Entry mode: set when the `start-entry` file was unreadable (the
    /// first segment's own entry index header, when intact, still rules).
    pub start_entry_reset: Option<String>,
}

impl RecoveryReport {
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.removed.is_empty()
            && self.start_offset_reset.is_none()
            && self.start_entry_reset.is_none()
    }
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} segment(s)", self.segments)?;
        for (path, pos, dropped, why) in &self.truncated {
            write!(
                f,
                "; cut {dropped} byte(s) at {} byte {pos}: {why}",
                path.display()
            )?;
        }
        for p in &self.rebuilt_indexes {
            write!(f, "; rebuilt indexes of {}", p.display())?;
        }
        for p in &self.removed {
            write!(f, "; removed {}", p.display())?;
        }
        if let Some(why) = &self.start_offset_reset {
            write!(f, "; reset start offset: {why}")?;
        }
        if let Some(why) = &self.start_entry_reset {
            write!(f, "; reset start entry: {why}")?;
        }
        Ok(())
    }
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and recovers it. Its
    /// sealed segments' files are opened through the process's
    /// [`SealedFileCache::global`].
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Log, RecoveryReport), LogError> {
        Self::open_with_cache(dir, config, SealedFileCache::global())
    }

    /// [`Log::open`] with sealed segments' files opened through `cache`.
    pub fn open_with_cache(
        dir: &Path,
        config: LogConfig,
        cache: Arc<SealedFileCache>,
    ) -> Result<(Log, RecoveryReport), LogError> {
        config.validate()?;
        let files = Files {
            cache,
            log_id: next_log_id(),
        };
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        if created {
            // The new directory's own entry must survive a power loss too.
            if let Some(parent) = dir.parent() {
                fsutil::sync_dir(parent)?;
            }
        }
        let entry_mode = config.entry_mode;
        let mut report = RecoveryReport::default();
        let (mut bases, others) = list_dir(dir)?;
        mode_marker::check(dir, entry_mode, !bases.is_empty())?;
        remove_leftovers(dir, &bases, others, entry_mode, &mut report)?;
        let recreate_at = remove_headerless_tail(dir, &mut bases, entry_mode, &mut report)?;
        // Entry mode: the recorded first entry index (`None`: no usable file).
        let recorded_entry = entry_mode.then(|| start_entry_or_reset(dir, &mut report));
        let start_entry = recorded_entry.map(|r| r.unwrap_or(FIRST_ENTRY_INDEX));
        let mut segments = open_segments(dir, &bases, &config, start_entry, &files, &mut report)?;
        let recorded_start = start_offset::read(dir);
        if segments.is_empty() {
            // In entry mode a log that lost every segment (a reset cut short
            // after its start files were written) starts where they say.
            let (base, first_index) = match start_entry {
                Some(first_index) => (recorded_start.clone().ok().flatten(), Some(first_index)),
                None => (None, None),
            };
            let base = base.or(recreate_at).unwrap_or(0);
            segments.push(Segment::create(dir, base, first_index, &files)?);
        } else {
            // What recovery kept counts as durable from here on, so make it
            // so: after a process crash it may still be only in the page cache.
            let active = &segments[segments.len() - 1];
            active
                .reader()?
                .sync_data()
                .map_err(|e| LogError::io(&active.path, e))?;
        }
        if !report.removed.is_empty() || segments.len() == 1 {
            fsutil::sync_dir(dir)?;
        }
        report.segments = segments.len();
        let first_base = segments[0].base_offset;
        let next_offset = segments[segments.len() - 1].next_offset;
        let synced_position = segments[segments.len() - 1].size;
        let start_offset = match recorded_start {
            Ok(Some(s)) => s.clamp(first_base, next_offset),
            Ok(None) => first_base,
            Err(why) => {
                report.start_offset_reset = Some(why);
                first_base
            }
        };
        let mut inner = Inner {
            config,
            files,
            segments,
            start_offset,
            start_position: FILE_HEADER_BYTES as u64,
            // Everything that survived recovery is on disk now or was before.
            durable_offset: next_offset,
            synced_position,
            syncing: false,
            last_sync_ms: 0,
            failed: None,
            entries: None,
        };
        inner.locate_start()?;
        if let Some(recorded) = recorded_entry {
            inner.open_entries(dir, recorded)?;
        }
        Ok((
            Log {
                dir: dir.to_owned(),
                inner: Mutex::new(inner),
                synced: Condvar::new(),
                #[cfg(test)]
                hooks: super::tests::Hooks::default(),
            },
            report,
        ))
    }
}

/// The base offsets of the segment files in `dir`, sorted, and every
/// other name.
fn list_dir(dir: &Path) -> Result<(Vec<i64>, Vec<String>), LogError> {
    let mut bases = Vec::new();
    let mut others = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = segment::parse_segment_name(&name) {
            bases.push(base);
        } else {
            others.push(name);
        }
    }
    bases.sort_unstable();
    Ok((bases, others))
}

/// Removes leftovers: temporary files and indexes whose segment is gone.
fn remove_leftovers(
    dir: &Path,
    bases: &[i64],
    others: Vec<String>,
    entry_mode: bool,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    let index_kinds: &[&str] = if entry_mode {
        &["index", "timeindex", "entryindex"]
    } else {
        &["index", "timeindex"]
    };
    for name in others {
        let path = dir.join(&name);
        let orphan_index = index_kinds.iter().any(|ext| {
            name.strip_suffix(&format!(".{ext}"))
                .and_then(|stem| segment::parse_segment_name(&format!("{stem}.log")))
                .is_some_and(|b| !bases.contains(&b))
        });
        if name.ends_with(".tmp") || orphan_index {
            fsutil::remove_if_exists(&path)?;
            report.removed.push(path);
        }
    }
    Ok(())
}

/// A crash while creating a segment can leave a last file holding no valid
/// header and no data: it never held data, so it is removed (and, if it was
/// the only one, made again at the same base offset, which is returned).
fn remove_headerless_tail(
    dir: &Path,
    bases: &mut Vec<i64>,
    entry_mode: bool,
    report: &mut RecoveryReport,
) -> Result<Option<i64>, LogError> {
    let mut recreate_at = None;
    while let Some(&last) = bases.last() {
        let path = segment::segment_path(dir, last);
        let len = std::fs::metadata(&path)
            .map_err(|e| LogError::io(&path, e))?
            .len();
        if len > FILE_HEADER_BYTES as u64 {
            break;
        }
        let mut header = vec![0u8; len as usize];
        File::open(&path)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .map_err(|e| LogError::io(&path, e))?;
        if file_header::decode(file_header::SEGMENT_MAGIC, &header).is_ok() {
            break;
        }
        segment::remove_segment_files(dir, last, entry_mode)?;
        report.removed.push(path);
        if bases.len() == 1 {
            recreate_at = Some(last);
        }
        bases.pop();
    }
    Ok(recreate_at)
}

/// Opens every segment, oldest first: the last one as the active segment.
/// In entry mode (`start_entry`: the recorded first entry index) each
/// segment's first entry index is its predecessor's next one; the first
/// segment's is what its own `.entryindex` header records, or else
/// `start_entry`.
fn open_segments(
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    start_entry: Option<u64>,
    files: &Files,
    report: &mut RecoveryReport,
) -> Result<Vec<Segment>, LogError> {
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        let active = i + 1 == bases.len();
        let first_index = start_entry.map(|recorded| match segments.last() {
            Some(prev) => prev.entries.as_ref().map_or(recorded, |e| e.next_index()),
            None => entry_index::recorded_first_index(dir, base).unwrap_or(recorded),
        });
        let how = Opening {
            active,
            index_interval: config.index_interval_bytes,
            strict: config.strict_recovery,
            first_index,
        };
        let (seg, repair) = Segment::open(dir, base, how, files)?;
        if repair.rebuilt_index && !active {
            report.rebuilt_indexes.push(seg.path.clone());
        }
        if let Some((pos, dropped, why)) = repair.truncated {
            report.truncated.push((seg.path.clone(), pos, dropped, why));
        }
        if let Some(prev) = segments.last() {
            if prev.next_offset > seg.base_offset {
                return Err(LogError::corrupt(
                    &seg.path,
                    0,
                    format!(
                        "segment starts at offset {} but its predecessor ends at {}",
                        seg.base_offset, prev.next_offset
                    ),
                ));
            }
        }
        segments.push(seg);
    }
    Ok(segments)
}

/// The recorded first entry index, `None` without a usable file (an
/// unreadable one is reported; `open_entries` writes it again).
fn start_entry_or_reset(dir: &Path, report: &mut RecoveryReport) -> Option<u64> {
    match start_entry::read(dir) {
        Ok(recorded) => recorded,
        Err(why) => {
            report.start_entry_reset = Some(why);
            None
        }
    }
}
