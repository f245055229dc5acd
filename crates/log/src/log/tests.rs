//! Unit tests of the log's write path that need to reach inside: pausing a
//! `sync_to` leader after its fdatasync, failing a write as a full disk.

use super::*;
use spool_batch::{BatchBuilder, NewRecord};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Test-only points where a test can pause a sync leader or fail a write.
#[derive(Default)]
pub(super) struct Hooks {
    /// Run by a `sync_to` leader after its fdatasync, before it publishes
    /// the result.
    pause: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// How many of the next writes fail as if the disk were full.
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

/// Makes every sync leader signal on the returned channel, then pause for
/// 100 ms, before it publishes what it synced.
fn pause_leaders_and_signal(log: &Log) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    pause_leaders(log, move || {
        let _ = tx.lock().unwrap().send(());
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
    rx
}

/// Group commit with segment rolls (which make everything written durable
/// without a group sync) interleaved: every writer returns, and only once
/// its batch is durable.
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
                    let batch = one_record(&format!("{t}.{i}"));
                    let appended = log.write_durable(&batch, 0).unwrap();
                    assert!(log.stats().durable_offset >= appended.next_offset());
                }
            });
        }
    });
    let stats = log.stats();
    assert_eq!((stats.next_offset, stats.durable_offset), (1280, 1280));
    assert!(stats.segments > 10);
}

/// A write that fails with a full disk fails alone with `StorageFull`, uses
/// no offset and leaves the log working: concurrent writers around it get
/// dense offsets, and everything acknowledged is durable and readable, also
/// after a reopen.
#[test]
fn a_full_disk_fails_the_write_and_uses_no_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.write_durable(&one_record("a"), 0).unwrap();
    log.hooks.failing_writes.store(1, Ordering::SeqCst);
    let err = log.write_durable(&one_record("lost"), 0).unwrap_err();
    assert!(matches!(err, LogError::StorageFull { .. }), "{err}");
    let s = log.stats();
    assert_eq!((s.next_offset, s.durable_offset), (1, 1));
    assert_eq!(
        log.write_durable(&one_record("b"), 0).unwrap().base_offset,
        1
    );

    // 16 writers, of which 3 writes fail while the others' syncs are in
    // flight: the failures leave no hole.
    log.hooks.failing_writes.store(3, Ordering::SeqCst);
    let results: Vec<(String, Result<Appended, LogError>)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..16)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let value = format!("t{t}");
                    let batch = one_record(&value);
                    let before = batch.clone();
                    let result = log.write_durable(&batch, 0);
                    assert_eq!(batch, before, "the caller's batch is left as it was");
                    (value, result)
                })
            })
            .collect();
        writers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(LogError::StorageFull { .. })))
        .count();
    assert_eq!(failed, 3);
    assert_eq!(results.iter().filter(|(_, r)| r.is_ok()).count(), 13);
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
    let rx = pause_leaders_and_signal(&log);
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

/// A truncation waits for a durable write in flight: the write is
/// acknowledged first, then cut, and its leader's late result does not
/// mark the next batch durable.
#[test]
fn truncate_suffix_waits_for_a_durable_write_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.write_durable(&one_record("a"), 0).unwrap();
    let rx = pause_leaders_and_signal(&log);
    std::thread::scope(|s| {
        let writer = s.spawn(|| log.write_durable(&one_record("b"), 0));
        rx.recv().unwrap();
        log.truncate_suffix(1).unwrap();
        *log.hooks.pause.lock().unwrap() = None;
        assert_eq!(writer.join().unwrap().unwrap().base_offset, 1);
    });
    let s = log.stats();
    assert_eq!((s.next_offset, s.durable_offset), (1, 1));
    log.write(&one_record("c"), 0).unwrap();
    assert_eq!(log.stats().durable_offset, 1);
    assert_eq!(contents(&log), [(0, "a".to_owned())]);
}

/// A flush, a direct write + sync and a truncation get their turn while 16
/// writers keep `sync_to` busy without a pause; writers whose batch a
/// truncation cut while they waited for their sync return too.
#[test]
fn flush_and_truncation_are_not_starved_by_a_stream_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap().0);
    let stop = Arc::new(AtomicBool::new(false));
    // Threads of their own, not scoped: a starved or stuck thread must fail
    // the test, not hang it in a join.
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    log.write_durable(&one_record(&format!("t{t}")), 0).unwrap();
                }
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let cutter = Arc::clone(&log);
    std::thread::spawn(move || {
        for _ in 0..20 {
            cutter.flush().unwrap();
            let (a, _) = cutter.write(&one_record("direct"), 0).unwrap();
            cutter.sync_to(a.next_offset()).unwrap();
            cutter.truncate_suffix(a.base_offset).unwrap();
        }
        let _ = tx.send(());
    });
    let timeout = std::time::Duration::from_secs(60);
    let finished = rx.recv_timeout(timeout);
    stop.store(true, Ordering::SeqCst);
    finished.expect("flush and truncation starved");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for w in writers {
            w.join().unwrap();
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(timeout)
        .expect("writers stuck after the stop");
    let s = log.stats();
    assert_eq!(s.durable_offset, s.next_offset);
    assert_eq!(contents(&log).len() as i64, s.next_offset);
}
