//! Model-based test of entry mode: random sequences of data and control
//! entries (synced or not), entry reads, commits with offset reads,
//! truncations, purges, resets and reopens, compared with a plain Vec of
//! (index, term, base offset, record count, batch bytes, values).

use crate::entries::{entry_config, read_all_skipping_control};
use proptest::prelude::*;
use spool_batch::{control_batch, BatchBuilder, NewRecord};
use spool_log::{Durability, EntryId, Log, LogConfig, LogError};

#[derive(Debug, Clone)]
enum Op {
    Data {
        records: usize,
        size: usize,
        new_term: bool,
        sync: bool,
    },
    Control {
        size: usize,
        sync: bool,
    },
    Read {
        at: f64,
        max_entries: usize,
        max_bytes: usize,
    },
    Commit {
        at: f64,
    },
    Truncate {
        at: f64,
    },
    Purge {
        at: f64,
    },
    Reset {
        index_gap: u64,
        offset_gap: i64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..5, 0usize..200, proptest::bool::weighted(0.1), any::<bool>())
            .prop_map(|(records, size, new_term, sync)| Op::Data { records, size, new_term, sync }),
        2 => (0usize..400, any::<bool>()).prop_map(|(size, sync)| Op::Control { size, sync }),
        2 => (0.0..1.0f64, 1usize..8, 1usize..1500)
            .prop_map(|(at, max_entries, max_bytes)| Op::Read { at, max_entries, max_bytes }),
        2 => (0.0..1.0f64).prop_map(|at| Op::Commit { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Truncate { at }),
        1 => (0.0..1.0f64).prop_map(|at| Op::Purge { at }),
        1 => Just(Op::Reopen),
        1 => prop_oneof![
            15 => Just(Op::Reopen),
            1 => (0u64..5, 0i64..5).prop_map(|(index_gap, offset_gap)| Op::Reset { index_gap, offset_gap }),
        ],
    ]
}

/// Durability `never`, so that what offset readers see depends on the
/// commit cap alone; syncs are explicit (`sync` of the write ops).
fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 100,
        durability: Durability::Never,
        ..entry_config()
    }
}

/// One entry as the model knows it.
#[derive(Debug, Clone)]
struct Entry {
    index: u64,
    term: u64,
    base_offset: i64,
    records: i64,
    batch: Vec<u8>,
    values: Vec<Vec<u8>>,
}

/// The log as it should be: its entries, and where the next one goes.
struct Model {
    entries: Vec<Entry>,
    first_index: u64,
    next_offset: i64,
    term: u64,
    /// What offset readers may see: below this (and the start offset the
    /// log reports, which a purge moves).
    committed: i64,
}

impl Model {
    fn next_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    /// A stored index, `at` of the way from the first to the last.
    fn pick(&self, at: f64) -> Option<u64> {
        let n = self.entries.len();
        (n > 0).then(|| self.first_index + ((n as f64 * at) as u64).min(n as u64 - 1))
    }

    fn write(
        &mut self,
        log: &Log,
        batch: Vec<u8>,
        values: Vec<Vec<u8>>,
        sync: bool,
    ) -> Result<(), TestCaseError> {
        let records = values.len() as i64;
        let appended = log.write_entry(&batch, self.term, 0).unwrap();
        prop_assert_eq!(appended.index, self.next_index());
        prop_assert_eq!(appended.base_offset, self.next_offset);
        prop_assert_eq!(appended.next_offset, self.next_offset + records);
        self.entries.push(Entry {
            index: appended.index,
            term: self.term,
            base_offset: self.next_offset,
            records,
            batch,
            values,
        });
        self.next_offset += records;
        if sync {
            log.sync_to(appended.next_offset).unwrap();
            prop_assert!(log.is_durable_to(appended.next_offset));
        }
        Ok(())
    }

    /// Everything the log answers agrees with the model.
    fn check(&self, log: &Log) -> Result<(), TestCaseError> {
        let bounds = log.entry_bounds().unwrap();
        prop_assert_eq!(bounds.first_index, self.first_index);
        let last = self.entries.last().map(|e| EntryId {
            index: e.index,
            term: e.term,
        });
        prop_assert_eq!(bounds.last, last);
        prop_assert_eq!(log.stats().next_offset, self.next_offset);
        let stored = match last {
            Some(_) => log
                .read_entries(self.first_index, usize::MAX, usize::MAX)
                .unwrap(),
            None => vec![],
        };
        prop_assert_eq!(stored.len(), self.entries.len());
        for (got, want) in stored.iter().zip(&self.entries) {
            self.check_entry(got, want)?;
        }
        prop_assert_eq!(log.entry_term(self.next_index()).unwrap(), None);
        self.check_offset_reads(log)
    }

    /// Offset readers see exactly the committed records from the start
    /// (everything below the start counts as committed).
    fn check_offset_reads(&self, log: &Log) -> Result<(), TestCaseError> {
        let stats = log.stats();
        let committed = self.committed.max(stats.start_offset);
        prop_assert_eq!(stats.end_offset, committed.min(self.next_offset));
        let mut want = Vec::new();
        for e in &self.entries {
            for (i, v) in e.values.iter().enumerate() {
                let offset = e.base_offset + i as i64;
                if offset >= stats.start_offset && offset < stats.end_offset {
                    want.push((offset, v.clone()));
                }
            }
        }
        prop_assert_eq!(read_all_skipping_control(log, stats.start_offset), want);
        Ok(())
    }

    fn check_entry(&self, got: &spool_log::StoredEntry, want: &Entry) -> Result<(), TestCaseError> {
        prop_assert_eq!(got.index, want.index);
        prop_assert_eq!(got.term, want.term);
        prop_assert_eq!(got.base_offset, want.base_offset);
        // The stored batch is the written one but for its base offset and term.
        prop_assert_eq!(&got.batch[16..], &want.batch[16..]);
        let header = spool_batch::BatchHeader::parse_with_control(&got.batch).unwrap();
        prop_assert_eq!(header.next_offset() - header.base_offset, want.records);
        Ok(())
    }
}

fn data_batch(step: usize, records: usize, size: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut b = BatchBuilder::new();
    let mut values = Vec::new();
    for i in 0..records {
        let value = format!("{step}.{i}.{}", "x".repeat(size)).into_bytes();
        b.push(&NewRecord::value(value.clone(), step as i64))
            .unwrap();
        values.push(value);
    }
    (b.finish().unwrap(), values)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn entry_log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Log::open(dir.path(), config()).unwrap();
        let mut log = open().0;
        let mut model = Model { entries: vec![], first_index: 1, next_offset: 0, term: 1, committed: 0 };
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Data { records, size, new_term, sync } => {
                    model.term += u64::from(new_term);
                    let (batch, values) = data_batch(step, records, size);
                    model.write(&log, batch, values, sync)?;
                }
                Op::Control { size, sync } => {
                    let body = format!("{step}:{}", "m".repeat(size));
                    let batch = control_batch(body.as_bytes(), step as i64).unwrap();
                    model.write(&log, batch, vec![], sync)?;
                }
                Op::Read { at, max_entries, max_bytes } => {
                    let Some(from) = model.pick(at) else { continue };
                    let got = log.read_entries(from, max_entries, max_bytes).unwrap();
                    prop_assert!(!got.is_empty() && got.len() <= max_entries);
                    let total: usize = got.iter().map(|e| e.batch.len()).sum();
                    prop_assert!(got.len() == 1 || total <= max_bytes);
                    let skip = (from - model.first_index) as usize;
                    for (g, w) in got.iter().zip(&model.entries[skip..]) {
                        model.check_entry(g, w)?;
                    }
                }
                Op::Commit { at } => {
                    let Some(index) = model.pick(at) else { continue };
                    let e = &model.entries[(index - model.first_index) as usize];
                    let end = e.base_offset + e.records;
                    log.set_committed_end(end);
                    model.committed = model.committed.max(end);
                }
                Op::Truncate { at } => {
                    // Anywhere from the first entry to just past the last.
                    let n = model.entries.len() as u64;
                    let index = model.first_index + ((n + 1) as f64 * at) as u64;
                    let keep = (index - model.first_index) as usize;
                    let result = log.truncate_entries_from(index);
                    match model.entries.get(keep) {
                        Some(e) if e.base_offset < model.committed => {
                            let refused = matches!(result, Err(LogError::BelowCommitted { .. }));
                            prop_assert!(refused, "{:?}", result);
                        }
                        Some(e) => {
                            result.unwrap();
                            model.next_offset = e.base_offset;
                            model.entries.truncate(keep);
                        }
                        None => result.unwrap(),
                    }
                }
                Op::Purge { at } => {
                    let Some(index) = model.pick(at) else { continue };
                    log.purge_entries_to(index).unwrap();
                    let first = log.entry_bounds().unwrap().first_index;
                    prop_assert!(first >= model.first_index);
                    prop_assert!(first <= index + 1 || first == model.first_index);
                    // The active segment stays, and with it its entries
                    // (it holds none after a truncation to its first one).
                    prop_assert!(first <= model.next_index());
                    model.entries.drain(..(first - model.first_index) as usize);
                    model.first_index = first;
                }
                Op::Reset { index_gap, offset_gap } => {
                    let next_index = model.next_index() + index_gap;
                    let next_offset = model.next_offset + offset_gap;
                    log.reset_entries(next_index, next_offset).unwrap();
                    model.entries.clear();
                    model.first_index = next_index;
                    model.next_offset = next_offset;
                    model.committed = next_offset;
                }
                Op::Reopen => {
                    drop(log);
                    let (l, report) = open();
                    prop_assert!(report.truncated.is_empty(), "{}", report);
                    prop_assert!(report.rebuilt_indexes.is_empty(), "{}", report);
                    log = l;
                    // The commit cap starts again at the start offset.
                    model.committed = log.stats().start_offset;
                }
            }
            model.check(&log)?;
        }
        log.flush().unwrap();
        prop_assert!(log.is_durable_to(model.next_offset));
        drop(log);
        let log = open().0;
        model.committed = log.stats().start_offset;
        model.check(&log)?;
    }
}
