//! [`Log`]: one partition's ordered sequence of segments, with group commit.

use crate::config::{Durability, LogConfig};
use crate::file_header::{self, FILE_HEADER_BYTES};
use crate::read_buffers;
use crate::scan::{self, Scanner, Step};
use crate::segment::{self, Segment};
use crate::{fsutil, LogError};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;

/// Name of the file that records the low-water mark.
const START_OFFSET_FILE: &str = "start-offset";
const START_OFFSET_MAGIC: [u8; 8] = *b"SPOOLSTO";
/// Group commit: most times a leader yields, before it takes its group,
/// while other appenders are still joining it.
const GATHER_YIELDS_MAX: usize = 8;
/// [`Log::sync_to`] gathers only while fewer bytes than this await the
/// fdatasync: a sync that already carries this much is not worth delaying.
/// Gathering serves many small appenders (64 producers of 100 B: 75 K msgs/s
/// with it, 66 K without); a pipelined producer of 1 MiB batches it only
/// held up, leaving the device idle (1 KiB publish: 803 K msgs/s with it,
/// 852 K without; BENCHMARKS.md, seventh session).
const GATHER_ENOUGH_BYTES: u64 = 256 * 1024;

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
    /// Size of the active segment the last fdatasync covered (kept with
    /// `durable_offset` by `synced_through`): with the segment's size now,
    /// the bytes a sync would carry.
    synced_position: u64,
    /// A [`Log::sync_to`] leader is inside fdatasync.
    syncing: bool,
    last_sync_ms: i64,
    /// Set after a write or sync failure that leaves the file state unknown.
    failed: Option<String>,
    /// `append` under `always`: batches waiting for, or inside, a group write.
    commit: Commit,
}

/// Group commit of `append` under `always`. Appenders copy their batch into
/// `pending` (offsets are assigned there) and sleep; one leader at a time
/// takes the whole pending group, writes it with one `pwrite`, fdatasyncs
/// once, accounts the batches in the segment and wakes the group's appenders
/// (each thread individually, spread over the woken threads: no thundering
/// herd on the log's lock). If more appenders queued meanwhile, it hands the
/// lead to the first of them.
///
/// While a leader works, the active segment's file end belongs to it:
/// anything else that writes or cuts the active segment (a direct write, a
/// roll, a suffix truncation, flush) first waits for it and writes the
/// pending group itself ([`Log::drain`]).
#[derive(Default)]
struct Commit {
    pending: Group,
    /// Bytes and end offset of the group a leader has taken and is writing.
    in_flight: Option<(u64, i64)>,
    /// A thread holds the lead: it is writing a group, or it has been handed
    /// the lead and will take the pending group next.
    leading: bool,
    /// Threads waiting on [`Log::synced`] for `leading` (or `syncing`) to clear.
    drainers: usize,
    /// The buffer of the last written group, kept so the next one reuses it.
    spare: Vec<u8>,
}

impl Commit {
    fn is_idle(&self) -> bool {
        !self.leading && self.in_flight.is_none() && self.pending.batches.is_empty()
    }
    /// Bytes assigned to the active segment but not yet accounted in it.
    fn queued_bytes(&self) -> u64 {
        self.pending.bytes.len() as u64 + self.in_flight.map_or(0, |(bytes, _)| bytes)
    }
}

/// Batches laid out back to back as they will be in the segment file.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    batches: Vec<Queued>,
}

struct Queued {
    header: spool_batch::BatchHeader,
    now_ms: i64,
    ticket: Arc<Ticket>,
}

impl Group {
    fn next_offset(&self) -> Option<i64> {
        self.batches.last().map(|q| q.header.next_offset())
    }

    /// Moves every batch `by` offsets down, in the bytes too (the base
    /// offset lies outside the batch CRC): a failed group before this one
    /// gave its offsets back.
    fn rebase(&mut self, by: i64) {
        let mut at = 0usize;
        for q in &mut self.batches {
            let len = q.header.total_len();
            q.header.base_offset -= by;
            spool_batch::set_base_offset(&mut self.bytes[at..at + len], q.header.base_offset);
            at += len;
        }
    }
}

/// A group taken by its leader.
struct Taken {
    group: Group,
    file: Arc<File>,
    path: PathBuf,
    position: u64,
}

/// One appender's place in a group commit: how its append ended, and the
/// thread to wake when it has.
struct Ticket {
    state: AtomicU8,
    /// Filled in before `state` becomes `TICKET_DONE`.
    done: Mutex<Done>,
    thread: Thread,
}

#[derive(Default)]
struct Done {
    outcome: Option<Result<Appended, LogError>>,
    /// Appenders of the same group this one wakes on its way out, so that
    /// waking a group is spread over the woken threads ([`plan_wakes`]).
    wakes: Vec<Arc<Ticket>>,
}

const TICKET_WAITING: u8 = 0;
/// The appender was handed the lead and must write the pending group.
const TICKET_LEAD: u8 = 1;
const TICKET_DONE: u8 = 2;

impl Ticket {
    fn new() -> Ticket {
        Ticket {
            state: AtomicU8::new(TICKET_WAITING),
            done: Mutex::new(Done::default()),
            thread: std::thread::current(),
        }
    }

    fn done(&self) -> MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome; [`publish`] later marks the ticket done.
    fn resolve(&self, outcome: Result<Appended, LogError>) {
        self.done().outcome = Some(outcome);
    }

    /// For a done ticket: wakes the appenders delegated to this one and
    /// returns the outcome.
    fn finish(&self) -> Result<Appended, LogError> {
        let Done { outcome, wakes } = std::mem::take(&mut *self.done());
        for ticket in wakes {
            ticket.wake();
        }
        outcome.unwrap_or_else(|| Err(LogError::Failed("group commit lost an outcome".into())))
    }

    /// Unparks the appender, unless it is the calling thread (a leader
    /// resolving its own batch).
    fn wake(&self) {
        if self.thread.id() != std::thread::current().id() {
            self.thread.unpark();
        }
    }
}

/// Marks resolved tickets done and returns those the caller must wake; each
/// of them wakes its share of the others. One unpark costs a few µs (a
/// futex call, often an inter-processor interrupt in this VM), so a leader
/// waking 50 appenders in turn would take longer than the next fdatasync.
fn publish(tickets: Vec<Arc<Ticket>>) -> Vec<Arc<Ticket>> {
    let direct = plan_wakes(tickets.clone());
    for ticket in &tickets {
        ticket.state.store(TICKET_DONE, Ordering::Release);
    }
    direct
}

/// A binomial wake-up tree: the caller wakes the first ticket of the back
/// half, which wakes the rest of that half in the same way, and the caller
/// goes on with the front half. Every delegation is recorded before any
/// ticket is marked done, so none is lost to a thread that sees its ticket
/// done without having slept.
fn plan_wakes(mut tickets: Vec<Arc<Ticket>>) -> Vec<Arc<Ticket>> {
    let mut direct = Vec::new();
    while !tickets.is_empty() {
        let mut back = tickets.split_off(tickets.len() / 2);
        let head = back.remove(0);
        head.done().wakes = plan_wakes(back);
        direct.push(head);
    }
    direct
}

/// A copy of `e` for another appender of the same failed group
/// (`LogError` holds an `io::Error`, which is not `Clone`).
pub(crate) fn replicate(e: &LogError) -> LogError {
    match e {
        LogError::StorageFull { path } => LogError::StorageFull { path: path.clone() },
        LogError::Io { path, source } => LogError::Io {
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        other => LogError::Failed(other.to_string()),
    }
}

impl Inner {
    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }
    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
    /// The offset the next batch receives: after any batches still queued
    /// for a group write.
    fn next_offset(&self) -> i64 {
        let written = self.written_offset();
        self.commit
            .pending
            .next_offset()
            .or(self.commit.in_flight.map(|(_, next)| next))
            .unwrap_or(written)
    }
    /// The offset after the last batch in the file (and accounted in the
    /// active segment). Readers never go past it.
    fn written_offset(&self) -> i64 {
        self.active().next_offset
    }
    fn end_offset(&self) -> i64 {
        match self.config.durability {
            // Readers never see what a power loss could take back.
            Durability::Always => self.durable_offset,
            _ => self.written_offset(),
        }
    }
    /// Whether a batch of `incoming` bytes must go to a new segment. Bytes
    /// queued for a group write count as part of the active segment.
    fn roll_due(&self, incoming: u64, now_ms: i64) -> bool {
        let active = self.active();
        let used = active.size + self.commit.queued_bytes();
        if used == FILE_HEADER_BYTES as u64 {
            return false;
        }
        let too_big = used + incoming > self.config.segment_bytes;
        let too_old = match (self.config.segment_ms, active.first_append_ms) {
            (Some(limit), Some(first)) => now_ms - first >= limit as i64,
            _ => false,
        };
        too_big || too_old
    }
    /// Takes the pending group for writing at the end of the active segment.
    fn take_pending(&mut self) -> Taken {
        let spare = std::mem::take(&mut self.commit.spare);
        let group = std::mem::replace(
            &mut self.commit.pending,
            Group {
                bytes: spare,
                batches: Vec::new(),
            },
        );
        let next = group.next_offset().unwrap_or_else(|| self.written_offset());
        self.commit.in_flight = Some((group.bytes.len() as u64, next));
        let active = self.active();
        Taken {
            group,
            file: Arc::clone(&active.file),
            path: active.path.clone(),
            position: active.size,
        }
    }
    /// An fdatasync of the active segment up to `position` (its size then)
    /// covered every offset below `offset`.
    fn synced_through(&mut self, offset: i64, position: u64) {
        self.durable_offset = self.durable_offset.max(offset);
        self.synced_position = position;
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
    /// Signalled when a [`Log::sync_to`] fdatasync finishes, and when a
    /// group-commit leader gives up the lead while someone drains.
    synced: Condvar,
    #[cfg(test)]
    hooks: tests::Hooks,
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
            let (seg, repair) = Segment::open(
                dir,
                base,
                active,
                config.index_interval_bytes,
                config.strict_recovery,
            )?;
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
        let synced_position = segments[segments.len() - 1].size;
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
            synced_position,
            syncing: false,
            last_sync_ms: 0,
            failed: None,
            commit: Commit::default(),
        };
        inner.locate_start()?;
        Ok((
            Log {
                dir: dir.to_owned(),
                inner: Mutex::new(inner),
                synced: Condvar::new(),
                #[cfg(test)]
                hooks: tests::Hooks::default(),
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
    ///
    /// Under `always`, concurrent appends share one `pwrite` and one
    /// fdatasync (group commit). If that write fails, every append in the
    /// group gets the error and none of their offsets is used.
    pub fn append(&self, batch: &mut [u8], now_ms: i64) -> Result<Appended, LogError> {
        // CPU work outside the lock.
        let header = spool_batch::validate(batch)?;
        let inner = self.lock();
        if inner.config.durability == Durability::Always {
            return self.append_grouped(inner, batch, header, now_ms);
        }
        let (appended, must_sync) = self.write_locked(inner, batch, header, now_ms)?;
        spool_batch::set_base_offset(batch, appended.base_offset);
        if must_sync {
            self.sync_to(appended.next_offset())?;
        }
        Ok(appended)
    }

    /// The first half of [`Log::append`]: validates and writes the batch to the
    /// OS. Returns whether the caller must call [`Log::sync_to`] before
    /// acknowledging, per the durability policy; callers that wait elsewhere
    /// (a sync thread, an async task) use this.
    /// The batch is not changed: its base offset is set in what is written.
    pub fn write(&self, batch: &[u8], now_ms: i64) -> Result<(Appended, bool), LogError> {
        // CPU work outside the lock.
        let header = spool_batch::validate(batch)?;
        self.write_locked(self.lock(), batch, header, now_ms)
    }

    /// [`Log::write`] for a batch its caller has just checked with
    /// [`spool_batch::validate`] (or `validate_each`), or built with a
    /// `BatchBuilder`, and not changed since; `header` is what that
    /// validation returned (or `BatchHeader::parse` of the built batch).
    /// The broker validates a produced batch once, as it reads the message
    /// IDs, instead of twice (the
    /// second walk over every record cost a few percent of a 1 KiB
    /// publish, BENCHMARKS.md, sixth session). Debug builds re-check.
    pub fn write_validated(
        &self,
        batch: &[u8],
        header: spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<(Appended, bool), LogError> {
        debug_assert_eq!(spool_batch::validate(batch).ok(), Some(header));
        self.write_locked(self.lock(), batch, header, now_ms)
    }

    /// Writes one validated batch at the end of the active segment, now.
    fn write_locked<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        batch: &[u8],
        mut header: spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<(Appended, bool), LogError> {
        inner.check_failed()?;
        if !inner.commit.is_idle() {
            // Only after a switch away from `always`, or when `write` and
            // `append` are mixed: the queued batches come first in the file.
            // Their appenders were told how their group ended.
            inner = self.drain(inner, false).0;
            inner.check_failed()?;
        }
        self.maybe_roll(&mut inner, batch.len() as u64, now_ms)?;
        let base_offset = inner.next_offset();
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

    /// [`Log::append`] under `always`: queue the batch for the next group
    /// write, lead that write if nobody does, else sleep until it is done.
    fn append_grouped<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        batch: &mut [u8],
        mut header: spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<Appended, LogError> {
        inner.check_failed()?;
        if inner.roll_due(batch.len() as u64, now_ms) {
            // A roll seals the active segment, so the queued batches must be
            // in it first. How their group ended was told to its appenders;
            // this batch was not in it.
            inner = self.drain(inner, false).0;
            inner.check_failed()?;
            self.maybe_roll(&mut inner, batch.len() as u64, now_ms)?;
        }
        header.base_offset = inner.next_offset();
        spool_batch::set_base_offset(batch, header.base_offset);
        let ticket = Arc::new(Ticket::new());
        let pending = &mut inner.commit.pending;
        pending.bytes.extend_from_slice(batch);
        pending.batches.push(Queued {
            header,
            now_ms,
            ticket: Arc::clone(&ticket),
        });
        if inner.commit.leading || inner.commit.drainers > 0 {
            // The leader, or a drainer about to run, writes this batch.
            drop(inner);
        } else {
            inner.commit.leading = true;
            self.lead(inner);
        }
        let appended = self.await_ticket(&ticket)?;
        // A failed group ahead of this one may have moved it to lower offsets.
        spool_batch::set_base_offset(batch, appended.base_offset);
        Ok(appended)
    }

    /// Sleeps until the appender's group is written and synced, taking the
    /// lead if it is handed over.
    fn await_ticket(&self, ticket: &Ticket) -> Result<Appended, LogError> {
        loop {
            match ticket.state.load(Ordering::Acquire) {
                TICKET_DONE => return ticket.finish(),
                TICKET_LEAD => {
                    ticket.state.store(TICKET_WAITING, Ordering::Relaxed);
                    self.lead(self.lock());
                }
                // Spurious wake-ups are fine: the state is checked again.
                _ => std::thread::park(),
            }
        }
    }

    /// One group commit by the thread holding the lead: gather, take the
    /// pending group, write and sync it without the lock, account for it,
    /// hand the lead on, and wake the group.
    fn lead(&self, inner: MutexGuard<'_, Inner>) {
        let mut inner = self.gather(inner);
        let taken = inner.take_pending();
        drop(inner);
        let result = self.write_taken(&taken);
        #[cfg(test)]
        self.hooks.before_publish();
        let mut inner = self.lock();
        let done = self.finish_group(&mut inner, taken, result);
        // Someone waiting to drain goes first, so that a steady stream of
        // appends cannot starve a roll, a truncation or a flush: it writes
        // the pending group itself.
        let next_leader = match inner.commit.drainers {
            0 => inner.commit.pending.batches.first().map(|q| {
                q.ticket.state.store(TICKET_LEAD, Ordering::Release);
                Arc::clone(&q.ticket)
            }),
            _ => None,
        };
        if next_leader.is_none() {
            inner.commit.leading = false;
            if inner.commit.drainers > 0 {
                self.synced.notify_all();
            }
        }
        drop(inner);
        // The next leader first, so its write overlaps these wake-ups.
        if let Some(next) = next_leader {
            next.thread.unpark();
        }
        for ticket in done {
            ticket.wake();
        }
    }

    /// Lets appenders that are about to queue join this group: yields the
    /// CPU while the group keeps growing (a lone appender yields once, ~1 µs
    /// against a ~300 µs fdatasync). Without it, with many appenders on few
    /// cores, groups alternate between two halves of the appenders.
    fn gather<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let mut seen = inner.commit.pending.batches.len();
        for _ in 0..GATHER_YIELDS_MAX {
            drop(inner);
            std::thread::yield_now();
            inner = self.lock();
            let now = inner.commit.pending.batches.len();
            if now == seen {
                break;
            }
            seen = now;
        }
        inner
    }

    /// Accounts for a written group or gives its offsets back, and records
    /// every appender's outcome. Returns the tickets the caller must wake
    /// once it has released the lock.
    fn finish_group(
        &self,
        inner: &mut Inner,
        taken: Taken,
        result: Result<(), (LogError, bool)>,
    ) -> Vec<Arc<Ticket>> {
        let Taken {
            group, position, ..
        } = taken;
        inner.commit.in_flight = None;
        let interval = inner.config.index_interval_bytes;
        match result {
            Ok(()) => {
                let mut at = position;
                for q in &group.batches {
                    inner
                        .active_mut()
                        .note_written(at, &q.header, interval, q.now_ms);
                    at += q.header.total_len() as u64;
                }
                let (written, size) = (inner.written_offset(), inner.active().size);
                inner.synced_through(written, size);
                for q in &group.batches {
                    q.ticket.resolve(Ok(Appended {
                        base_offset: q.header.base_offset,
                        last_offset: q.header.last_offset(),
                    }));
                }
            }
            Err((e, fatal)) => {
                if fatal {
                    inner.failed = Some(e.to_string());
                }
                for q in &group.batches {
                    q.ticket.resolve(Err(replicate(&e)));
                }
                let given_back = group.next_offset().unwrap_or(0)
                    - group.batches.first().map_or(0, |q| q.header.base_offset);
                inner.commit.pending.rebase(given_back);
            }
        }
        let mut done: Vec<Arc<Ticket>> = group.batches.into_iter().map(|q| q.ticket).collect();
        if let Some(why) = inner.failed.clone() {
            // Nothing more is written to a failed log.
            let stranded = std::mem::take(&mut inner.commit.pending);
            for q in stranded.batches {
                q.ticket.resolve(Err(LogError::Failed(why.clone())));
                done.push(q.ticket);
            }
        }
        let mut bytes = group.bytes;
        bytes.clear();
        inner.commit.spare = bytes;
        publish(done)
    }

    fn write_taken(&self, taken: &Taken) -> Result<(), (LogError, bool)> {
        #[cfg(test)]
        if self.hooks.take_injected_failure() {
            let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err((LogError::io(&taken.path, full), false));
        }
        write_group(taken)
    }

    /// Waits until no group-commit leader is at work (and, with
    /// `wait_for_syncs`, no [`Log::sync_to`] fdatasync either), then writes
    /// and syncs any pending group itself, under the lock. Afterwards, until
    /// the lock is released, every assigned offset is in the active segment.
    /// The result is the drained group's (already told to its appenders).
    fn drain<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        wait_for_syncs: bool,
    ) -> (MutexGuard<'a, Inner>, Result<(), LogError>) {
        while inner.commit.leading || (wait_for_syncs && inner.syncing) {
            inner.commit.drainers += 1;
            inner = self.synced.wait(inner).unwrap_or_else(|p| p.into_inner());
            inner.commit.drainers -= 1;
        }
        if inner.commit.pending.batches.is_empty() {
            return (inner, Ok(()));
        }
        let taken = inner.take_pending();
        let result = self.write_taken(&taken);
        let outcome = match &result {
            Ok(()) => Ok(()),
            Err((e, _)) => Err(replicate(e)),
        };
        for ticket in self.finish_group(&mut inner, taken, result) {
            ticket.wake();
        }
        (inner, outcome)
    }

    /// Blocks until every offset below `next_offset` is fdatasync'd. Concurrent
    /// callers share one fdatasync: the first becomes the leader and syncs
    /// everything written so far; the others wait for its result. Offsets
    /// still queued by `append` are synced by their group's leader, whom
    /// this waits for. Offsets past the end of the log are not waited for.
    pub fn sync_to(&self, next_offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        if next_offset > inner.written_offset() && !inner.commit.is_idle() {
            inner = self.drain(inner, false).0;
        }
        let next_offset = next_offset.min(inner.written_offset());
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
            let mut seen = inner.written_offset();
            let waiting_bytes = inner.active().size.saturating_sub(inner.synced_position);
            let gather_yields = if waiting_bytes < GATHER_ENOUGH_BYTES {
                GATHER_YIELDS_MAX
            } else {
                0
            };
            drop(inner);
            for _ in 0..gather_yields {
                std::thread::yield_now();
                let now = self.lock().written_offset();
                if now == seen {
                    break;
                }
                seen = now;
            }
            inner = self.lock();
            let target = inner.written_offset();
            let target_position = inner.active().size;
            let file = Arc::clone(&inner.active().file);
            let path = inner.active().path.clone();
            drop(inner);
            let result = timed_sync_data(&file);
            #[cfg(test)]
            self.hooks.before_publish();
            // No suffix truncation ran meanwhile (it waits for `syncing` to
            // clear), so `target` still names synced bytes.
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) => inner.synced_through(target, target_position),
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

    /// Whether [`Log::sync_to`]`(next_offset)` would return at once without
    /// an fdatasync: every written offset below `next_offset` is durable and
    /// the log has not failed.
    pub fn is_durable_to(&self, next_offset: i64) -> bool {
        let inner = self.lock();
        inner.failed.is_none()
            && inner.commit.is_idle()
            && inner.durable_offset >= next_offset.min(inner.written_offset())
    }

    /// Syncs if the `interval` policy's deadline has passed with unsynced data.
    /// The owner of an `interval` log calls this periodically.
    pub fn sync_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let target = {
            let mut inner = self.lock();
            let Durability::Interval { interval_ms } = inner.config.durability else {
                return Ok(());
            };
            if inner.durable_offset >= inner.written_offset()
                || now_ms - inner.last_sync_ms < interval_ms as i64
            {
                return Ok(());
            }
            inner.last_sync_ms = now_ms;
            inner.written_offset()
        };
        self.sync_to(target)
    }

    /// Seals the active segment and starts a new one when it is full or old.
    /// Nothing may be queued for a group write (see [`Log::drain`]).
    fn maybe_roll(&self, inner: &mut Inner, incoming: u64, now_ms: i64) -> Result<(), LogError> {
        if !inner.roll_due(incoming, now_ms) {
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
        debug_assert!(inner.commit.is_idle(), "roll with batches queued");
        inner.active_mut().seal()?;
        let next = inner.written_offset();
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
        inner.synced_position = inner.active().size;
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
            if offset < start_offset || offset > inner.written_offset() {
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
        // Not into batches still queued: their offsets may yet be given back.
        let offset = offset.min(inner.written_offset());
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
    ///
    /// Appends and syncs in flight finish first, so they are ordered before
    /// the truncation: no fdatasync that started before it can afterwards
    /// raise the durable offset over batches appended after it.
    pub fn truncate_suffix(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.drain(self.lock(), true).0;
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
                Step::Bad {
                    position, reason, ..
                } => return Err(LogError::corrupt(&path, position, reason)),
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
        inner.synced_position = inner.synced_position.min(inner.active().size);
        Ok(())
    }

    /// Makes everything written so far durable and seals nothing; used at
    /// shutdown. Appends queued for a group write are written first.
    pub fn flush(&self) -> Result<(), LogError> {
        let (inner, drained) = self.drain(self.lock(), false);
        let next = inner.written_offset();
        drop(inner);
        match drained {
            // Those appenders were told, and their offsets given back.
            Err(LogError::StorageFull { .. }) | Ok(()) => self.sync_to(next),
            Err(e) => Err(e),
        }
    }
}

/// Writes a taken group at the end of its segment with one `pwrite` and makes
/// it durable with one fdatasync. An error says whether it leaves the file
/// in doubt (`true`: the log must stop) or was a full disk on write (the
/// file was cut back; later appends may succeed once there is space).
fn write_group(taken: &Taken) -> Result<(), (LogError, bool)> {
    segment::write_at_end(&taken.file, &taken.path, &taken.group.bytes, taken.position).map_err(
        |e| {
            let fatal = !matches!(e, LogError::StorageFull { .. });
            (e, fatal)
        },
    )?;
    // A failed fdatasync may have dropped dirty pages: always fatal.
    timed_sync_data(&taken.file).map_err(|e| (LogError::io(&taken.path, e), true))
}

/// fdatasync of an append path, timed into the histogram
/// `spool_fsync_duration_seconds` (through the `metrics` facade: nothing
/// is recorded unless the program installs a recorder, as the server does).
fn timed_sync_data(file: &std::fs::File) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let result = file.sync_data();
    metrics::histogram!("spool_fsync_duration_seconds").record(started.elapsed().as_secs_f64());
    result
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
            Step::Bad {
                position, reason, ..
            } => return Err((position == start, LogError::corrupt(path, position, reason))),
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
    // A pooled buffer, possibly longer than `want`: only `buf[..want]` is read.
    let mut want = want as usize;
    let mut buf = read_buffers::take(want);
    file.read_exact_at(&mut buf[..want], first)
        .map_err(|e| LogError::io(path, e))?;
    let mut kept = 0usize;
    let mut next_offset = first_base;
    loop {
        let rest = &buf[kept..want];
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
            want = total;
            read_buffers::give_back(std::mem::replace(&mut buf, read_buffers::take(want)));
            file.read_exact_at(&mut buf[..want], first)
                .map_err(|e| LogError::io(path, e))?;
            continue;
        }
        scan::verify_served(path, first + kept as u64, &rest[..total])?;
        kept += total;
        next_offset = header.next_offset();
    }
    // The returned bytes may be held until a slow client has read them
    // (the server sends them without copying), and a byte budget counts
    // only their length: the buffer is at most twice that (its size class),
    // and goes back to the pool when the last holder drops it.
    Ok((read_buffers::freeze(buf, kept), next_offset))
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
    use std::sync::atomic::AtomicUsize;

    /// Test-only points where a test can pause a leader or fail a write.
    #[derive(Default)]
    pub(super) struct Hooks {
        /// Run by a group-commit or `sync_to` leader after its fdatasync,
        /// before it publishes the result.
        pause: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
        /// How many of the next group writes fail as if the disk were full.
        failing_writes: AtomicUsize,
    }

    impl Hooks {
        pub(super) fn before_publish(&self) {
            let pause = self.pause.lock().unwrap().clone();
            if let Some(pause) = pause {
                pause();
            }
        }

        pub(super) fn take_injected_failure(&self) -> bool {
            self.failing_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

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

    fn one_record(value: &str) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&NewRecord::value(value.to_owned(), 0)).unwrap();
        b.finish().unwrap()
    }

    /// Every (offset, value) readable from offset 0.
    fn contents(log: &Log) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let r = log.read(offset, 1 << 20).unwrap();
            if r.bytes.is_empty() {
                return out;
            }
            for batch in spool_batch::split_batches(&r.bytes) {
                let batch = batch.unwrap();
                let header = spool_batch::validate(batch).unwrap();
                for rec in spool_batch::records(batch, &header) {
                    let rec = rec.unwrap();
                    let value = rec.value.unwrap_or_default();
                    out.push((
                        header.base_offset + rec.offset_delta as i64,
                        String::from_utf8(value.to_vec()).unwrap(),
                    ));
                }
            }
            offset = r.next_offset;
        }
    }

    fn pause_leaders(log: &Log, pause: impl Fn() + Send + Sync + 'static) {
        *log.hooks.pause.lock().unwrap() = Some(Arc::new(pause));
    }

    /// A write that fails with a full disk fails every append of its group
    /// with `StorageFull`, uses none of their offsets, and lets the appends
    /// queued behind it move down and succeed.
    #[test]
    fn a_full_disk_fails_the_whole_group_and_gives_its_offsets_back() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&mut one_record("a"), 0).unwrap();
        log.hooks.failing_writes.store(1, Ordering::SeqCst);
        let err = log.append(&mut one_record("lost"), 0).unwrap_err();
        assert!(matches!(err, LogError::StorageFull { .. }), "{err}");
        let s = log.stats();
        assert_eq!((s.next_offset, s.durable_offset), (1, 1));
        assert_eq!(log.append(&mut one_record("b"), 0).unwrap().base_offset, 1);

        // The leader of the failing group pauses after its write until 15
        // more appenders have queued behind it; they must move down.
        log.hooks.failing_writes.store(1, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = Arc::clone(&release);
        pause_leaders(&log, move || {
            let _ = tx.lock().unwrap().send(());
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let append = |t: usize| {
            let value = format!("t{t}");
            let mut batch = one_record(&value);
            let result = log.append(&mut batch, 0);
            if let Ok(a) = &result {
                // The caller's copy carries the final offset.
                let header = spool_batch::validate(&batch).unwrap();
                assert_eq!(header.base_offset, a.base_offset);
            }
            (value, result)
        };
        let results: Vec<(String, Result<Appended, LogError>)> = std::thread::scope(|s| {
            let first = s.spawn(|| append(0));
            rx.recv().unwrap();
            *log.hooks.pause.lock().unwrap() = None;
            let rest: Vec<_> = (1..16).map(|t| s.spawn(move || append(t))).collect();
            while log.stats().next_offset < 3 + 15 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            release.store(true, Ordering::SeqCst);
            std::iter::once(first)
                .chain(rest)
                .map(|h| h.join().unwrap())
                .collect()
        });
        assert!(matches!(&results[0].1, Err(LogError::StorageFull { .. })));
        assert!(results[1..].iter().all(|(_, r)| r.is_ok()));
        let mut acked: Vec<(i64, String)> = results
            .into_iter()
            .filter_map(|(v, r)| r.ok().map(|a| (a.base_offset, v)))
            .collect();
        acked.sort();
        let dense: Vec<i64> = (2..2 + acked.len() as i64).collect();
        assert_eq!(acked.iter().map(|(o, _)| *o).collect::<Vec<_>>(), dense);
        let s = log.stats();
        assert_eq!(s.next_offset, 2 + acked.len() as i64);
        assert_eq!(s.durable_offset, s.next_offset);
        let mut expected = vec![(0, "a".to_owned()), (1, "b".to_owned())];
        expected.extend(acked);
        assert_eq!(contents(&log), expected);
        drop(log);
        let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(contents(&log), expected);
    }

    /// `write` stores the batch with its assigned base offset but leaves the
    /// caller's bytes (a received frame) untouched, also across a reopen.
    #[test]
    fn write_sets_the_base_offset_in_the_file_not_in_the_callers_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let mut batches = Vec::new();
        for value in ["a", "b", "c"] {
            let batch = one_record(value);
            let before = batch.clone();
            log.write(&batch, 0).unwrap();
            assert_eq!(batch, before);
            batches.push(batch);
        }
        let stored = [
            (0, "a".to_owned()),
            (1, "b".to_owned()),
            (2, "c".to_owned()),
        ];
        log.sync_to(3).unwrap(); // readers see durable offsets only
        assert_eq!(contents(&log), stored);
        drop(log);
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(contents(&log), stored);
        // Only the base offset differs between what was given and stored.
        let read = log.read(2, 1 << 20).unwrap();
        let third = spool_batch::split_batches(&read.bytes)
            .next()
            .unwrap()
            .unwrap();
        let mut expected = batches[2].clone();
        spool_batch::set_base_offset(&mut expected, 2);
        assert_eq!(third, expected.as_slice());
    }

    /// The race this fixes: a `sync_to` fdatasync that started before a suffix
    /// truncation used to raise the durable offset afterwards to its stale
    /// target, over batches written after the truncation and never synced.
    #[test]
    fn truncate_suffix_waits_for_a_sync_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.write(&one_record("a"), 0).unwrap();
        log.write(&one_record("b"), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        pause_leaders(&log, move || {
            let _ = tx.lock().unwrap().send(());
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        std::thread::scope(|s| {
            let syncer = s.spawn(|| log.sync_to(2));
            rx.recv().unwrap(); // the leader has synced 0..2, not yet published
            log.truncate_suffix(1).unwrap();
            *log.hooks.pause.lock().unwrap() = None;
            let (c, must_sync) = log.write(&one_record("c"), 0).unwrap();
            assert!(must_sync);
            assert_eq!(c.base_offset, 1);
            syncer.join().unwrap().unwrap();
        });
        let s = log.stats();
        assert_eq!(
            (s.next_offset, s.durable_offset),
            (2, 1),
            "c was never synced"
        );
        assert_eq!(contents(&log), [(0, "a".to_owned())]);
        log.sync_to(2).unwrap();
        assert_eq!(contents(&log), [(0, "a".to_owned()), (1, "c".to_owned())]);
    }

    /// A truncation waits for the group commit in flight: the append is
    /// acknowledged first, then cut, and the leader's late result does not
    /// mark the next batch durable.
    #[test]
    fn truncate_suffix_waits_for_a_group_commit_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&mut one_record("a"), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        pause_leaders(&log, move || {
            let _ = tx.lock().unwrap().send(());
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        std::thread::scope(|s| {
            let appender = s.spawn(|| log.append(&mut one_record("b"), 0));
            rx.recv().unwrap();
            log.truncate_suffix(1).unwrap();
            *log.hooks.pause.lock().unwrap() = None;
            assert_eq!(appender.join().unwrap().unwrap().base_offset, 1);
        });
        let s = log.stats();
        assert_eq!((s.next_offset, s.durable_offset), (1, 1));
        log.write(&one_record("c"), 0).unwrap();
        assert_eq!(log.stats().durable_offset, 1);
        assert_eq!(contents(&log), [(0, "a".to_owned())]);
    }

    /// Each waiter of a group is woken exactly through the wake-up tree.
    #[test]
    fn wake_plan_covers_every_ticket_once() {
        for n in 0..70 {
            let tickets: Vec<Arc<Ticket>> = (0..n).map(|_| Arc::new(Ticket::new())).collect();
            let mut seen = vec![0usize; n];
            let mut stack = plan_wakes(tickets.clone());
            assert!(stack.len() <= 1 + n.max(1).ilog2() as usize, "n {n}");
            while let Some(t) = stack.pop() {
                let i = tickets.iter().position(|x| Arc::ptr_eq(x, &t)).unwrap();
                seen[i] += 1;
                stack.extend(std::mem::take(&mut t.done().wakes));
            }
            assert!(seen.iter().all(|&c| c == 1), "n {n}: {seen:?}");
        }
    }

    /// A flush, a direct write and a truncation get their turn while 16
    /// appenders keep the group-commit lead busy without a pause.
    #[test]
    fn drains_are_not_starved_by_a_stream_of_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..16 {
                let (log, stop) = (&log, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        log.append(&mut one_record(&format!("t{t}")), 0).unwrap();
                    }
                });
            }
            let (tx, rx) = std::sync::mpsc::channel();
            let log = &log;
            s.spawn(move || {
                for _ in 0..20 {
                    log.flush().unwrap();
                    let (a, _) = log.write(&one_record("direct"), 0).unwrap();
                    log.sync_to(a.next_offset()).unwrap();
                    log.truncate_suffix(a.base_offset).unwrap();
                }
                let _ = tx.send(());
            });
            let finished = rx.recv_timeout(std::time::Duration::from_secs(60));
            stop.store(true, Ordering::SeqCst);
            finished.expect("drains starved");
        });
        let s = log.stats();
        assert_eq!(s.durable_offset, s.next_offset);
        assert_eq!(contents(&log).len() as i64, s.next_offset);
    }
}
