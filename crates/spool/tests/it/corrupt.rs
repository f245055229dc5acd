//! Torn and corrupt files in a real data directory: the server either
//! recovers and says what it dropped (file, position, reason), or refuses to
//! start with a message naming the file and position. Corrupt data is never
//! served, and data the metadata does not know is set aside, never deleted.

use crate::support::*;
use std::path::{Path, PathBuf};

const SEGMENT: &str = "00000000000000000000.log";

/// A stopped server's data: topic `t` with 100 messages from 10 runs of
/// `spool produce` with 10 lines each (how a run splits its lines into
/// batches is the producer's choice: the first line leaves at once, lines
/// read while it is in flight follow together), queue subscription `w`
/// with 5 of them acknowledged.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&dir.path().join("data"));
    ok(&server.cli(&["topic", "create", "t"], b""));
    ok(&server.cli(&["subscription", "create", "t", "w"], b""));
    for batch in 0..10 {
        let lines: String = (1..=10).map(|i| format!("{}\n", batch * 10 + i)).collect();
        ok(&server.cli(&["produce", "t"], lines.as_bytes()));
    }
    ok(&server.cli(&["receive", "t", "w", "--max", "5", "--ack"], b""));
    assert_eq!(server.terminate(), Some(0));
    dir
}

fn file(dir: &Path, rel: &str) -> PathBuf {
    dir.join("data").join(rel)
}

/// Starts the server on the damaged directory; returns it and its log.
fn restart(dir: &Path) -> (ServerProc, String) {
    let log = dir.join("server.log");
    let server = ServerProc::start_logging_to(&dir.join("data"), &log);
    // The recovery notes are written before the listening line.
    let text = std::fs::read_to_string(&log).unwrap();
    (server, text)
}

/// Runs the server expecting it to refuse to start; returns its stderr.
fn refused(dir: &Path) -> String {
    start_refused(&dir.join("data"), &[])
}

fn consumed(server: &ServerProc) -> Vec<String> {
    let out = server.cli(
        &["consume", "t", "--count", "200", "--timeout-ms", "1000"],
        b"",
    );
    lines(&out)
}

fn numbers(n: std::ops::RangeInclusive<u32>) -> Vec<String> {
    n.map(|i| i.to_string()).collect()
}

/// Cuts the last `bytes` off a file, as a crash mid-write leaves it.
fn cut_tail(path: &Path, bytes: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len - bytes)
        .unwrap();
}

/// Prepared data whose first segment in `rel_dir` lost its last `bytes`,
/// and the server restarted on it: the data, that segment, the server and
/// its log.
fn restart_torn(rel_dir: &str, bytes: u64) -> (tempfile::TempDir, PathBuf, ServerProc, String) {
    let dir = prepared();
    let seg = file(dir.path(), &format!("{rel_dir}/{SEGMENT}"));
    cut_tail(&seg, bytes);
    let (server, log) = restart(dir.path());
    (dir, seg, server, log)
}

fn flip(path: &Path, at: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_torn_topic_tail_is_cut_at_the_last_whole_batch_and_reported() {
    let (_dir, seg, server, log) = restart_torn("topics/t/0", 7);
    assert!(
        log.contains("recovery") && log.contains(&seg.display().to_string()) && log.contains("cut"),
        "{log}"
    );
    // The last batch (91..=100, or the end of it: see `prepared`) is gone
    // whole; the rest is intact, in order.
    let got = consumed(&server);
    assert!((90..100).contains(&got.len()), "{got:?}");
    assert_eq!(got, numbers(1..=got.len() as u32));
}

#[test]
fn a_garbage_index_is_rebuilt() {
    let dir = prepared();
    let index = file(dir.path(), "topics/t/0/00000000000000000000.index");
    std::fs::write(&index, [0xa5u8; 4096]).unwrap();
    let (server, _log) = restart(dir.path());
    assert_eq!(consumed(&server), numbers(1..=100));
}

#[test]
fn a_flipped_bit_inside_a_topic_is_reported_and_never_served() {
    let dir = prepared();
    let seg = file(dir.path(), &format!("topics/t/0/{SEGMENT}"));
    let len = std::fs::metadata(&seg).unwrap().len();
    flip(&seg, len / 2, 0x40);
    let (server, log) = restart(dir.path());
    assert!(
        log.contains("CRC mismatch") && log.contains(&seg.display().to_string()),
        "{log}"
    );
    // What is served is a prefix of what was written, never altered bytes.
    let got = consumed(&server);
    assert!(got.len() < 100 && got.len() >= 10, "{got:?}");
    assert_eq!(got, numbers(1..=got.len() as u32));
}

#[test]
fn a_torn_queue_state_log_is_reported_and_costs_only_redeliveries() {
    let (_dir, _state, server, log) = restart_torn("queues/t/w", 5);
    assert!(
        log.contains("subscription t/w") && log.contains("delivered again"),
        "{log}"
    );
    // Every message is still there for the subscription (at least once).
    let out = ok(&server.cli(&["receive", "t", "w", "--max", "100"], b""));
    assert!(out.lines().count() >= 95, "{out}");
    assert_eq!(consumed(&server), numbers(1..=100));
}

#[test]
fn damaged_headers_and_stores_refuse_the_start_naming_the_file() {
    // A segment whose file header is damaged: refused, file and byte named.
    let dir = prepared();
    let seg = file(dir.path(), &format!("topics/t/0/{SEGMENT}"));
    flip(&seg, 3, 0x13);
    let err = refused(dir.path());
    assert!(
        err.contains(&seg.display().to_string()) && err.contains("byte 0"),
        "{err}"
    );

    // A request store that is not a redb file any more: refused, named.
    let dir = prepared();
    let store = file(dir.path(), "requests.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[..64].fill(0x5a);
    std::fs::write(&store, bytes).unwrap();
    let err = refused(dir.path());
    assert!(err.contains("request store"), "{err}");
}

#[test]
fn a_flipped_bit_inside_the_metadata_refuses_the_start_and_deletes_nothing() {
    let dir = prepared();
    let meta = file(dir.path(), &format!("meta/{SEGMENT}"));
    let len = std::fs::metadata(&meta).unwrap().len();
    // Inside the records of the first event batch (24-byte file header,
    // 61-byte batch header), with more events after it.
    assert!(len > 400, "{len}");
    flip(&meta, 100, 0x08);
    let err = refused(dir.path());
    assert!(
        err.contains(&meta.display().to_string()) && err.contains("not a torn write"),
        "{err}"
    );
    // Nothing was cut or moved: with the bit restored, everything is back.
    flip(&meta, 100, 0x08);
    let (server, _log) = restart(dir.path());
    assert_eq!(consumed(&server), numbers(1..=100));
    assert!(!file(dir.path(), "orphaned").exists());
}

#[test]
fn topic_data_the_metadata_does_not_know_is_set_aside_not_deleted() {
    let dir = prepared();
    // Data of a topic the metadata never heard of (say, restored by hand).
    let stray = file(dir.path(), "topics/stray/0");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join(SEGMENT), b"precious").unwrap();
    let (server, log) = restart(dir.path());
    assert!(
        log.contains("\"stray\"") && log.contains("orphaned"),
        "{log}"
    );
    let kept: Vec<_> = std::fs::read_dir(file(dir.path(), "orphaned"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kept.len(), 1);
    let moved = kept[0].path().join("0").join(SEGMENT);
    assert_eq!(std::fs::read(moved).unwrap(), b"precious");
    assert_eq!(consumed(&server), numbers(1..=100));
}
