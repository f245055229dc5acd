//! The per-record costs on the produce path: a client encoding records into
//! a batch (`BatchBuilder`), and a server checking an untrusted batch
//! (`validate`: CRC-32C and every record) or a queue finding one record in
//! a stored batch (`skip_records` against decoding every record before it,
//! and successive receives resuming where the last one stopped).
//!
//! Run with `cargo bench -p spool-batch --bench batch`; results are in
//! `BENCHMARKS.md`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use spool_batch::{records, validate, BatchBuilder, RecordIter, RecordParts};
use std::hint::black_box;
use std::time::Duration;

const RECORDS: usize = 1000;

fn build(value: &[u8], builder: BatchBuilder) -> Vec<u8> {
    let mut b = builder;
    for i in 0..RECORDS {
        let parts = RecordParts {
            key: None,
            value: Some(value),
            headers: &[],
            timestamp_ms: 1_700_000_000_000 + i as i64,
        };
        b.push_parts(&parts).expect("push");
    }
    b.finish().expect("finish")
}

/// A benchmark group with 20 samples over 2 s (after 0.5 s of warm-up).
fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn encode(c: &mut Criterion) {
    let mut group = group(c, "encode_1000_records");
    for size in [100usize, 1024] {
        let value = vec![b'x'; size];
        group.throughput(Throughput::Elements(RECORDS as u64));
        // A builder that grows from empty, against one started at the size
        // the batch will have (what the producer does after its first batch).
        group.bench_function(format!("{size}B_growing"), |b| {
            b.iter(|| black_box(build(&value, BatchBuilder::new())))
        });
        let full = build(&value, BatchBuilder::new()).len();
        group.bench_function(format!("{size}B_presized"), |b| {
            b.iter(|| black_box(build(&value, BatchBuilder::with_capacity(full))))
        });
    }
    group.finish();
}

fn check(c: &mut Criterion) {
    let mut group = group(c, "check_1000_records");
    for size in [100usize, 1024] {
        let batch = build(&vec![b'x'; size], BatchBuilder::new());
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function(format!("{size}B_validate"), |b| {
            b.iter(|| black_box(validate(black_box(&batch)).expect("valid")))
        });
        let header = validate(&batch).expect("valid");
        // The last record: decoding every one before it, or skipping them.
        group.bench_function(format!("{size}B_last_by_decoding"), |b| {
            b.iter(|| black_box(records(&batch, &header).last()))
        });
        group.bench_function(format!("{size}B_last_by_skipping"), |b| {
            b.iter(|| {
                let mut it = records(&batch, &header);
                it.skip_records(RECORDS - 1).expect("skip");
                black_box(it.next())
            })
        });
        // A queue's receives of 100 messages each, in turn through the
        // batch: each passing over the records before its own again, or
        // resuming where the previous one stopped (`RecordIter::resume`).
        group.bench_function(format!("{size}B_ten_reads_of_100_by_skipping"), |b| {
            b.iter(|| {
                for k in 0..10 {
                    let mut it = records(&batch, &header);
                    it.skip_records(k * 100).expect("skip");
                    black_box(it.by_ref().take(100).count());
                }
            })
        });
        group.bench_function(format!("{size}B_ten_reads_of_100_by_resuming"), |b| {
            b.iter(|| {
                let mut at = None;
                for _ in 0..10 {
                    let mut it = match at {
                        Some(at) => RecordIter::resume(&batch, &header, at).expect("resume"),
                        None => records(&batch, &header),
                    };
                    black_box(it.by_ref().take(100).count());
                    at = Some(it.position());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, check);
criterion_main!(benches);
