//! Model-based test: random sequences of append, read, reopen, retention,
//! start-offset moves and suffix truncation, compared with a plain Vec.

use crate::support::*;
use proptest::prelude::*;
use spool_log::{Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, size: usize },
    Read { at: f64, max_bytes: usize },
    Reopen,
    Retain { bytes: u64 },
    AdvanceStart { at: f64 },
    Truncate { at: f64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..300).prop_map(|(records, size)| Op::Append { records, size }),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), config(None)).unwrap();
        // The model: every record's value by offset, batch boundaries, start.
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut boundaries: Vec<i64> = Vec::new();
        let mut start = 0i64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append { records, size } => {
                    let mut b = spool_batch::BatchBuilder::new();
                    for i in 0..records {
                        let v = format!("{step}.{i}.{}", "x".repeat(size)).into_bytes();
                        b.push(&spool_batch::NewRecord::value(v.clone(), step as i64)).unwrap();
                        values.push(v);
                    }
                    let a = log.append(&mut b.finish().unwrap(), 0).unwrap();
                    prop_assert_eq!(a.base_offset as usize, values.len() - records);
                    boundaries.push(a.base_offset);
                }
                Op::Read { at, max_bytes } => {
                    let offset = start + ((values.len() as i64 - start) as f64 * at) as i64;
                    let r = log.read(offset, max_bytes).unwrap();
                    let got = crate::support::values(&r);
                    if offset < values.len() as i64 {
                        prop_assert!(!got.is_empty());
                    }
                    for (o, v) in got {
                        prop_assert_eq!(&v, &values[o as usize]);
                    }
                }
                Op::Reopen => {
                    drop(log);
                    let (l, report) = Log::open(dir.path(), config(None)).unwrap();
                    prop_assert!(report.truncated.is_empty(), "{}", report);
                    log = l;
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
                }
            }
            let s = log.stats();
            prop_assert_eq!(s.next_offset, values.len() as i64);
            prop_assert_eq!(s.start_offset, start);
        }
        let all = read_all(&log, start);
        prop_assert_eq!(all.len() as i64, values.len() as i64 - start);
        for (o, v) in all {
            prop_assert_eq!(&v, &values[o as usize]);
        }
    }
}
