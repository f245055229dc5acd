//! Model-based test: random sequences of writes (synced by `sync_to`, by a
//! `Syncer` completion, or left unsynced for a later sync to cover), reads,
//! reopens, retention, start-offset moves and suffix truncation, compared
//! with a plain Vec and a durable watermark. The log is `always`, written
//! by the path the server takes (`write`, then `sync_to` or a `Syncer`).
//! Sealed segments' files go through a cache of one to three files, so
//! reads keep closing and reopening them; only the active segment's files
//! stay open.

use crate::support::*;
use proptest::prelude::*;
use spool_log::{Log, LogConfig, SealedFileCache, Syncer, SEGMENT_FILES};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    /// Write one batch and wait until it is durable.
    Append {
        records: usize,
        size: usize,
        via_syncer: bool,
    },
    /// Write one batch and do not sync it: only a later sync covers it.
    WriteOnly {
        records: usize,
        size: usize,
    },
    Read {
        at: f64,
        max_bytes: usize,
    },
    Reopen,
    Retain {
        bytes: u64,
    },
    AdvanceStart {
        at: f64,
    },
    Truncate {
        at: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..6, 0usize..300, any::<bool>()).prop_map(|(records, size, via_syncer)| {
            Op::Append { records, size, via_syncer }
        }),
        2 => (1usize..6, 0usize..300).prop_map(|(records, size)| Op::WriteOnly { records, size }),
        3 => (0.0..1.0f64, 1usize..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::Reopen),
        1 => (1000u64..8000).prop_map(|bytes| Op::Retain { bytes }),
        1 => (0.0..1.0f64).prop_map(|at| Op::AdvanceStart { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Truncate { at }),
    ]
}

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 100,
        retention_bytes,
        ..LogConfig::default()
    }
}

/// Drops the log once the syncer's thread, which may hold it for a moment
/// after running a completion, has let go of it too.
fn close(mut log: Arc<Log>) {
    loop {
        match Arc::try_unwrap(log) {
            Ok(log) => return drop(log),
            Err(shared) => {
                log = shared;
                std::thread::yield_now();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60), files in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Syncer::new(1).unwrap();
        let cache = Arc::new(SealedFileCache::new(files));
        let open = || Log::open_with_cache(dir.path(), config(None), Arc::clone(&cache));
        let mut log = Arc::new(open().unwrap().0);
        // The model: every record's value by offset, batch boundaries,
        // start, and the offset below which everything is durable.
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut boundaries: Vec<i64> = Vec::new();
        let mut start = 0i64;
        let mut durable = 0i64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append { records, size, .. } | Op::WriteOnly { records, size } => {
                    let mut b = spool_batch::BatchBuilder::new();
                    for i in 0..records {
                        let v = format!("{step}.{i}.{}", "x".repeat(size)).into_bytes();
                        b.push(&spool_batch::NewRecord::value(v.clone(), step as i64)).unwrap();
                        values.push(v);
                    }
                    let batch = b.finish().unwrap();
                    let segments = log.stats().segments;
                    let (a, must_sync) = log.write(&batch, 0).unwrap();
                    prop_assert!(must_sync, "an `always` write must be synced");
                    prop_assert_eq!(a.base_offset as usize, values.len() - records);
                    boundaries.push(a.base_offset);
                    if log.stats().segments > segments {
                        // A roll seals (and syncs) everything before the batch.
                        durable = a.base_offset;
                    }
                    // Written, not yet synced: readers must not see it.
                    prop_assert_eq!(log.stats().durable_offset, durable);
                    prop_assert_eq!(log.stats().end_offset, durable);
                    let synced = match op {
                        Op::Append { via_syncer: true, .. } => {
                            let (tx, rx) = mpsc::channel();
                            syncer.sync(&log, a.next_offset(), Box::new(move |r| {
                                let _ = tx.send(r.map_err(|e| e.to_string()));
                            }));
                            let told = rx.recv_timeout(Duration::from_secs(30));
                            prop_assert_eq!(told, Ok(Ok(())));
                            true
                        }
                        Op::Append { .. } => {
                            log.sync_to(a.next_offset()).unwrap();
                            true
                        }
                        _ => false,
                    };
                    if synced {
                        // The sync covered this batch and any written before it.
                        prop_assert!(log.is_durable_to(a.next_offset()));
                        durable = a.next_offset();
                    }
                }
                Op::Read { at, max_bytes } => {
                    let offset = start + ((values.len() as i64 - start) as f64 * at) as i64;
                    let r = log.read(offset, max_bytes).unwrap();
                    let got = crate::support::values(&r);
                    // Whatever is durable is readable; nothing else is.
                    prop_assert_eq!(got.is_empty(), offset >= durable);
                    for (o, v) in got {
                        prop_assert!(o < durable, "read offset {} past durable {}", o, durable);
                        prop_assert_eq!(&v, &values[o as usize]);
                    }
                }
                Op::Reopen => {
                    close(log);
                    prop_assert!(cache.is_empty(), "a closed log's files stay in the cache");
                    let (l, report) = open().unwrap();
                    prop_assert!(report.truncated.is_empty(), "{}", report);
                    log = Arc::new(l);
                    // A process exit leaves unsynced writes in the page cache;
                    // recovery keeps them and syncs them.
                    durable = values.len() as i64;
                }
                Op::Retain { bytes } => {
                    log.set_config(config(Some(bytes))).unwrap();
                    log.apply_retention(0).unwrap();
                    log.set_config(config(None)).unwrap();
                    let s = log.stats();
                    prop_assert!(s.start_offset >= start);
                    start = s.start_offset;
                }
                Op::AdvanceStart { at } => {
                    let target = start + ((values.len() as i64 - start) as f64 * at) as i64;
                    log.advance_start_offset(target).unwrap();
                    start = start.max(target);
                    prop_assert_eq!(log.stats().start_offset, start);
                }
                Op::Truncate { at } => {
                    let candidates: Vec<i64> = boundaries.iter().copied().filter(|b| *b >= start).collect();
                    if candidates.is_empty() { continue; }
                    let to = candidates[((candidates.len() as f64) * at) as usize % candidates.len()];
                    log.truncate_suffix(to).unwrap();
                    values.truncate(to as usize);
                    boundaries.retain(|b| *b < to);
                    durable = durable.min(to);
                }
            }
            let s = log.stats();
            prop_assert_eq!(s.next_offset, values.len() as i64);
            prop_assert_eq!(s.start_offset, start);
            prop_assert_eq!(s.durable_offset, durable);
            prop_assert_eq!(s.end_offset, durable);
            prop_assert!(log.open_files() <= SEGMENT_FILES);
            prop_assert!(cache.len() <= files);
        }
        log.flush().unwrap();
        prop_assert_eq!(log.stats().durable_offset, values.len() as i64);
        let all = read_all(&log, start);
        prop_assert_eq!(all.len() as i64, values.len() as i64 - start);
        for (o, v) in all {
            prop_assert_eq!(&v, &values[o as usize]);
        }
    }
}
