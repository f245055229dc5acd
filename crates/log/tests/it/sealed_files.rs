//! Sealed segments' files are opened on demand through a bounded cache:
//! reads stay correct across many more sealed segments than the cache
//! holds, while retention deletes segments under them and a writer rolls
//! new ones; a log holds only its active segment's files.

use crate::support::*;
use spool_log::{Durability, Log, LogConfig, LogError, SealedFileCache, SEGMENT_FILES};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Files the cache may keep open: far fewer than the segments read.
const CACHED: usize = 4;

/// Segments written before the readers start.
const SEGMENTS: usize = 40;

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        durability: Durability::Never,
        segment_bytes: 1024,
        index_interval_bytes: 256,
        retention_bytes,
        ..LogConfig::default()
    }
}

/// A one-record batch whose value names its offset.
fn record(offset: i64) -> Vec<u8> {
    batch(&format!("v{offset}"), 1, offset)
}

fn expected(offset: i64) -> Vec<u8> {
    format!("v{offset}-0").into_bytes()
}

/// Reads the log from its start to its end, one batch at a time, checking
/// every record; starts again from the start offset when retention took
/// the segment a read wanted (`OFFSET_OUT_OF_RANGE`, as ever). How many
/// records it checked.
fn read_through(log: &Log) -> usize {
    let mut checked = 0;
    let mut offset = log.stats().start_offset;
    loop {
        match log.read(offset, 1) {
            Ok(r) if r.bytes.is_empty() => return checked,
            Ok(r) => {
                for (o, v) in values(&r) {
                    assert_eq!(v, expected(o), "offset {o}");
                    checked += 1;
                }
                offset = r.next_offset;
            }
            Err(LogError::OffsetOutOfRange { start, .. }) => {
                assert!(offset < start, "{offset} refused above the start {start}");
                offset = start;
            }
            Err(e) => panic!("read at {offset}: {e}"),
        }
    }
}

#[test]
fn reads_across_more_sealed_segments_than_the_cache_holds_while_retention_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SealedFileCache::new(CACHED));
    let log = Log::open_with_cache(dir.path(), config(None), Arc::clone(&cache))
        .unwrap()
        .0;
    let log = Arc::new(log);
    let mut next = 0i64;
    while log.stats().segments < SEGMENTS {
        log.write(&record(next), 0).unwrap();
        next += 1;
    }
    // Only the active segment's files are open.
    assert_eq!(log.open_files(), SEGMENT_FILES);
    assert_eq!(read_through(&log), next as usize);
    assert!(cache.len() <= CACHED);
    assert!(cache.misses() >= (SEGMENTS - 1) as u64);

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut passes = 0;
                while !stop.load(Ordering::Relaxed) {
                    read_through(&log);
                    passes += 1;
                }
                passes
            })
        })
        .collect();
    // A writer rolls new segments while retention deletes the oldest, a
    // few at a time, down to a handful.
    let started = Instant::now();
    let mut retained = SEGMENTS as u64 * 1024;
    while started.elapsed() < Duration::from_secs(2) && retained > 4 * 1024 {
        for _ in 0..10 {
            log.write(&record(next), 0).unwrap();
            next += 1;
        }
        retained -= 512;
        log.set_config(config(Some(retained))).unwrap();
        log.apply_retention(0).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    let stats = log.stats();
    assert!(stats.start_offset > 0, "retention deleted nothing");
    assert_eq!(
        read_through(&log),
        (stats.next_offset - stats.start_offset) as usize
    );
    assert!(cache.len() <= CACHED);
    assert_eq!(log.open_files(), SEGMENT_FILES);
    // A closed log leaves nothing open in the cache.
    drop(log);
    assert!(cache.is_empty());
}
