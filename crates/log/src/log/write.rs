//! The write path, the only one: [`Log::write`] puts a batch at the end of
//! the active segment under the log's lock (one `pwritev`, no copy of the
//! batch), and [`Log::sync_to`] makes offsets durable with group commit:
//! concurrent callers share one fdatasync, run without the lock.
//!
//! Callers that may block a thread use [`Log::write_durable`] (write, then
//! `sync_to` when the durability policy asks for it); the server writes and
//! hands the wait to a [`Syncer`](crate::Syncer), which calls `sync_to` on
//! its own threads. Both therefore take the same path to the disk.

use super::{Appended, Inner, Log};
use crate::config::Durability;
use crate::segment::{self, Segment};
use crate::{fsutil, LogError};
use std::sync::MutexGuard;

/// Most times a [`Log::sync_to`] leader yields, before it takes its target,
/// while other writers are still writing.
const GATHER_YIELDS_MAX: usize = 8;
/// [`Log::sync_to`] gathers only while fewer bytes than this await the
/// fdatasync: a sync that already carries this much is not worth delaying.
/// Gathering serves many small appenders (64 producers of 100 B: 75 K msgs/s
/// with it, 66 K without); a pipelined producer of 1 MiB batches it only
/// held up, leaving the device idle (1 KiB publish: 803 K msgs/s with it,
/// 852 K without; BENCHMARKS.md, seventh session).
const GATHER_ENOUGH_BYTES: u64 = 256 * 1024;

impl Log {
    /// Validates one batch and writes it to the OS at the next offset.
    /// Returns the offsets it received and whether the caller must call
    /// [`Log::sync_to`] before acknowledging, per the durability policy
    /// (always under `always`). Callers that wait elsewhere (a [`Syncer`]
    /// thread, an async task) use this; see also [`Log::write_durable`].
    /// The batch is not changed: its base offset is set in what is written.
    ///
    /// [`Syncer`]: crate::Syncer
    ///
    /// A log in entry mode takes entries instead ([`Log::write_entry`]).
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

    /// Writes one batch and returns once it is as durable as the log's
    /// [`Durability`] promises: [`Log::write`], then [`Log::sync_to`] of its
    /// offsets when `write` asks for it (under `always`: always, so the
    /// batch is fdatasync'd on return). For callers that may block their
    /// thread for an fdatasync (metadata, tools, tests); concurrent callers
    /// share fdatasyncs like any `sync_to` callers. Not a second engine:
    /// exactly the two calls the server makes, with the wait on this thread.
    ///
    /// If the write fails, no offset was used. If the sync fails, the batch
    /// may or may not survive a crash and the log stops (see `sync_to`).
    pub fn write_durable(&self, batch: &[u8], now_ms: i64) -> Result<Appended, LogError> {
        let (appended, must_sync) = self.write(batch, now_ms)?;
        if must_sync {
            self.sync_to(appended.next_offset())?;
        }
        Ok(appended)
    }

    /// Writes one validated batch at the end of the active segment, now.
    fn write_locked<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        batch: &[u8],
        mut header: spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<(Appended, bool), LogError> {
        if inner.config.entry_mode {
            // Its batches would carry no term and no entry bookkeeping.
            return Err(LogError::InEntryMode {
                op: "write",
                instead: "write_entry",
            });
        }
        let must_sync = self.append_batch(&mut inner, batch, &mut header, now_ms)?;
        let appended = Appended {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        };
        Ok((appended, must_sync))
    }

    /// The one append: rolls if due, gives the batch the next offset (in
    /// `header`, whose base offset and leader epoch go into the copy of the
    /// header written), writes it at the end of the active segment and
    /// returns whether the caller must sync before it acknowledges.
    pub(super) fn append_batch(
        &self,
        inner: &mut Inner,
        batch: &[u8],
        header: &mut spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<bool, LogError> {
        inner.check_failed()?;
        self.maybe_roll(inner, batch.len() as u64, now_ms)?;
        header.base_offset = inner.written_offset();
        if let Err(e) = self.append_to_active(inner, batch, header, now_ms) {
            // A full disk was cut back (the file ends on a batch boundary and
            // the offset is unused): later writes may succeed once there is
            // space. Anything else leaves the file in doubt.
            if !matches!(e, LogError::StorageFull { .. }) {
                inner.failed = Some(e.to_string());
            }
            return Err(e);
        }
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
        Ok(must_sync)
    }

    /// [`Segment::append`] to the active segment; in unit tests, first the
    /// full disk a test may have asked for.
    fn append_to_active(
        &self,
        inner: &mut Inner,
        batch: &[u8],
        header: &spool_batch::BatchHeader,
        now_ms: i64,
    ) -> Result<(), LogError> {
        #[cfg(test)]
        if self.hooks.take_injected_failure() {
            let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(LogError::io(&inner.active().path, full));
        }
        let interval = inner.config.index_interval_bytes;
        inner.active_mut().append(batch, header, interval, now_ms)
    }

    /// Blocks until every offset below `next_offset` is fdatasync'd. Concurrent
    /// callers share one fdatasync: the first becomes the leader and syncs
    /// everything written so far; the others wait for its result. Offsets
    /// past the end of the log are not waited for, nor offsets a suffix
    /// truncation cut while this call waited.
    ///
    /// In entry mode it also covers every control entry whose base offset
    /// is at or below `next_offset` (they advance no offset), so syncing to
    /// the `next_offset` an entry was given makes that entry durable,
    /// whether it is a data or a control entry.
    ///
    /// A failed fdatasync stops the log (every later write and sync fails)
    /// until it is reopened and recovered: the kernel may have dropped the
    /// dirty pages, so nothing since the last good sync can be trusted.
    pub fn sync_to(&self, next_offset: i64) -> Result<(), LogError> {
        let mut inner = self.lock();
        let next_offset = next_offset.min(inner.written_offset());
        loop {
            // Only a suffix truncation lowers the written offset. Without
            // this, a caller whose batch it cut would sync again and again
            // until new writes reached its old target (`durable_to` takes
            // the minimum).
            if inner.durable_to(next_offset) {
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
            let target_index = inner.next_index();
            let path = inner.active().path.clone();
            let file = match inner.active().reader() {
                Ok(file) => file,
                Err(e) => {
                    inner.syncing = false;
                    self.synced.notify_all();
                    return Err(e);
                }
            };
            drop(inner);
            let result = timed_sync_data(&file);
            #[cfg(test)]
            self.hooks.before_publish();
            // No suffix truncation ran meanwhile (it waits for `syncing` to
            // clear), so `target` still names synced bytes.
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) => inner.synced_through(target, target_position, target_index),
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
        inner.failed.is_none() && inner.durable_to(next_offset)
    }

    /// Syncs if the `interval` policy's deadline has passed with unsynced data.
    /// The owner of an `interval` log calls this periodically.
    pub fn sync_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let target = {
            let mut inner = self.lock();
            let Durability::Interval { interval_ms } = inner.config.durability else {
                return Ok(());
            };
            if inner.durable_to(inner.written_offset())
                || now_ms - inner.last_sync_ms < interval_ms as i64
            {
                return Ok(());
            }
            inner.last_sync_ms = now_ms;
            inner.written_offset()
        };
        self.sync_to(target)
    }

    /// Makes everything written so far durable and seals nothing; used at
    /// shutdown.
    pub fn flush(&self) -> Result<(), LogError> {
        let next = self.lock().written_offset();
        self.sync_to(next)
    }

    /// Seals the active segment and starts a new one when it is full or old.
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
        inner.active_mut().seal()?;
        let next = inner.written_offset();
        let next_index = inner.next_index();
        inner.synced_through(next, inner.active().size, next_index);
        let fresh = match Segment::create(&self.dir, next, next_index, &inner.files) {
            Ok(s) => s,
            Err(e) => {
                // Leave no half-made segment behind (e.g. on a full disk).
                for p in segment::segment_file_paths(&self.dir, next, next_index.is_some()) {
                    let _ = fsutil::remove_if_exists(&p);
                }
                return Err(e);
            }
        };
        fsutil::sync_dir(&self.dir)?;
        // Sealed: reads open its `.log` through the cache from now on.
        inner.active_mut().close_files();
        inner.segments.push(fresh);
        inner.synced_position = inner.active().size;
        Ok(())
    }
}

/// fdatasync of the write path, timed into the histogram
/// `spool_fsync_duration_seconds` (through the `metrics` facade: nothing
/// is recorded unless the program installs a recorder, as the server does).
fn timed_sync_data(file: &std::fs::File) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let result = file.sync_data();
    metrics::histogram!("spool_fsync_duration_seconds").record(started.elapsed().as_secs_f64());
    result
}
