//! A full disk: the data directory lives on a small tmpfs made by the test
//! (skipped, saying why, where the machine does not allow mounting). Producers
//! get STORAGE_FULL, consumers keep working, nothing acknowledged is lost,
//! and publishing resumes once space is freed.

use crate::support::*;

#[test]
fn storage_full_is_refused_cleanly_and_publishing_resumes_after_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = match Tmpfs::mount(&dir.path().join("mnt"), "24m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED full-disk test: {why}");
            return;
        }
    };
    let mnt = tmpfs.path.clone();
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 4 << 20]).unwrap();
    let data = mnt.join("data");
    let mut server = ServerProc::start(&data);
    ok(&server.cli(&["topic", "create", "t", "--segment-bytes", "1048576"], b""));

    let line = "x".repeat(1000);
    let input: String = (0..40_000).map(|i| format!("{i:06}{line}\n")).collect();
    let out = server.cli(&["produce", "t"], input.as_bytes());
    assert!(!out.status.success(), "40 MB cannot fit in 24 MB");
    assert!(
        text(&out.stderr).contains("STORAGE_FULL"),
        "stderr: {}",
        text(&out.stderr)
    );
    let acked = acknowledged(&out);
    assert!(
        acked > 1_000,
        "only {acked} acknowledged before the disk filled"
    );

    // Consumers keep working and see every acknowledged message, in order.
    let got = server.cli(
        &[
            "consume",
            "t",
            "--count",
            &acked.to_string(),
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    let got = lines(&got);
    assert_eq!(got.len(), acked);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(&v[..6], format!("{i:06}"), "message {i}");
    }
    assert!(server.alive());

    // Free space: publishing resumes.
    std::fs::remove_file(&ballast).unwrap();
    let out = server.cli(&["produce", "t"], b"after-1\nafter-2\n");
    ok(&out);
    assert_eq!(acknowledged(&out), 2);
    server.kill();
    // And a restart recovers everything that was acknowledged.
    let server = ServerProc::start(&data);
    let all = server.cli(
        &[
            "consume",
            "t",
            "--count",
            &(acked + 2).to_string(),
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    let all = lines(&all);
    assert_eq!(all.len(), acked + 2);
    assert_eq!(all[acked + 1], "after-2");
    drop(server);
}
