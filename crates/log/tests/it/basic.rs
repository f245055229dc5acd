use crate::support::*;
use spool_log::{Durability, Log, LogConfig, LogError};

/// A log in a new temporary directory, with the `small` configuration.
fn open_small() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    (dir, log)
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

#[test]
fn append_assigns_offsets_and_reads_return_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(report.is_clean(), "{report}");
    let a = log.write_durable(&batch("a", 3, 1000), 0).unwrap();
    let b = log.write_durable(&batch("b", 2, 2000), 0).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    let all = read_all(&log, 0);
    let got: Vec<String> = all
        .iter()
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    assert_eq!(got, ["a-0", "a-1", "a-2", "b-0", "b-1"]);
    // Reading from the middle of a batch returns the whole batch.
    let mid = log.read(1, 1 << 20).unwrap();
    assert_eq!(values(&mid)[0].0, 0);
    assert_eq!(mid.next_offset, 5);
    // At the end: empty. Past the end: an error.
    assert!(log.read(5, 100).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(6, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn rolls_segments_and_survives_reopen_with_indexes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(dir.path(), small()).unwrap();
        for i in 0..200 {
            log.write_durable(&batch(&format!("r{i}"), 2, 10_000 + i), 0)
                .unwrap();
        }
        assert!(log.stats().segments > 3, "{:?}", log.stats());
    }
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.stats().next_offset, 400);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 400);
    for (i, (offset, value)) in all.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(value, format!("r{}-{}", i / 2, i % 2).as_bytes());
    }
    // Random access anywhere lands on the right batch.
    for offset in [0, 1, 77, 150, 399] {
        let r = log.read(offset, 10).unwrap();
        assert!(
            values(&r).iter().any(|(o, _)| *o == offset),
            "offset {offset}"
        );
    }
    // Deleting index files forces a rebuild that gives the same answers.
    drop(log);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert!(!report.rebuilt_indexes.is_empty());
    assert_eq!(read_all(&log, 0), all);
}

#[test]
fn reads_by_timestamp() {
    let (_dir, log) = open_small();
    for i in 0..100i64 {
        log.write_durable(&batch("t", 1, 1_000 + i * 10), 0)
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1_005).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(1_500).unwrap(), Some(50));
    assert_eq!(log.offset_for_timestamp(1_990).unwrap(), Some(99));
    assert_eq!(log.offset_for_timestamp(2_000).unwrap(), None);
    let r = log.read_from_timestamp(1_500, 1).unwrap();
    assert_eq!(values(&r)[0].0, 50);
}

#[test]
fn retention_by_size_and_age_deletes_whole_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(8192),
        ..small()
    };
    let (log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..100 {
        log.write_durable(&sized(200, 1, i), 0).unwrap();
    }
    let before = log.stats();
    let deleted = log.apply_retention(0).unwrap();
    let after = log.stats();
    assert!(deleted > 0);
    assert!(
        after.size_bytes >= 8192 && after.size_bytes < before.size_bytes,
        "{after:?}"
    );
    assert!(after.start_offset > 0);
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        read_all(&log, after.start_offset).len() as i64,
        100 - after.start_offset
    );
    // Age: everything older than the newest record by > 10 ms goes.
    log.set_config(LogConfig {
        retention_bytes: None,
        retention_ms: Some(10),
        ..cfg
    })
    .unwrap();
    log.apply_retention(99 + 10 + 1).unwrap();
    assert_eq!(log.stats().segments, 1);
    // The start offset survives a reopen.
    let start = log.stats().start_offset;
    drop(log);
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.stats().start_offset, start);
}

#[test]
fn start_offset_advances_durably() {
    let (dir, log) = open_small();
    for _ in 0..50 {
        log.write_durable(&batch("x", 4, 0), 0).unwrap();
    }
    log.advance_start_offset(101).unwrap();
    assert_eq!(log.stats().start_offset, 101);
    assert!(log.read(100, 10).is_err());
    let r = log.read(101, 10).unwrap();
    assert!(values(&r).iter().any(|(o, _)| *o == 101));
    drop(log);
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.stats().start_offset, 101);
    assert!(log.stats().segments < 50);
}

#[test]
fn truncate_suffix_drops_batches_at_and_after_a_boundary() {
    let (dir, log) = open_small();
    for i in 0..100 {
        log.write_durable(&batch(&format!("b{i}"), 3, i), 0)
            .unwrap();
    }
    assert!(matches!(
        log.truncate_suffix(151),
        Err(LogError::NotBatchBoundary { offset: 151 })
    ));
    log.truncate_suffix(150).unwrap();
    assert_eq!(log.stats().next_offset, 150);
    let a = log.write_durable(&batch("new", 1, 0), 0).unwrap();
    assert_eq!(a.base_offset, 150);
    drop(log);
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert!(report.truncated.is_empty(), "{report}");
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 151);
    assert_eq!(all[150].1, b"new-0");
    assert_eq!(all[149].1, b"b49-2");
    // Truncating to the very start empties the log.
    log.truncate_suffix(0).unwrap();
    assert_eq!(log.stats().next_offset, 0);
    assert_eq!(
        log.write_durable(&batch("z", 1, 0), 0).unwrap().base_offset,
        0
    );
}

#[test]
fn invalid_input_gets_typed_errors_and_changes_nothing() {
    let (dir, log) = open_small();
    log.write_durable(&batch("ok", 1, 0), 0).unwrap();
    let mut bad = batch("bad", 2, 0);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let err = log.write_durable(&bad, 0).unwrap_err();
    assert_eq!(err.code(), spool_types::ErrorCode::CorruptBatch);
    assert!(log.write_durable(&[0u8; 10], 0).is_err());
    assert_eq!(log.stats().next_offset, 1);
    let bad_cfg = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    assert_eq!(
        Log::open(dir.path(), bad_cfg).unwrap_err().code(),
        spool_types::ErrorCode::InvalidConfig
    );
}

#[test]
fn always_readers_see_only_durable_offsets_and_interval_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        durability: Durability::Interval { interval_ms: 100 },
        ..small()
    };
    let (log, _) = Log::open(dir.path(), cfg).unwrap();
    log.write_durable(&batch("i", 1, 0), 1000).unwrap(); // first append: due, syncs
    log.write_durable(&batch("i", 1, 0), 1001).unwrap();
    let s = log.stats();
    assert_eq!((s.durable_offset, s.end_offset, s.next_offset), (1, 2, 2));
    log.sync_if_due(1050).unwrap();
    assert_eq!(log.stats().durable_offset, 1);
    log.sync_if_due(1101).unwrap();
    assert_eq!(log.stats().durable_offset, 2);
    // Under `always`, a written but unsynced batch is invisible.
    let (_dir2, log) = open_small();
    let (a, must_sync) = log.write(&batch("w", 1, 0), 0).unwrap();
    assert!(must_sync);
    assert!(log.read(0, 100).unwrap().bytes.is_empty());
    log.sync_to(a.next_offset()).unwrap();
    assert_eq!(read_all(&log, 0).len(), 1);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    let log = std::sync::Arc::new(log);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        log.write_durable(&batch(&format!("t{t}.{i}"), 1, 0), 0)
                            .unwrap()
                            .base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..800).collect::<Vec<_>>());
    assert_eq!(log.stats().durable_offset, 800);
}

#[test]
fn stray_files_are_cleaned_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(dir.path(), small()).unwrap();
        log.write_durable(&batch("a", 1, 0), 0).unwrap();
    }
    std::fs::write(dir.path().join("start-offset.tmp"), b"junk").unwrap();
    std::fs::write(dir.path().join("00000000000000000099.index"), b"junk").unwrap();
    // A segment whose creation crashed before its header was written.
    std::fs::write(dir.path().join("00000000000000000001.log"), b"").unwrap();
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(report.removed.len(), 3, "{report}");
    assert_eq!(read_all(&log, 0).len(), 1);
    assert_eq!(
        log.write_durable(&batch("b", 1, 0), 0).unwrap().base_offset,
        1
    );
}

#[test]
fn retained_bytes_follow_the_start_offset() {
    let (dir, log) = open_small();
    let one = sized(100, 7, 0).len() as u64;
    for _ in 0..100 {
        log.write_durable(&sized(100, 7, 0), 0).unwrap();
    }
    assert_eq!(log.stats().retained_bytes, 100 * one);
    log.advance_start_offset(30).unwrap();
    assert_eq!(log.stats().retained_bytes, 70 * one);
    drop(log);
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.stats().retained_bytes, 70 * one);
    log.advance_start_offset(100).unwrap();
    assert_eq!(log.stats().retained_bytes, 0);
}

#[test]
fn a_lone_headerless_segment_is_recreated_at_its_base() {
    let dir = tempfile::tempdir().unwrap();
    // A brand-new log that died while writing segment 42's header.
    std::fs::write(dir.path().join("00000000000000000042.log"), b"SPOO").unwrap();
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(report.removed.len(), 1, "{report}");
    assert_eq!(
        log.write_durable(&batch("a", 1, 0), 0).unwrap().base_offset,
        42
    );
}

/// While appenders run under `always`, a reader polling from offset 0 only
/// ever gets whole, CRC-checked batches below the durable offset, and each
/// offset keeps the value it was first read with.
#[test]
fn readers_during_group_commit_see_only_durable_whole_batches() {
    let (_dir, log) = open_small();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (acked, seen) = std::thread::scope(|s| {
        let appenders: Vec<_> = (0..8)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    (0..60)
                        .map(|i| {
                            let tag = format!("t{t}.{i}");
                            let a = log.write_durable(&batch(&tag, 1, 0), 0).unwrap();
                            (a.base_offset, format!("{tag}-0").into_bytes())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let mut seen: Vec<Vec<u8>> = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let durable = log.stats().durable_offset;
                let got = read_all(&log, 0);
                for (i, (offset, value)) in got.iter().enumerate() {
                    assert_eq!(*offset, i as i64);
                    match seen.get(i) {
                        Some(v) => assert_eq!(v, value, "offset {offset} changed"),
                        None => seen.push(value.clone()),
                    }
                }
                // What was durable before the read is all there.
                assert!(got.len() as i64 >= durable);
            }
            seen
        });
        let mut acked: Vec<(i64, Vec<u8>)> = appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        acked.sort();
        (acked, reader.join().unwrap())
    });
    let all = read_all(&log, 0);
    assert_eq!(all, acked);
    assert_eq!(
        &all.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()[..seen.len()],
        &seen[..]
    );
}

/// Changing the durability policy while appenders run (`always` writes
/// synced by group commit, `never`/`interval` writes that skip or defer the
/// sync, flushes and segment rolls all interleaved) keeps offsets dense and
/// every batch intact.
#[test]
fn switching_durability_while_appending_keeps_offsets_dense() {
    let (dir, log) = open_small();
    let policies = [
        Durability::Never,
        Durability::Always,
        Durability::Interval { interval_ms: 1 },
        Durability::Always,
    ];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut acked: Vec<(i64, Vec<u8>)> = std::thread::scope(|s| {
        let appenders: Vec<_> = (0..6)
            .map(|t| {
                let (log, stop) = (&log, &stop);
                s.spawn(move || {
                    let mut acked = Vec::new();
                    // At least 150 each, and on until the switching is over.
                    for i in 0.. {
                        if i >= 150 && stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let tag = format!("t{t}.{i}");
                        let a = log.write_durable(&batch(&tag, 1, 0), i).unwrap();
                        acked.push((a.base_offset, format!("{tag}-0").into_bytes()));
                    }
                    acked
                })
            })
            .collect();
        let switcher = s.spawn(|| {
            for n in 0..40 {
                let durability = policies[n % policies.len()];
                log.set_config(LogConfig {
                    durability,
                    ..small()
                })
                .unwrap();
                if n % 3 == 0 {
                    log.flush().unwrap();
                }
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        switcher.join().unwrap();
        appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    acked.sort();
    log.flush().unwrap();
    let s = log.stats();
    let n = acked.len() as i64;
    assert!(n >= 900);
    assert_eq!((s.next_offset, s.durable_offset), (n, n));
    assert!(s.segments > 3, "{s:?}");
    assert_eq!(read_all(&log, 0), acked);
    drop(log);
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(read_all(&log, 0), acked);
}
