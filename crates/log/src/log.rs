//! [`Log`]: one partition's ordered sequence of segments, with group commit.

use crate::config::{Durability, LogConfig};
use crate::file_header::{self, FILE_HEADER_BYTES};
use crate::scan::{self, Scanner, Step};
use crate::segment::{self, Segment};
use crate::{fsutil, LogError};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Name of the file that records the low-water mark.
const START_OFFSET_FILE: &str = "start-offset";
const START_OFFSET_MAGIC: [u8; 8] = *b"SPOOLSTO";
/// Group commit: most times a leader yields, before its fdatasync, while
/// other appenders are still writing.
const GATHER_YIELDS_MAX: usize = 8;

/// Offsets assigned to one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
}

impl Appended {
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// Whole stored batches returned by a read, ready to send as they are.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// Zero or more complete, CRC-checked batches, concatenated. The first may
    /// begin before the requested offset: readers skip records below it.
    pub bytes: Bytes,
    /// The offset after the last returned batch (the next one to ask for).
    pub next_offset: i64,
    /// Offsets below this are readable (the high watermark).
    pub end_offset: i64,
    pub start_offset: i64,
}

/// A snapshot of a log's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub start_offset: i64,
    /// The offset the next append receives.
    pub next_offset: i64,
    /// Offsets below this are fdatasync'd.
    pub durable_offset: i64,
    /// Offsets below this are visible to readers.
    pub end_offset: i64,
    pub size_bytes: u64,
    /// Bytes of the batches from the one holding the start offset to the end:
    /// the size of what is still retained, without file headers.
    pub retained_bytes: u64,
    pub segments: usize,
}

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
}

impl RecoveryReport {
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.removed.is_empty()
            && self.start_offset_reset.is_none()
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
        Ok(())
    }
}

struct Inner {
    config: LogConfig,
    /// Ordered by base offset; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    start_offset: i64,
    /// Position in the first segment of the batch that holds `start_offset`.
    start_position: u64,
    /// Every offset below this is fdatasync'd.
    durable_offset: i64,
    /// A group-commit leader is inside fdatasync.
    syncing: bool,
    last_sync_ms: i64,
    /// Set after a write or sync failure that leaves the file state unknown.
    failed: Option<String>,
}

impl Inner {
    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }
    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
    fn next_offset(&self) -> i64 {
        self.active().next_offset
    }
    fn end_offset(&self) -> i64 {
        match self.config.durability {
            // Readers never see what a power loss could take back.
            Durability::Always => self.durable_offset,
            _ => self.next_offset(),
        }
    }
    fn check_failed(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(why) => Err(LogError::Failed(why.clone())),
            None => Ok(()),
        }
    }
    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    fn retained_bytes(&self) -> u64 {
        let headers = (self.segments.len() * FILE_HEADER_BYTES) as u64;
        let skipped = self.start_position.saturating_sub(FILE_HEADER_BYTES as u64);
        self.size_bytes().saturating_sub(headers + skipped)
    }
    /// Recomputes `start_position` after the start offset or first segment changed.
    fn locate_start(&mut self) -> Result<(), LogError> {
        let seg = &self.segments[0];
        let start = self.start_offset;
        let from = seg.scan_anchor(start);
        let found = locate(&seg.file, &seg.path, from, seg.base_offset, seg.size, |h| {
            h.last_offset() >= start
        })?;
        self.start_position = found.map_or(seg.size, |(position, _)| position);
        Ok(())
    }
}

/// An append-only, segmented, durable log of record batches: one partition.
///
/// All methods take `&self`; share a `Log` between threads with `Arc`.
/// Appends are serialised by an internal lock; reads copy what they need
/// under the lock and then read the file without it.
pub struct Log {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Signalled when a group commit finishes.
    synced: Condvar,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish()
    }
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and recovers it.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Log, RecoveryReport), LogError> {
        config.validate()?;
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        if created {
            // The new directory's own entry must survive a power loss too.
            if let Some(parent) = dir.parent() {
                fsutil::sync_dir(parent)?;
            }
        }
        let mut report = RecoveryReport::default();
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
        // Leftovers: temporary files and indexes whose segment is gone.
        for name in others {
            let path = dir.join(&name);
            let orphan_index = ["index", "timeindex"].iter().any(|ext| {
                name.strip_suffix(&format!(".{ext}"))
                    .and_then(|stem| segment::parse_segment_name(&format!("{stem}.log")))
                    .is_some_and(|b| !bases.contains(&b))
            });
            if name.ends_with(".tmp") || orphan_index {
                fsutil::remove_if_exists(&path)?;
                report.removed.push(path);
            }
        }
        // A crash while creating a segment can leave a last file holding no
        // valid header and no data: it never held data, so it is removed
        // (and, if it was the only one, made again at the same base offset).
        let mut recreate_at = None;
        while !bases.is_empty() {
            let last = *bases.last().unwrap_or(&0);
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
            if file_header::decode(crate::file_header::SEGMENT_MAGIC, &header).is_ok() {
                break;
            }
            for p in [
                path.clone(),
                segment::offset_index_path(dir, last),
                segment::time_index_path(dir, last),
            ] {
                fsutil::remove_if_exists(&p)?;
            }
            report.removed.push(path);
            if bases.len() == 1 {
                recreate_at = Some(last);
            }
            bases.pop();
        }
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (seg, repair) = Segment::open(dir, base, active, config.index_interval_bytes)?;
            if repair.rebuilt_index && !active {
                report.rebuilt_indexes.push(seg.path.clone());
            }
            if let Some((pos, dropped, why)) = repair.truncated {
                report.truncated.push((seg.path.clone(), pos, dropped, why));
            }
            if let Some(prev) = segments.last() {
                let prev: &Segment = prev;
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
        if segments.is_empty() {
            segments.push(Segment::create(dir, recreate_at.unwrap_or(0))?);
        } else {
            // What recovery kept counts as durable from here on, so make it
            // so: after a process crash it may still be only in the page cache.
            let active = &segments[segments.len() - 1];
            active
                .file
                .sync_data()
                .map_err(|e| LogError::io(&active.path, e))?;
        }
        if !report.removed.is_empty() || segments.len() == 1 {
            fsutil::sync_dir(dir)?;
        }
        report.segments = segments.len();
        let first_base = segments[0].base_offset;
        let next_offset = segments[segments.len() - 1].next_offset;
        let start_offset = match read_start_offset(dir) {
            Ok(Some(s)) => s.clamp(first_base, next_offset),
            Ok(None) => first_base,
            Err(why) => {
                report.start_offset_reset = Some(why);
                first_base
            }
        };
        let mut inner = Inner {
            config,
            segments,
            start_offset,
            start_position: FILE_HEADER_BYTES as u64,
            // Everything that survived recovery is on disk now or was before.
            durable_offset: next_offset,
            syncing: false,
            last_sync_ms: 0,
            failed: None,
        };
        inner.locate_start()?;
        Ok((
            Log {
                dir: dir.to_owned(),
                inner: Mutex::new(inner),
                synced: Condvar::new(),
            },
            report,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the data on disk is
        // still recoverable, so carry on with the inner state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// Changes settings of an open log (durability, rolling, retention).
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        self.lock().config = config;
        Ok(())
    }

    pub fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            start_offset: inner.start_offset,
            next_offset: inner.next_offset(),
            durable_offset: inner.durable_offset,
            end_offset: inner.end_offset(),
            size_bytes: inner.size_bytes(),
            retained_bytes: inner.retained_bytes(),
            segments: inner.segments.len(),
        }
    }

    /// Appends one batch and returns once it is as durable as the log's
    /// [`Durability`] promises. The batch is validated completely first; its
    /// base-offset field is overwritten with the assigned offset.
    pub fn append(&self, batch: &mut [u8], now_ms: i64) -> Result<Appended, LogError> {
        let (appended, must_sync) = self.write(batch, now_ms)?;
        if must_sync {
            self.sync_to(appended.next_offset())?;
        }
        Ok(appended)
    }

    /// The first half of [`Log::append`]: validates and writes the batch to the
    /// OS. Returns whether the caller must call [`Log::sync_to`] before
    /// acknowledging, per the durability policy; callers that wait elsewhere
    /// (a sync thread, an async task) use this.
    pub fn write(&self, batch: &mut [u8], now_ms: i64) -> Result<(Appended, bool), LogError> {
        // CPU work outside the lock.
        let mut header = spool_batch::validate(batch)?;
        let mut inner = self.lock();
        inner.check_failed()?;
        self.maybe_roll(&mut inner, batch.len() as u64, now_ms)?;
        let base_offset = inner.next_offset();
        spool_batch::set_base_offset(batch, base_offset);
        header.base_offset = base_offset;
        let interval = inner.config.index_interval_bytes;
        if let Err(e) = inner.active_mut().append(batch, &header, interval, now_ms) {
            if !matches!(e, LogError::StorageFull { .. }) {
                inner.failed = Some(e.to_string());
            }
            return Err(e);
        }
        let appended = Appended {
            base_offset,
            last_offset: header.last_offset(),
        };
        let must_sync = match inner.config.durability {
            Durability::Always => true,
            Durability::Interval { interval_ms } => {
                now_ms - inner.last_sync_ms >= interval_ms as i64
            }
            Durability::Never => false,
        };
        if must_sync {
            inner.last_sync_ms = now_ms;
        }
        Ok((appended, must_sync))
    }

    /// Blocks until every offset below `next_offset` is fdatasync'd. Concurrent
    /// callers share one fdatasync: the first becomes the leader and syncs
    /// everything written so far; the others wait for its result.
    pub fn sync_to(&self, next_offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        loop {
            if inner.durable_offset >= next_offset {
                return Ok(());
            }
            inner.check_failed()?;
            if inner.syncing {
                inner = self.synced.wait(inner).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            inner.syncing = true;
            // Gather: while other appenders are still writing, yield to them
            // so that their batches join this fdatasync instead of waiting a
            // whole fdatasync for the next one (on a 2-core machine this takes
            // 64 appenders from ~30 to ~50 batches per fdatasync). Callers
            // arriving meanwhile wait like callers during the fdatasync, and
            // the target is taken afterwards. A lone appender yields once.
            let mut seen = inner.next_offset();
            drop(inner);
            for _ in 0..GATHER_YIELDS_MAX {
                std::thread::yield_now();
                let now = self.lock().next_offset();
                if now == seen {
                    break;
                }
                seen = now;
            }
            inner = self.lock();
            let target = inner.next_offset();
            let file = Arc::clone(&inner.active().file);
            let path = inner.active().path.clone();
            drop(inner);
            let result = file.sync_data();
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) => inner.durable_offset = inner.durable_offset.max(target),
                Err(e) => {
                    // After a failed fsync the kernel may have dropped dirty
                    // pages: nothing since the last good sync can be trusted.
                    let err = LogError::io(&path, e);
                    inner.failed = Some(err.to_string());
                    self.synced.notify_all();
                    return Err(err);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Syncs if the `interval` policy's deadline has passed with unsynced data.
    /// The owner of an `interval` log calls this periodically.
    pub fn sync_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let target = {
            let mut inner = self.lock();
            let Durability::Interval { interval_ms } = inner.config.durability else {
                return Ok(());
            };
            if inner.durable_offset >= inner.next_offset()
                || now_ms - inner.last_sync_ms < interval_ms as i64
            {
                return Ok(());
            }
            inner.last_sync_ms = now_ms;
            inner.next_offset()
        };
        self.sync_to(target)
    }

    /// Seals the active segment and starts a new one when it is full or old.
    fn maybe_roll(&self, inner: &mut Inner, incoming: u64, now_ms: i64) -> Result<(), LogError> {
        let active = inner.active();
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size + incoming > inner.config.segment_bytes;
        let too_old = match (inner.config.segment_ms, active.first_append_ms) {
            (Some(limit), Some(first)) => now_ms - first >= limit as i64,
            _ => false,
        };
        if !(too_big || too_old) {
            return Ok(());
        }
        let result = self.roll(inner);
        if let Err(e) = &result {
            if !matches!(e, LogError::StorageFull { .. }) {
                inner.failed = Some(e.to_string());
            }
        }
        result
    }

    fn roll(&self, inner: &mut Inner) -> Result<(), LogError> {
        // Invariant: a sealed segment is fully durable before its successor
        // exists, so recovery only ever has to repair the last segment.
        inner.active_mut().seal()?;
        let next = inner.next_offset();
        inner.durable_offset = inner.durable_offset.max(next);
        let fresh = match Segment::create(&self.dir, next) {
            Ok(s) => s,
            Err(e) => {
                // Leave no half-made segment behind (e.g. on a full disk).
                for p in [
                    segment::segment_path(&self.dir, next),
                    segment::offset_index_path(&self.dir, next),
                    segment::time_index_path(&self.dir, next),
                ] {
                    let _ = fsutil::remove_if_exists(&p);
                }
                return Err(e);
            }
        };
        fsutil::sync_dir(&self.dir)?;
        inner.segments.push(fresh);
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// about `max_bytes` (at least one batch is returned if any is readable,
    /// even if larger). Reads stop at the end of a segment.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        let (file, path, start_pos, base_offset, end_pos, end_offset, start_offset) = {
            let inner = self.lock();
            let end_offset = inner.end_offset();
            let start_offset = inner.start_offset;
            if offset < start_offset || offset > inner.next_offset() {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start: start_offset,
                    end: end_offset,
                });
            }
            if offset >= end_offset {
                return Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: offset,
                    end_offset,
                    start_offset,
                });
            }
            // The segment holding `offset`: the last one starting at or below it,
            // or the next non-empty one if `offset` falls in a gap.
            let idx = inner
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let Some(seg) = inner.segments[idx..]
                .iter()
                .find(|s| s.next_offset > offset)
            else {
                return Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: offset,
                    end_offset,
                    start_offset,
                });
            };
            (
                Arc::clone(&seg.file),
                seg.path.clone(),
                seg.scan_anchor(offset),
                seg.base_offset,
                seg.size,
                end_offset,
                start_offset,
            )
        };
        let first = locate(&file, &path, start_pos, base_offset, end_pos, |h| {
            h.last_offset() >= offset
        })?;
        let Some(first) = first else {
            return Ok(ReadBatches {
                bytes: Bytes::new(),
                next_offset: offset,
                end_offset,
                start_offset,
            });
        };
        let (bytes, next_offset) = read_range(&file, &path, first, end_pos, end_offset, max_bytes)?;
        let next_offset = if bytes.is_empty() {
            offset
        } else {
            next_offset
        };
        Ok(ReadBatches {
            bytes,
            next_offset,
            end_offset,
            start_offset,
        })
    }

    /// The offset of the first batch whose newest record is at or after
    /// `timestamp_ms`, or `None` if there is none yet.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<i64>, LogError> {
        let (file, path, start_pos, base_offset, end_pos, start_offset, end_offset) =
            {
                let inner = self.lock();
                let end_offset = inner.end_offset();
                let Some(seg) = inner.segments.iter().find(|s| {
                    s.max_timestamp >= timestamp_ms && s.next_offset > inner.start_offset
                }) else {
                    return Ok(None);
                };
                (
                    Arc::clone(&seg.file),
                    seg.path.clone(),
                    seg.time_scan_anchor(timestamp_ms),
                    seg.base_offset,
                    seg.size,
                    inner.start_offset,
                    end_offset,
                )
            };
        let mut found = None;
        locate(&file, &path, start_pos, base_offset, end_pos, |h| {
            if h.max_timestamp >= timestamp_ms && h.base_offset < end_offset {
                found = Some(h.base_offset.max(start_offset));
                true
            } else {
                false
            }
        })?;
        Ok(found)
    }

    /// Reads from the first batch at or after `timestamp_ms`.
    pub fn read_from_timestamp(
        &self,
        timestamp_ms: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, LogError> {
        match self.offset_for_timestamp(timestamp_ms)? {
            Some(offset) => self.read(offset, max_bytes),
            None => {
                let stats = self.stats();
                Ok(ReadBatches {
                    bytes: Bytes::new(),
                    next_offset: stats.end_offset,
                    end_offset: stats.end_offset,
                    start_offset: stats.start_offset,
                })
            }
        }
    }

    /// Raises the low-water mark: offsets below `offset` become unreadable and
    /// whole segments below it are deleted. Durable before it returns.
    pub fn advance_start_offset(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        let offset = offset.min(inner.next_offset());
        if offset <= inner.start_offset {
            return Ok(());
        }
        write_start_offset(&self.dir, offset)?;
        inner.start_offset = offset;
        self.delete_segments_below(&mut inner)?;
        inner.locate_start()
    }

    /// Deletes whole sealed segments past the size or age limit and returns
    /// how many went. The start offset moves up to the first kept segment.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = self.lock();
        let mut total = inner.size_bytes();
        let mut drop_count = 0;
        let sealed = inner.segments.len() - 1;
        for seg in &inner.segments[..sealed] {
            let over_size = inner
                .config
                .retention_bytes
                .is_some_and(|limit| total - seg.size >= limit);
            let too_old = inner
                .config
                .retention_ms
                .is_some_and(|limit| seg.max_timestamp < now_ms - limit as i64);
            if !(over_size || too_old) {
                break;
            }
            total -= seg.size;
            drop_count += 1;
        }
        if drop_count == 0 {
            return Ok(0);
        }
        let new_start = inner.segments[drop_count]
            .base_offset
            .max(inner.start_offset);
        if new_start > inner.start_offset {
            write_start_offset(&self.dir, new_start)?;
            inner.start_offset = new_start;
        }
        let before = inner.segments.len();
        self.delete_segments_below(&mut inner)?;
        inner.locate_start()?;
        Ok(before - inner.segments.len())
    }

    fn delete_segments_below(&self, inner: &mut Inner) -> Result<(), LogError> {
        let start = inner.start_offset;
        let last = inner.segments.len() - 1;
        let doomed = inner.segments[..last]
            .iter()
            .take_while(|s| s.next_offset <= start)
            .count();
        if doomed == 0 {
            return Ok(());
        }
        for seg in inner.segments.drain(..doomed) {
            seg.delete_files(&self.dir)?;
        }
        fsutil::sync_dir(&self.dir)
    }

    /// Drops every batch at or after `offset`, which must be a batch boundary
    /// (or the end of the log). Used when replication must discard a suffix.
    pub fn truncate_suffix(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner.check_failed()?;
        let next = inner.next_offset();
        if offset >= next {
            return Ok(());
        }
        if offset < inner.start_offset {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: inner.start_offset,
                end: next,
            });
        }
        let idx = inner
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        // Find the batch boundary inside segment idx.
        let (file, path, start_pos, end_pos) = {
            let seg = &inner.segments[idx];
            (
                Arc::clone(&seg.file),
                seg.path.clone(),
                seg.scan_start(offset),
                seg.size,
            )
        };
        let mut boundary = None;
        let mut scanner = Scanner::new(&file, &path, start_pos, end_pos, false);
        loop {
            match scanner.next_step()? {
                Step::End => break,
                Step::Bad { position, reason } => {
                    return Err(LogError::corrupt(&path, position, reason))
                }
                Step::Batch { position, header } => {
                    if header.base_offset == offset {
                        boundary = Some(position);
                        break;
                    }
                    if header.last_offset() >= offset {
                        return Err(LogError::NotBatchBoundary { offset });
                    }
                }
            }
        }
        let position = match boundary {
            Some(p) => p,
            // `offset` is the end of segment idx (a gap follows): keep it whole.
            None if inner.segments[idx].next_offset == offset => inner.segments[idx].size,
            None => return Err(LogError::NotBatchBoundary { offset }),
        };
        for seg in inner.segments.drain(idx + 1..) {
            seg.delete_files(&self.dir)?;
        }
        inner.segments[idx].truncate_to(position, offset)?;
        fsutil::sync_dir(&self.dir)?;
        inner.durable_offset = inner.durable_offset.min(offset);
        Ok(())
    }

    /// Makes everything written so far durable and seals nothing; used at shutdown.
    pub fn flush(&self) -> Result<(), LogError> {
        let next = self.lock().next_offset();
        self.sync_to(next)
    }
}

/// Walks batch headers from `anchor` (a file position and the base offset of
/// the batch there, from [`Segment::scan_anchor`]) and returns the position
/// and base offset of the first batch for which `wanted` holds. Base offsets
/// lie outside the batch CRC, so each one must continue its predecessor's
/// offsets: a batch that does not is corrupt. Indexes are only hints: if the
/// batch at the anchor does not match it, the walk restarts from the
/// segment's first batch (whose offset the CRC-checked file header vouches for).
fn locate(
    file: &File,
    path: &Path,
    anchor: (u64, i64),
    base_offset: i64,
    end: u64,
    mut wanted: impl FnMut(&spool_batch::BatchHeader) -> bool,
) -> Result<Option<(u64, i64)>, LogError> {
    let origin = (FILE_HEADER_BYTES as u64, base_offset);
    match walk(file, path, anchor, end, &mut wanted) {
        Err((true, _)) if anchor != origin => {
            walk(file, path, origin, end, &mut wanted).map_err(|(_, e)| e)
        }
        other => other.map_err(|(_, e)| e),
    }
}

/// [`locate`] from one starting point. An error says whether it concerns the
/// starting batch itself.
fn walk(
    file: &File,
    path: &Path,
    start: (u64, i64),
    end: u64,
    wanted: &mut impl FnMut(&spool_batch::BatchHeader) -> bool,
) -> Result<Option<(u64, i64)>, (bool, LogError)> {
    let (start, mut expected) = start;
    if start > end {
        let reason = format!("scan start {start} lies past the end of the segment ({end})");
        return Err((true, LogError::corrupt(path, start, reason)));
    }
    let mut scanner = Scanner::new(file, path, start, end, false);
    loop {
        match scanner.next_step().map_err(|e| (false, e))? {
            Step::End => return Ok(None),
            Step::Bad { position, reason } => {
                return Err((position == start, LogError::corrupt(path, position, reason)))
            }
            Step::Batch { position, header } => {
                check_continuity(path, position, &header, expected)
                    .map_err(|e| (position == start, e))?;
                if wanted(&header) {
                    return Ok(Some((position, expected)));
                }
                expected = header.next_offset();
            }
        }
    }
}

fn check_continuity(
    path: &Path,
    position: u64,
    header: &spool_batch::BatchHeader,
    expected: i64,
) -> Result<(), LogError> {
    if header.base_offset == expected {
        return Ok(());
    }
    Err(LogError::corrupt(
        path,
        position,
        format!(
            "batch base offset {} where {expected} was expected",
            header.base_offset
        ),
    ))
}

/// Reads whole batches from `first` (the position and base offset of the
/// first batch) into one buffer with a single pread, verifying each batch's
/// CRC and offset continuity, stopping at `max_bytes` (after at least one
/// batch), at `end`, or at the first batch at or beyond `end_offset`.
fn read_range(
    file: &File,
    path: &Path,
    first: (u64, i64),
    end: u64,
    end_offset: i64,
    max_bytes: usize,
) -> Result<(Bytes, i64), LogError> {
    let (first, first_base) = first;
    let want = (max_bytes as u64)
        .min(end - first)
        .max(spool_types::limits::BATCH_HEADER_BYTES as u64)
        .min(end - first);
    let mut buf = vec![0u8; want as usize];
    file.read_exact_at(&mut buf, first)
        .map_err(|e| LogError::io(path, e))?;
    let mut kept = 0usize;
    let mut next_offset = first_base;
    loop {
        let rest = &buf[kept..];
        if rest.len() < spool_types::limits::BATCH_HEADER_BYTES {
            if kept == 0 {
                return Err(LogError::corrupt(
                    path,
                    first,
                    "segment ends inside a batch header",
                ));
            }
            break;
        }
        let header = spool_batch::BatchHeader::parse(rest)
            .map_err(|e| LogError::corrupt(path, first + kept as u64, e.to_string()))?;
        check_continuity(path, first + kept as u64, &header, next_offset)?;
        if header.base_offset >= end_offset {
            break;
        }
        let total = header.total_len();
        if total > rest.len() {
            if kept > 0 {
                break;
            }
            // The first batch is bigger than max_bytes: read all of it.
            if first + total as u64 > end {
                return Err(LogError::corrupt(
                    path,
                    first,
                    "batch runs past the end of the segment",
                ));
            }
            buf.resize(total, 0);
            file.read_exact_at(&mut buf, first)
                .map_err(|e| LogError::io(path, e))?;
            continue;
        }
        scan::verify_served(path, first + kept as u64, &rest[..total])?;
        kept += total;
        next_offset = header.next_offset();
    }
    buf.truncate(kept);
    Ok((Bytes::from(buf), next_offset))
}

fn read_start_offset(dir: &Path) -> Result<Option<i64>, String> {
    let path = dir.join(START_OFFSET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => file_header::decode(START_OFFSET_MAGIC, &bytes)
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_start_offset(dir: &Path, offset: i64) -> Result<(), LogError> {
    fsutil::write_atomic(
        &dir.join(START_OFFSET_FILE),
        &file_header::encode(START_OFFSET_MAGIC, offset),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_batch::{BatchBuilder, NewRecord};

    /// Group commit with segment rolls (which make everything written durable
    /// without a group sync) interleaved: every appender returns, and only
    /// once its batch is durable.
    #[test]
    fn group_commit_with_rolls_strands_no_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(dir.path(), config).unwrap();
        std::thread::scope(|s| {
            for t in 0..32 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..40 {
                        let mut b = BatchBuilder::new();
                        b.push(&NewRecord::value(format!("{t}.{i}"), 0)).unwrap();
                        let mut batch = b.finish().unwrap();
                        let appended = log.append(&mut batch, 0).unwrap();
                        assert!(log.stats().durable_offset >= appended.next_offset());
                    }
                });
            }
        });
        let stats = log.stats();
        assert_eq!((stats.next_offset, stats.durable_offset), (1280, 1280));
        assert!(stats.segments > 10);
    }
}
