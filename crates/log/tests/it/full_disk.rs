//! A real full disk under group commit: the log lives on a small tmpfs made
//! by the test (skipped, saying why, where mounting is not allowed).

use crate::support::*;
use spool_log::{Log, LogConfig, LogError};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(Mount(at.to_owned())),
        Ok(out) => {
            eprintln!(
                "SKIPPED full-disk test: cannot mount a small tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED full-disk test: no mount command ({e})");
            None
        }
    }
}

/// Concurrent `always` appenders fill the disk: each failed append gets
/// `StorageFull` (the log does not stop), every acknowledged one is readable
/// at its offset with no gap, and appends work again once space is freed.
#[test]
fn full_disk_under_group_commit_fails_appends_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let Some(_mount) = mount_tmpfs(&mnt, "1m") else {
        return;
    };
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 256 << 10]).unwrap();
    let data = mnt.join("log");
    // Small segments, so that some rolls meet the full disk too.
    let config = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(&data, config.clone()).unwrap();
    let mut acked: Vec<(i64, Vec<u8>)> = std::thread::scope(|s| {
        let appenders: Vec<_> = (0..8)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let mut refusals = 0;
                    for i in 0.. {
                        let b = sized(3000, (t * 16 + i % 16) as u8, 0);
                        match log.write_durable(&b, 0) {
                            Ok(a) => {
                                acked.push((a.base_offset, vec![(t * 16 + i % 16) as u8; 3000]))
                            }
                            Err(LogError::StorageFull { .. }) => {
                                refusals += 1;
                                if refusals == 5 {
                                    break;
                                }
                            }
                            Err(other) => panic!("appender {t}: {other}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    acked.sort();
    assert!(acked.len() > 50, "only {} appends fit", acked.len());
    let s = log.stats();
    assert_eq!(s.next_offset, acked.len() as i64, "{s:?}");
    assert_eq!(s.durable_offset, s.next_offset);
    assert_eq!(read_all(&log, 0), acked);

    std::fs::remove_file(&ballast).unwrap();
    let a = log.write_durable(&sized(3000, 1, 0), 0).unwrap();
    assert_eq!(a.base_offset, acked.len() as i64);
    acked.push((a.base_offset, vec![1u8; 3000]));
    drop(log);
    let (log, report) = Log::open(&data, config).unwrap();
    assert!(report.truncated.is_empty(), "{report}");
    assert_eq!(read_all(&log, 0), acked);
}
