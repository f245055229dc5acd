//! The server SIGKILLed while a producer runs under `always`: after a
//! restart every acknowledged message is there, in order, without duplicates.

use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigkill_during_produce_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 3;
    let mut acked_per_round = Vec::new();
    let mut addr_hint = String::new();
    for round in 0..rounds {
        let mut server = ServerProc::start(dir.path());
        addr_hint.clone_from(&server.addr);
        if round == 0 {
            ok(&server.cli(&["topic", "create", "events"], b""));
        }
        let mut producer = Command::new(BIN)
            .args(["produce", "events", "--addr", &server.addr])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = producer.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            for i in 0..2_000_000 {
                if writeln!(stdin, "r{round}-{i}").is_err() {
                    break;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(700 + 400 * round as u64));
        server.kill();
        let out = producer.wait_with_output().unwrap();
        let _ = feeder.join();
        assert!(
            !out.status.success(),
            "the producer cannot succeed against a killed server"
        );
        let n = acknowledged(&out);
        assert!(
            n > 0,
            "nothing was acknowledged before the kill; stderr {}",
            text(&out.stderr)
        );
        acked_per_round.push(n);
    }
    let server = ServerProc::start(dir.path());
    let out = server.cli(&["consume", "events", "--timeout-ms", "2000"], b"");
    let values = lines(&out);
    // The log is, round by round, a gap-free prefix of what each round sent.
    let mut expect_round = 0;
    let mut expect_i = 0usize;
    let mut per_round = vec![0usize; rounds];
    for v in &values {
        let (r, i) = v.trim_start_matches('r').split_once('-').unwrap();
        let (r, i): (usize, usize) = (r.parse().unwrap(), i.parse().unwrap());
        if r != expect_round {
            assert!(r > expect_round, "round {r} after round {expect_round}");
            expect_round = r;
            expect_i = 0;
        }
        assert_eq!(i, expect_i, "round {r}: gap, reorder or duplicate at {v}");
        expect_i += 1;
        per_round[r] += 1;
    }
    for (round, (&stored, &acked)) in per_round.iter().zip(&acked_per_round).enumerate() {
        assert!(
            stored >= acked,
            "round {round}: {acked} acknowledged but only {stored} stored"
        );
    }
    eprintln!("acknowledged per round {acked_per_round:?}, stored {per_round:?} (last seen at {addr_hint})");
}
