//! Crash simulation: torn tails at every byte, random bit flips, and a real
//! child process SIGKILLed while appending under `always` through the
//! server's path (`write`, then `sync_to` or a `Syncer` completion).

use crate::support::*;
use proptest::prelude::*;
use spool_log::{Appended, Log, LogConfig, LogError, Syncer};
use std::io::BufRead;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// Cutting the last batch at every byte boundary recovers exactly the batches
/// before it, reports the cut, and the log accepts appends again.
#[test]
fn torn_last_batch_at_every_byte_boundary() {
    let original = tempfile::tempdir().unwrap();
    let expected;
    {
        let (log, _) = Log::open(original.path(), LogConfig::default()).unwrap();
        for i in 0..5 {
            log.write_durable(&batch(&format!("b{i}"), 3, i), 0)
                .unwrap();
        }
        expected = read_all(&log, 0);
        log.write_durable(&batch("last", 4, 9), 0).unwrap();
    }
    let seg = active_segment(original.path());
    let full = std::fs::metadata(&seg).unwrap().len();
    let last_len = batch("last", 4, 9).len() as u64;
    for cut in (full - last_len)..full {
        let work = tempfile::tempdir().unwrap();
        copy_dir(original.path(), work.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(active_segment(work.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let (log, report) = Log::open(work.path(), LogConfig::default()).unwrap();
        assert_eq!(read_all(&log, 0), expected, "cut at {cut}");
        assert_eq!(
            report.truncated.len(),
            usize::from(cut > full - last_len),
            "cut at {cut}: {report}"
        );
        assert_eq!(
            log.write_durable(&batch("again", 1, 0), 0)
                .unwrap()
                .base_offset,
            15
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A flipped bit anywhere: the log either refuses to open naming the file
    /// and position, or recovers a prefix of what was written; reads never
    /// return a record that was not written, and fail with `Corrupt` instead.
    #[test]
    fn bit_flips_never_serve_corrupt_data(file_pick in any::<usize>(), pos_pick in any::<u64>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let written;
        {
            let (log, _) = Log::open(dir.path(), small()).unwrap();
            for i in 0..40 {
                log.write_durable(&batch(&format!("w{i}"), 2, i), 0).unwrap();
            }
            written = read_all(&log, 0);
        }
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let target = &files[file_pick % files.len()];
        let mut bytes = std::fs::read(target).unwrap();
        if bytes.is_empty() { return Ok(()); }
        let at = (pos_pick % bytes.len() as u64) as usize;
        bytes[at] ^= 1 << bit;
        std::fs::write(target, &bytes).unwrap();
        match Log::open(dir.path(), small()) {
            Err(LogError::Corrupt { path, .. }) => prop_assert_eq!(&path, target),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
            Ok((log, _report)) => {
                let end = log.stats().end_offset;
                let mut offset = 0;
                let mut got = Vec::new();
                while offset < end {
                    match log.read(offset, 1 << 16) {
                        Ok(r) if r.bytes.is_empty() => break,
                        Ok(r) => { got.extend(values(&r).into_iter().filter(|(o, _)| *o >= offset)); offset = r.next_offset; }
                        Err(LogError::Corrupt { .. }) => break,
                        Err(other) => prop_assert!(false, "unexpected read error {other}"),
                    }
                }
                prop_assert!(got.len() <= written.len());
                prop_assert_eq!(&got[..], &written[..got.len()]);
            }
        }
    }
}

/// Not run on its own: the body of the child process for the SIGKILL test.
/// It writes batches from 4 threads under `always` by the path the server
/// takes and prints one line per batch acknowledged as durable:
/// `ack <base offset> <record count> <tag>`. Threads 0 and 1 call
/// `Log::write` and then `Log::sync_to`; threads 2 and 3 call `Log::write`
/// and hand the wait to a `Syncer`, keeping up to 8 batches in flight each
/// (as producer tasks do), and print from the completion.
#[test]
#[ignore = "child process of sigkill_during_always_appends_loses_nothing_acknowledged"]
fn crash_child() {
    let Ok(dir) = std::env::var("SPOOL_LOG_CRASH_DIR") else {
        return;
    };
    let (log, _) = Log::open(
        Path::new(&dir),
        LogConfig {
            segment_bytes: 64 * 1024,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let log = Arc::new(log);
    let syncer = Arc::new(Syncer::new(2).unwrap());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let seed = std::process::id();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (log, syncer, out) = (log.clone(), syncer.clone(), out.clone());
            std::thread::spawn(move || {
                // Completions give back their slot here.
                let (slot_tx, slot_rx) = mpsc::channel::<()>();
                let mut in_flight = 0;
                for i in 0u32.. {
                    let tag = format!("{seed}.{t}.{i}");
                    let n = 1 + (i as usize * 7 + t as usize) % 5;
                    let b = batch(&tag, n, i as i64);
                    let (a, must_sync) = log.write(&b, 0).unwrap();
                    assert!(must_sync, "an `always` write must be synced");
                    if t < 2 {
                        log.sync_to(a.next_offset()).unwrap();
                        ack(&out, &log, a, n, &tag);
                        continue;
                    }
                    if in_flight == 8 {
                        slot_rx.recv().unwrap();
                        in_flight -= 1;
                    }
                    let (out, slot_tx, log2) = (out.clone(), slot_tx.clone(), log.clone());
                    syncer.sync(
                        &log,
                        a.next_offset(),
                        Box::new(move |r| {
                            match r {
                                Ok(()) => ack(&out, &log2, a, n, &tag),
                                Err(e) => eprintln!("sync of {tag} failed: {e}"),
                            }
                            let _ = slot_tx.send(());
                        }),
                    );
                    in_flight += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// One acknowledgement line of [`crash_child`], flushed at once: the parent
/// counts what it read before the SIGKILL as acknowledged. A batch the log
/// does not count as fdatasync'd when its wait ended is reported instead,
/// and fails the parent: a SIGKILL leaves the page cache, so only the log's
/// own account can show a sync that returned too early.
fn ack(out: &Mutex<std::io::Stdout>, log: &Log, a: Appended, n: usize, tag: &str) {
    use std::io::Write;
    let mut out = out.lock().unwrap();
    if log.is_durable_to(a.next_offset()) {
        writeln!(out, "ack {} {n} {tag}", a.base_offset).unwrap();
    } else {
        writeln!(out, "not-durable {} {n} {tag}", a.base_offset).unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn sigkill_during_always_appends_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("SPOOL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(i64, usize, String)> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    for round in 0..rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_ms = 20 + rng % 200;
        let mut child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SPOOL_LOG_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split(' ').collect();
                assert_ne!(parts[0], "not-durable", "acknowledged unsynced: {line}");
                if parts.len() == 4 && parts[0] == "ack" {
                    lines.push((
                        parts[1].parse::<i64>().unwrap(),
                        parts[2].parse::<usize>().unwrap(),
                        parts[3].to_owned(),
                    ));
                }
            }
            lines
        });
        std::thread::sleep(std::time::Duration::from_millis(run_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());

        let (log, report) = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 64 * 1024,
                ..LogConfig::default()
            },
        )
        .unwrap();
        let all = read_all(&log, 0);
        for (base, n, tag) in &acked {
            for i in 0..*n {
                let (offset, value) = &all[(*base as usize) + i];
                assert_eq!(*offset, base + i as i64);
                assert_eq!(
                    value,
                    format!("{tag}-{i}").as_bytes(),
                    "round {round}: offset {offset} ({report})"
                );
            }
        }
        // Offsets are dense: the log is a gap-free sequence.
        for (i, (offset, _)) in all.iter().enumerate() {
            assert_eq!(*offset, i as i64);
        }
    }
    assert!(
        acked.len() > rounds as usize,
        "the child acknowledged too little to prove anything: {}",
        acked.len()
    );
    // Both ways of waiting were acknowledged: `sync_to` (threads 0 and 1)
    // and a `Syncer` completion (threads 2 and 3). Tags are "pid.thread.i".
    let by_syncer = acked
        .iter()
        .filter(|(_, _, tag)| {
            let thread = tag.split('.').nth(1).and_then(|t| t.parse::<u32>().ok());
            thread.is_some_and(|t| t >= 2)
        })
        .count();
    assert!(
        by_syncer > 0 && by_syncer < acked.len(),
        "{by_syncer} of {} acknowledgements came from the Syncer",
        acked.len()
    );
}
