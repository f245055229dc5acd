//! Entry mode: the log as a Raft log. Entries numbered across segment
//! rolls, control entries, reads and terms across segments and reopens,
//! truncation, purge, reset, index rebuilds, torn tails, the mode marker
//! and the commit cap.

use crate::support::*;
use spool_batch::control_batch;
use spool_log::{
    Durability, EntryId, Log, LogConfig, LogError, StoredEntry, FIRST_ENTRY_INDEX,
    SEGMENT_FILES_ENTRY_MODE,
};
use std::path::{Path, PathBuf};

/// Small segments and a dense index, so a few entries span segments.
pub fn entry_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 200,
        entry_mode: true,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, entry_config()).unwrap().0
}

fn control(body: &str) -> Vec<u8> {
    control_batch(body.as_bytes(), 7).unwrap()
}

/// Writes a data entry of `records` records, syncs it, returns its index.
fn data(log: &Log, tag: &str, records: usize, term: u64) -> u64 {
    let e = log.write_entry(&batch(tag, records, 1), term, 0).unwrap();
    log.sync_to(e.next_offset).unwrap();
    e.index
}

/// (index, term, base offset, is control) of every stored entry.
fn summary(log: &Log) -> Vec<(u64, u64, i64, bool)> {
    let bounds = log.entry_bounds().unwrap();
    let Some(last) = bounds.last else {
        return vec![];
    };
    let all = log
        .read_entries(bounds.first_index, usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(all.len() as u64, last.index - bounds.first_index + 1);
    all.iter()
        .map(|e| (e.index, e.term, e.base_offset, e.is_control()))
        .collect()
}

fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn entries_are_numbered_across_segment_rolls_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.entry_bounds().unwrap().first_index, FIRST_ENTRY_INDEX);
    assert_eq!(log.entry_bounds().unwrap().last, None);
    let mut expected = Vec::new();
    let mut offset = 0;
    for i in 0..30u64 {
        let term = 1 + i / 10;
        let index = data(&log, &format!("e{i}"), 3, term);
        assert_eq!(index, i + 1);
        expected.push((index, term, offset, false));
        offset += 3;
    }
    assert!(log.stats().segments > 3, "{:?}", log.stats());
    assert_eq!(log.open_files(), SEGMENT_FILES_ENTRY_MODE);
    assert_eq!(summary(&log), expected);
    let last = Some(EntryId { index: 30, term: 3 });
    assert_eq!(log.entry_bounds().unwrap().last, last);
    for index in [1, 7, 15, 30] {
        assert_eq!(log.entry_term(index).unwrap(), Some(1 + (index - 1) / 10));
    }
    assert_eq!(log.entry_term(31).unwrap(), None);
    assert_eq!(log.entry_term(0).unwrap(), None);
    drop(log);
    let (log, report) = Log::open(dir.path(), entry_config()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(summary(&log), expected);
    assert_eq!(log.entry_bounds().unwrap().last, last);
    // Reads from the middle of a segment, a few at a time.
    let some = log.read_entries(12, 4, usize::MAX).unwrap();
    let got: Vec<_> = some.iter().map(|e| (e.index, e.base_offset)).collect();
    assert_eq!(got, vec![(12, 33), (13, 36), (14, 39), (15, 42)]);
    // The stored batch carries the term and base offset in its header.
    let header = spool_batch::validate(&some[0].batch).unwrap();
    assert_eq!((header.partition_leader_epoch, header.base_offset), (2, 33));
    // A byte budget still returns at least one entry.
    assert_eq!(log.read_entries(12, 10, 1).unwrap().len(), 1);
    let err = log.read_entries(31, 1, 100).unwrap_err();
    assert!(
        matches!(err, LogError::EntryOutOfRange { requested: 31, .. }),
        "{err}"
    );
}

#[test]
fn control_entries_cover_no_offsets_and_never_collide_segment_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // A blank entry first, then big control entries that fill segments.
    let first = log.write_entry(&control(""), 1, 0).unwrap();
    assert_eq!(
        (first.index, first.base_offset, first.next_offset),
        (1, 0, 0)
    );
    let body = "m".repeat(700);
    for _ in 0..3 {
        let e = log.write_entry(&control(&body), 1, 0).unwrap();
        assert_eq!((e.base_offset, e.next_offset), (0, 0));
    }
    // A segment that covers no offsets is never rolled.
    assert_eq!(log.stats().segments, 1);
    let d = log.write_entry(&batch("d", 2, 1), 1, 0).unwrap();
    assert_eq!((d.index, d.base_offset, d.next_offset), (5, 0, 2));
    for _ in 0..3 {
        log.write_entry(&control(&body), 2, 0).unwrap();
    }
    let d2 = log.write_entry(&batch("d2", 1, 1), 2, 0).unwrap();
    assert_eq!((d2.index, d2.base_offset), (9, 2));
    log.sync_to(d2.next_offset).unwrap();
    let names = files_ending(dir.path(), "log");
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique);
    assert_eq!(log.stats().next_offset, 3);
    // Offset reads serve the data (once committed), controls as stored.
    log.set_committed_end(3);
    let read = log.read(0, 1 << 20).unwrap();
    let vals = values_skipping_control(&read.bytes);
    assert_eq!(vals, vec![(0, b"d-0".to_vec()), (1, b"d-1".to_vec())]);
    assert_eq!(read_all_skipping_control(&log, 0).len(), 3);
    // The control body comes back as written.
    let e = &log.read_entries(2, 1, usize::MAX).unwrap()[0];
    let header = spool_batch::BatchHeader::parse_with_control(&e.batch).unwrap();
    assert_eq!(
        spool_batch::control_body(&e.batch, &header),
        Some(body.as_bytes())
    );
    drop(log);
    let log = open(dir.path());
    let kinds: Vec<_> = summary(&log).iter().map(|s| (s.2, s.3)).collect();
    let c = |o| (o, true);
    let d = |o| (o, false);
    assert_eq!(
        kinds,
        vec![c(0), c(0), c(0), c(0), d(0), c(2), c(2), c(2), d(2)]
    );
}

/// (offset, value) of the records of data batches in `bytes`, skipping
/// control batches as readers of an entry-mode log do.
fn values_skipping_control(bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for b in spool_batch::split_batches(bytes) {
        let b = b.unwrap();
        let h = spool_batch::BatchHeader::parse_with_control(b).unwrap();
        if h.is_control() {
            continue;
        }
        for r in spool_batch::records(b, &h) {
            let r = r.unwrap();
            let value = r.value.unwrap_or_default().to_vec();
            out.push((h.base_offset + r.offset_delta as i64, value));
        }
    }
    out
}

pub fn read_all_skipping_control(log: &Log, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1 << 20).unwrap();
        if r.bytes.is_empty() {
            return out;
        }
        let vals = values_skipping_control(&r.bytes);
        out.extend(vals.into_iter().filter(|(o, _)| *o >= offset));
        offset = r.next_offset;
    }
}

/// A control entry written after data that is already durable is itself
/// made durable by `sync_to` of the offset it was given, even though it
/// advanced no offset; so does a control entry followed by more data.
#[test]
fn sync_to_covers_control_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    data(&log, "a", 2, 1);
    assert!(log.is_durable_to(2));
    let c = log.write_entry(&control("blank"), 2, 0).unwrap();
    assert_eq!(c.next_offset, 2);
    assert!(!log.is_durable_to(c.next_offset));
    log.sync_to(c.next_offset).unwrap();
    assert!(log.is_durable_to(c.next_offset));
    // A control entry, then data, before anyone syncs.
    let c2 = log.write_entry(&control("m"), 2, 0).unwrap();
    let d = log.write_entry(&batch("b", 1, 1), 2, 0).unwrap();
    assert!(!log.is_durable_to(c2.next_offset));
    log.sync_to(c2.next_offset).unwrap();
    assert!(log.is_durable_to(c2.next_offset));
    assert!(log.is_durable_to(d.next_offset));
}

#[test]
fn truncate_entries_in_a_segment_and_across_segments_gives_indexes_and_offsets_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..20u64 {
        if i % 5 == 4 {
            log.write_entry(&control("c"), 1, 0).unwrap();
        } else {
            data(&log, &format!("e{i}"), 6, 1);
        }
    }
    log.flush().unwrap();
    let before = summary(&log);
    let segments = log.stats().segments;
    assert!(segments >= 3);
    // In the middle of the active segment.
    log.truncate_entries_from(19).unwrap();
    assert_eq!(log.stats().segments, segments);
    assert_eq!(summary(&log), before[..18]);
    let next = log.write_entry(&batch("x", 1, 1), 3, 0).unwrap();
    assert_eq!((next.index, next.base_offset), (19, before[18].2));
    // Across a segment boundary, into an earlier segment.
    log.truncate_entries_from(6).unwrap();
    assert!(log.stats().segments < segments);
    assert_eq!(summary(&log), before[..5]);
    assert_eq!(
        log.entry_bounds().unwrap().last,
        Some(EntryId { index: 5, term: 1 })
    );
    assert_eq!(log.stats().next_offset, before[5].2);
    let next = log.write_entry(&batch("y", 3, 1), 4, 0).unwrap();
    assert_eq!((next.index, next.base_offset), (6, before[5].2));
    log.sync_to(next.next_offset).unwrap();
    drop(log);
    let log = open(dir.path());
    let mut expected = before[..5].to_vec();
    expected.push((6, 4, before[5].2, false));
    assert_eq!(summary(&log), expected);
    // Past the end: nothing to do; below the first: refused.
    log.truncate_entries_from(100).unwrap();
    assert_eq!(summary(&log), expected);
    let err = log.truncate_entries_from(0).unwrap_err();
    assert!(matches!(err, LogError::EntryOutOfRange { .. }), "{err}");
}

#[test]
fn truncation_below_the_committed_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..4 {
        data(&log, &format!("e{i}"), 2, 1);
    }
    log.set_committed_end(4);
    let err = log.truncate_entries_from(2).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::BelowCommitted {
                index: 2,
                offset: 2,
                committed_end: 4
            }
        ),
        "{err}"
    );
    assert_eq!(log.entry_bounds().unwrap().last.map(|l| l.index), Some(4));
    log.truncate_entries_from(3).unwrap();
    assert_eq!(log.stats().next_offset, 4);
}

#[test]
fn purge_then_reopen_keeps_the_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..30 {
        data(&log, &format!("e{i}"), 2, 1);
    }
    let before = summary(&log);
    log.purge_entries_to(14).unwrap();
    let bounds = log.entry_bounds().unwrap();
    assert!(
        bounds.first_index > 1 && bounds.first_index <= 15,
        "{bounds:?}"
    );
    let first = bounds.first_index;
    assert_eq!(summary(&log), before[first as usize - 1..]);
    assert_eq!(log.stats().start_offset, before[first as usize - 1].2);
    assert_eq!(log.entry_term(first - 1).unwrap(), None);
    drop(log);
    // Without any entry index, the first comes from `start-entry`.
    let remove_entry_indexes = || {
        for path in files_ending(dir.path(), "entryindex") {
            std::fs::remove_file(path).unwrap();
        }
    };
    remove_entry_indexes();
    let (log, report) = Log::open(dir.path(), entry_config()).unwrap();
    assert!(log.stats().segments > 1);
    assert_eq!(report.rebuilt_indexes.len(), log.stats().segments - 1);
    assert_eq!(log.entry_bounds().unwrap().first_index, first);
    assert_eq!(summary(&log), before[first as usize - 1..]);
    // Purging everything keeps the active segment, so the last entry stays.
    log.purge_entries_to(1000).unwrap();
    let bounds = log.entry_bounds().unwrap();
    assert_eq!(bounds.last.map(|l| l.index), Some(30));
    assert_eq!(log.stats().segments, 1);
    let first = bounds.first_index;
    drop(log);
    remove_entry_indexes();
    let log = open(dir.path());
    assert_eq!(log.entry_bounds().unwrap().first_index, first);
    assert_eq!(summary(&log), before[first as usize - 1..]);
    assert_eq!(data(&log, "more", 1, 2), 31);
}

#[test]
fn reset_then_write_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..12 {
        data(&log, &format!("e{i}"), 2, 1);
    }
    log.set_committed_end(24);
    log.reset_entries(100, 5000).unwrap();
    let bounds = log.entry_bounds().unwrap();
    assert_eq!((bounds.first_index, bounds.last), (100, None));
    let s = log.stats();
    assert_eq!((s.start_offset, s.next_offset, s.segments), (5000, 5000, 1));
    assert_eq!(files_ending(dir.path(), "log").len(), 1);
    assert_eq!(data(&log, "after", 2, 7), 100);
    log.write_entry(&control("c"), 7, 0).unwrap();
    log.flush().unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        summary(&log),
        vec![(100, 7, 5000, false), (101, 7, 5002, true)]
    );
    // The commit cap restarted at the new start.
    assert_eq!(log.stats().end_offset, 5000);
}

/// Entry index files deleted or damaged are rebuilt on open, and every
/// answer stays the same.
#[test]
fn damaged_entry_indexes_are_rebuilt_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..40u64 {
        if i % 7 == 3 {
            log.write_entry(&control("c"), i / 10, 0).unwrap();
        } else {
            data(&log, &format!("e{i}"), 1 + (i % 3) as usize, i / 10);
        }
    }
    log.flush().unwrap();
    let before = summary(&log);
    drop(log);
    let indexes = files_ending(dir.path(), "entryindex");
    assert!(indexes.len() >= 3);
    std::fs::remove_file(&indexes[1]).unwrap();
    // A wrong first index in the header (CRC intact).
    let mut head = std::fs::read(&indexes[2]).unwrap();
    head[12..20].copy_from_slice(&77i64.to_be_bytes());
    let crc = crc32c::crc32c(&head[..20]);
    head[20..24].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&indexes[2], &head).unwrap();
    // Garbage entries.
    let mut bytes = std::fs::read(&indexes[0]).unwrap();
    bytes.extend_from_slice(&[0xff; 5]);
    std::fs::write(&indexes[0], &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), entry_config()).unwrap();
    assert_eq!(report.rebuilt_indexes.len(), 3, "{report}");
    assert_eq!(summary(&log), before);
    for &(index, term, _, _) in &before {
        assert_eq!(log.entry_term(index).unwrap(), Some(term));
    }
    drop(log);
    let (log, report) = Log::open(dir.path(), entry_config()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(summary(&log), before);
}

/// Cutting the last entry (a data entry, or a control entry) at every
/// byte recovers exactly the entries before it, with their indexes and
/// terms, and the next entry takes its index and offset.
#[test]
fn a_torn_tail_in_entry_mode_is_cut_and_indexes_stay_right() {
    for last_is_control in [false, true] {
        let original = tempfile::tempdir().unwrap();
        let log = open(original.path());
        for i in 0..6 {
            data(&log, &format!("e{i}"), 2, 1);
        }
        log.write_entry(&control("c"), 2, 0).unwrap();
        let last_batch = match last_is_control {
            true => control("the last one"),
            false => batch("last", 3, 1),
        };
        let last = log.write_entry(&last_batch, 2, 0).unwrap();
        log.flush().unwrap();
        let before = summary(&log);
        drop(log);
        let active = files_ending(original.path(), "log").pop().unwrap();
        let name = active.file_name().unwrap().to_owned();
        let full = std::fs::metadata(&active).unwrap().len();
        for cut in full - last_batch.len() as u64 + 1..full {
            let work = tempfile::tempdir().unwrap();
            for entry in std::fs::read_dir(original.path()).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), work.path().join(entry.file_name())).unwrap();
            }
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(work.path().join(&name))
                .unwrap();
            f.set_len(cut).unwrap();
            let (log, report) = Log::open(work.path(), entry_config()).unwrap();
            assert_eq!(report.truncated.len(), 1, "cut at {cut}: {report}");
            assert_eq!(summary(&log), before[..before.len() - 1], "cut at {cut}");
            let bounds = log.entry_bounds().unwrap();
            assert_eq!(bounds.last, Some(EntryId { index: 7, term: 2 }));
            assert_eq!(log.stats().next_offset, last.base_offset);
            let again = log.write_entry(&batch("again", 1, 1), 3, 0).unwrap();
            assert_eq!((again.index, again.base_offset), (8, last.base_offset));
        }
    }
}

#[test]
fn opening_in_the_wrong_mode_is_refused() {
    let plain = tempfile::tempdir().unwrap();
    Log::open(plain.path(), LogConfig::default()).unwrap();
    let err = Log::open(plain.path(), entry_config()).unwrap_err();
    assert!(matches!(err, LogError::WrongMode(_)), "{err}");
    assert!(err.to_string().contains("entry_mode = false"), "{err}");
    let entries = tempfile::tempdir().unwrap();
    open(entries.path());
    let err = Log::open(entries.path(), LogConfig::default()).unwrap_err();
    assert!(matches!(err, LogError::WrongMode(_)), "{err}");
    assert!(err.to_string().contains("entry_mode = true"), "{err}");
    // The plain API is refused on an entry-mode log and the other way round.
    let log = open(entries.path());
    let err = log.write(&batch("x", 1, 1), 0).unwrap_err();
    assert!(matches!(err, LogError::InEntryMode { .. }), "{err}");
    let err = log.set_config(LogConfig::default()).unwrap_err();
    assert!(matches!(err, LogError::InvalidConfig(_)), "{err}");
    let plain_log = Log::open(plain.path(), LogConfig::default()).unwrap().0;
    let err = plain_log.write_entry(&batch("x", 1, 1), 1, 0).unwrap_err();
    assert!(matches!(err, LogError::NotEntryMode { .. }), "{err}");
    let err = log.write_entry(&batch("x", 1, 1), 1 << 31, 0).unwrap_err();
    assert!(matches!(err, LogError::TermTooLarge { .. }), "{err}");
}

#[test]
fn the_commit_cap_hides_uncommitted_data_from_offset_readers() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        durability: Durability::Never,
        ..entry_config()
    };
    let log = Log::open(dir.path(), config).unwrap().0;
    for i in 0..4 {
        log.write_entry(&batch(&format!("e{i}"), 2, 100 + i), 1, 0)
            .unwrap();
    }
    assert_eq!(log.stats().end_offset, 0);
    assert!(log.read(0, 1 << 20).unwrap().bytes.is_empty());
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert!(log
        .read_from_timestamp(0, 1 << 20)
        .unwrap()
        .bytes
        .is_empty());
    // Raft reads its own entries regardless.
    assert_eq!(log.read_entries(1, 10, usize::MAX).unwrap().len(), 4);
    log.set_committed_end(4);
    assert_eq!(log.stats().end_offset, 4);
    assert_eq!(read_all(&log, 0).len(), 4);
    assert_eq!(log.offset_for_timestamp(102).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some(2));
    // The cap only rises.
    log.set_committed_end(2);
    assert_eq!(log.stats().end_offset, 4);
    log.set_committed_end(8);
    assert_eq!(read_all(&log, 0).len(), 8);
}

/// Every entry read back is the batch written, with its term.
#[test]
fn read_entries_returns_the_written_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let written = [batch("a", 2, 5), control("x"), batch("b", 1, 6)];
    for (term, b) in written.iter().enumerate() {
        log.write_entry(b, term as u64, 0).unwrap();
    }
    let got: Vec<StoredEntry> = log.read_entries(1, 10, usize::MAX).unwrap();
    assert_eq!(got.len(), 3);
    for (i, (entry, original)) in got.iter().zip(&written).enumerate() {
        assert_eq!(entry.term, i as u64);
        // Equal but for the base offset and leader epoch the log wrote.
        assert_eq!(entry.batch[16..], original[16..]);
        assert_eq!(entry.batch[12..16], (i as i32).to_be_bytes());
    }
}

/// A log whose first batch is a control entry (a new leader's blank entry)
/// opens again: recovery reads it as an entry before anything else.
#[test]
fn a_log_that_starts_with_a_control_entry_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let blank = log.write_entry(&control(""), 1, 0).unwrap();
    log.sync_to(blank.next_offset).unwrap();
    drop(log);
    let (log, report) = Log::open(dir.path(), entry_config()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(summary(&log), vec![(1, 1, 0, true)]);
}

/// Retention in entry mode names its cut (the last entry of the whole
/// sealed segments past the limits, and the first offset kept) and
/// deletes nothing itself; purging to the cut deletes those segments and
/// records the new first entry, so it survives losing every entry index.
#[test]
fn retention_keeps_the_first_entry_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..30 {
        data(&log, &format!("e{i}"), 2, 1);
    }
    let before = summary(&log);
    log.set_config(LogConfig {
        retention_bytes: Some(1500),
        ..entry_config()
    })
    .unwrap();
    assert!(matches!(
        log.apply_retention(0),
        Err(LogError::InEntryMode { .. })
    ));
    let cut = log
        .retention_cut(0)
        .unwrap()
        .expect("segments past the limit");
    assert_eq!(
        log.entry_bounds().unwrap().first_index,
        1,
        "nothing deleted yet"
    );
    log.purge_entries_to(cut.last_entry).unwrap();
    let first = log.entry_bounds().unwrap().first_index;
    assert_eq!(first, cut.last_entry + 1);
    assert_eq!(log.stats().start_offset, cut.next_offset);
    assert_eq!(log.stats().start_offset, before[first as usize - 1].2);
    assert_eq!(log.retention_cut(0).unwrap(), None, "nothing more past it");
    drop(log);
    for path in files_ending(dir.path(), "entryindex") {
        std::fs::remove_file(path).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.entry_bounds().unwrap().first_index, first);
    assert_eq!(summary(&log), before[first as usize - 1..]);
}
