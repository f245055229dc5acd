//! Throughput of the log against the raw capability of the disk it sits on,
//! measured in the same run so the ratios mean something.
//!
//! Run with `cargo bench -p spool-log --bench log`; results and the project's
//! targets are recorded in `BENCHMARKS.md` at the repository root.
//!
//! - `raw_disk`: sequential 1 MiB pwrites (no sync) and 4 KiB pwrite + fdatasync,
//!   both appending to a file, as the log does; and the device's synchronous
//!   append rate for the exact sizes of the `append` group's batches of
//!   1,000 records (pwrite of the batch's bytes + fdatasync, what `dd
//!   oflag=dsync` does), so that `always/…x1000` divided by
//!   `sync_append/…x1000` (both in batches per second) is the log's share
//!   of the device, measured in one run; and `sync_overwrite`, the same
//!   appends into blocks written and synced beforehand (what zeroing
//!   segments ahead of the writes would give).
//! - `append`: one appender (`Log::write_durable`: `write`, then `sync_to`
//!   when the policy asks), 100 B and 1 KiB records in batches of 1, 100 and
//!   1,000, under `never`, `interval` (5 ms) and `always`.
//! - `group_commit`: `always`, single 100 B records, 1 vs 64 appender threads
//!   each blocking in `write_durable` (group commit in `sync_to`).
//! - `group_commit_syncer`: the same through the path the server takes —
//!   `Log::write` + `Syncer::sync` with a completion — with 1 vs 64 appends in
//!   flight at once (the server's producers are tasks, not threads).
//! - `read`: whole batches from sealed segments (warm page cache), 1 MiB reads,
//!   and one-batch reads at each batch's offset (locate + read, as a queue
//!   receive or a small fetch does); and one-batch reads alternating between
//!   two sealed segments through a cache of one file, so that every read
//!   opens its segment's file again (the worst case of `SealedFileCache`).
//!
//! Every file lives in a temporary directory under the target directory, so on
//! the same filesystem as the repository.

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use spool_batch::{BatchBuilder, NewRecord};
use spool_log::{Durability, Log, LogConfig, SealedFileCache, Syncer, SYNCER_THREADS_DEFAULT};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A fresh directory on the repository's filesystem.
fn temp_dir() -> TempDir {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spool-log-bench");
    std::fs::create_dir_all(&root).expect("create bench root");
    tempfile::tempdir_in(&root).expect("create temp dir")
}

/// One batch of `count` records, each with a `value_bytes`-byte value and no key.
fn batch(value_bytes: usize, count: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let ts = now_ms();
    for i in 0..count {
        b.push(&NewRecord::value(vec![(i % 251) as u8; value_bytes], ts))
            .expect("push record");
    }
    b.finish().expect("finish batch")
}

fn open_log(dir: &TempDir, durability: Durability) -> Log {
    let config = LogConfig {
        durability,
        ..LogConfig::default()
    };
    Log::open(dir.path(), config).expect("open log").0
}

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The sampling settings of every benchmark here (flags such as
/// `--sample-size` still override them).
fn settings() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Counts each iteration as one write of `batch`, holding `records` records.
fn per_batch(group: &mut Group<'_>, batch: &[u8], records: usize) {
    group.throughput(Throughput::ElementsAndBytes {
        elements: records as u64,
        bytes: batch.len() as u64,
    });
}

fn raw_disk(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_disk");

    // Sequential write bandwidth: 1 MiB pwrites appended to one file, no sync
    // (what the log does under `never`).
    {
        let dir = temp_dir();
        let path = dir.path().join("seq.bin");
        let file = open_rw(&path);
        let block = vec![0x5au8; MIB];
        let mut pos = 0u64;
        group.throughput(Throughput::Bytes(MIB as u64));
        group.bench_function("seq_write_1MiB", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    file.write_all_at(&block, pos).expect("pwrite");
                    pos += MIB as u64;
                }
                start.elapsed()
            })
        });
    }

    // Synchronous write rate: 4 KiB pwrite appended, then fdatasync.
    {
        let dir = temp_dir();
        let path = dir.path().join("sync.bin");
        let file = open_rw(&path);
        let block = vec![0xa5u8; 4 * KIB];
        let mut pos = 0u64;
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: 4 * KIB as u64,
        });
        group.bench_function("pwrite_4KiB_fdatasync", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    file.write_all_at(&block, pos).expect("pwrite");
                    file.sync_data().expect("fdatasync");
                    pos += 4 * KIB as u64;
                }
                start.elapsed()
            })
        });
    }
    for (size_name, value_bytes) in [("100B", 100), ("1KiB", KIB)] {
        sync_append(&mut group, size_name, &batch(value_bytes, 1000));
        sync_overwrite(&mut group, size_name, &batch(value_bytes, 1000));
    }
    group.finish();
}

/// Bytes written (and synced) ahead of `sync_overwrite`'s appends.
const PREWRITTEN_BYTES: u64 = 1 << 30;

/// As [`sync_append`], but into a file whose blocks were written (zeros)
/// and synced beforehand, as a log that zeroes its segments ahead of its
/// writes (or recycles them) would append: the file neither grows nor
/// converts unwritten extents, so `fdatasync` has no metadata to write
/// (on ext4 without a journal, one synchronous inode write fewer).
fn sync_overwrite(group: &mut Group<'_>, size_name: &str, bytes: &[u8]) {
    let dir = temp_dir();
    let file = open_rw(&dir.path().join("sync_overwrite.bin"));
    let zeros = vec![0u8; MIB];
    let mut at = 0u64;
    while at < PREWRITTEN_BYTES {
        file.write_all_at(&zeros, at).expect("prewrite");
        at += MIB as u64;
    }
    file.sync_all().expect("fsync");
    let mut pos = 0u64;
    per_batch(group, bytes, 1000);
    group.bench_function(format!("sync_overwrite/{size_name}x1000"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                if pos + bytes.len() as u64 > PREWRITTEN_BYTES {
                    pos = 0;
                }
                file.write_all_at(bytes, pos).expect("pwrite");
                file.sync_data().expect("fdatasync");
                pos += bytes.len() as u64;
            }
            start.elapsed()
        })
    });
}

/// The device's rate of synchronous appends of `bytes.len()` bytes: pwrite
/// at the end of a file, then fdatasync (the file grows with every append,
/// as a log segment does).
fn sync_append(group: &mut Group<'_>, size_name: &str, bytes: &[u8]) {
    let dir = temp_dir();
    let file = open_rw(&dir.path().join("sync_append.bin"));
    let mut pos = 0u64;
    per_batch(group, bytes, 1000);
    group.bench_function(format!("sync_append/{size_name}x1000"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                file.write_all_at(bytes, pos).expect("pwrite");
                file.sync_data().expect("fdatasync");
                pos += bytes.len() as u64;
            }
            start.elapsed()
        })
    });
}

fn open_rw(path: &std::path::Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("open file")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let policies = [
        ("never", Durability::Never),
        ("interval5ms", Durability::Interval { interval_ms: 5 }),
        ("always", Durability::Always),
    ];
    for (name, durability) in policies {
        for (size_name, value_bytes) in [("100B", 100), ("1KiB", KIB)] {
            for count in [1usize, 100, 1000] {
                let dir = temp_dir();
                let log = open_log(&dir, durability);
                let batch = batch(value_bytes, count);
                per_batch(&mut group, &batch, count);
                let id = format!("{name}/{size_name}x{count}");
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(log.write_durable(&batch, now_ms()).expect("append"));
                        }
                        start.elapsed()
                    })
                });
                drop(log);
            }
        }
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    for appenders in [1usize, 64] {
        let dir = temp_dir();
        let log = open_log(&dir, Durability::Always);
        let template = batch(100, 1);
        per_batch(&mut group, &template, 1);
        let id = format!("always_100B/appenders={appenders}");
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                // Each iteration is one acknowledged append, shared out among
                // the appender threads.
                let per_thread = |t: usize| {
                    iters / appenders as u64 + u64::from((t as u64) < iters % appenders as u64)
                };
                let barrier = Barrier::new(appenders + 1);
                std::thread::scope(|s| {
                    for t in 0..appenders {
                        let (log, barrier, batch) = (&log, &barrier, template.clone());
                        s.spawn(move || {
                            barrier.wait();
                            for _ in 0..per_thread(t) {
                                black_box(log.write_durable(&batch, now_ms()).expect("append"));
                            }
                        });
                    }
                    barrier.wait();
                    let start = Instant::now();
                    // Leaving the scope joins every appender.
                    start
                })
                .elapsed()
            })
        });
        drop(log);
    }
    group.finish();
}

fn group_commit_syncer(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit_syncer");
    let syncer = Syncer::new(SYNCER_THREADS_DEFAULT).expect("start syncer");
    for in_flight in [1usize, 64] {
        let dir = temp_dir();
        let log = Arc::new(open_log(&dir, Durability::Always));
        let template = batch(100, 1);
        per_batch(&mut group, &template, 1);
        let id = format!("always_100B/in_flight={in_flight}");
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                // Each iteration is one acknowledged append. One driver keeps
                // `in_flight` appends outstanding, starting a new one as each
                // is acknowledged — what `in_flight` producer tasks do.
                let (acked_tx, acked_rx) = mpsc::channel::<()>();
                let batch = template.clone();
                let start_one = || {
                    let (appended, _) = log.write(&batch, now_ms()).expect("write");
                    let acked_tx = acked_tx.clone();
                    syncer.sync(
                        &log,
                        appended.next_offset(),
                        Box::new(move |r| {
                            r.expect("sync");
                            let _ = acked_tx.send(());
                        }),
                    );
                };
                let start = Instant::now();
                let mut started = 0u64;
                while started < iters.min(in_flight as u64) {
                    start_one();
                    started += 1;
                }
                for _ in 0..iters {
                    acked_rx.recv().expect("ack");
                    if started < iters {
                        start_one();
                        started += 1;
                    }
                }
                start.elapsed()
            })
        });
        drop(log);
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    // 160 MiB of 1 KiB records in batches of 100 (~103 KB each), rolled into
    // 32 MiB segments; everything below the active segment is sealed.
    let dir = temp_dir();
    let config = LogConfig {
        durability: Durability::Never,
        segment_bytes: 32 * MIB as u64,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).expect("open log").0;
    let b = batch(KIB, 100);
    let mut written = 0usize;
    while written < 160 * MIB {
        log.write(&b, now_ms()).expect("write");
        written += b.len();
    }
    log.flush().expect("flush");
    let mut bases: Vec<(i64, u64)> = std::fs::read_dir(dir.path())
        .expect("list log dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let base = spool_log::parse_segment_name(e.file_name().to_str()?)?;
            Some((base, e.metadata().ok()?.len()))
        })
        .collect();
    bases.sort_unstable();
    let active_base = bases.last().map_or(0, |b| b.0);
    // Sealed bytes, less each segment's 24-byte file header.
    let sealed_bytes: u64 = bases[..bases.len() - 1].iter().map(|b| b.1 - 24).sum();
    group.throughput(Throughput::ElementsAndBytes {
        elements: active_base as u64,
        bytes: sealed_bytes,
    });
    // One iteration reads every sealed segment once, front to back.
    group.bench_function("sealed_segments_1MiB_reads", |bench| {
        bench.iter(|| {
            let mut offset = 0i64;
            let mut bytes = 0usize;
            while offset < active_base {
                let r = log.read(offset, MIB).expect("read");
                bytes += r.bytes.len();
                offset = r.next_offset;
            }
            assert_eq!(bytes as u64, sealed_bytes);
            black_box(bytes)
        })
    });
    // One batch per read, at each batch's first offset: what a queue receive
    // or a consumer fetching small amounts does. Locating the batch walks
    // headers from an index entry; this measures that walk plus the read.
    let batches = active_base as u64 / 100;
    group.throughput(Throughput::Elements(batches));
    group.bench_function("sealed_one_batch_reads", |bench| {
        bench.iter(|| {
            let mut offset = 0i64;
            let mut reads = 0u64;
            while offset < active_base {
                let r = log.read(offset, 1).expect("read");
                offset = r.next_offset;
                reads += 1;
            }
            assert_eq!(reads, batches);
            black_box(reads)
        })
    });
    drop(log);
    // The same log through a cache of one file: reads alternate between the
    // first and the last sealed segment, each one a miss.
    let cache = Arc::new(SealedFileCache::new(1));
    let log = Log::open_with_cache(dir.path(), config, Arc::clone(&cache))
        .expect("reopen log")
        .0;
    let last_sealed = bases[bases.len() - 2].0;
    group.throughput(Throughput::Elements(2 * 1000));
    group.bench_function("sealed_one_batch_reads_every_one_a_miss", |bench| {
        bench.iter(|| {
            let misses = cache.misses();
            for i in 0..1000i64 {
                for base in [0, last_sealed] {
                    // 300 batches of 100 records fit in one segment.
                    black_box(log.read(base + 100 * (i % 300), 1).expect("read"));
                }
            }
            assert!(cache.misses() - misses >= 1999);
        })
    });
    drop(log);
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = raw_disk, append, group_commit, group_commit_syncer, read
}
criterion_main!(benches);
