//! File descriptors: a server out of them backs off, closes the
//! connections it cannot take, logs once and serves again once some close;
//! at start it raises its limit and says whether the data directory fits.

use crate::support::*;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Descriptors the server may open beyond those it has when its limit is
/// lowered under it.
const HEADROOM: u64 = 16;

/// Connections opened at once: far more than [`HEADROOM`].
const CLIENTS: usize = 64;

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// Whether the server closed `s` (non-blocking: an open, silent connection
/// answers `WouldBlock`).
fn closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Opens [`CLIENTS`] connections and waits (up to 3 s) until the server
/// closed all it could not take; how many it closed.
fn flood(addr: &str) -> (Vec<TcpStream>, usize) {
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let want = CLIENTS - 2 * HEADROOM as usize;
    loop {
        let n = clients.iter_mut().map(closed).filter(|&c| c).count();
        if n >= want || Instant::now() >= deadline {
            return (clients, n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's warnings about accepting.
fn accept_warnings(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("accept"))
        .map(str::to_owned)
        .collect()
}

/// Runs the CLI until it succeeds (clients the server closed while it was
/// out of descriptors fail), for at most 5 s.
fn served(server: &ServerProc) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if server.cli(&["topic", "list"], b"").status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn out_of_descriptors_the_server_closes_new_connections_logs_once_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = ServerProc::start_logging_to(&dir.path().join("data"), &log);
    // Served once, so that what the server opens at start is open.
    assert!(served(&server));
    let pid = server.pid();
    let limit = open_descriptors(pid) + HEADROOM;
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        Some((limit, limit)),
        None,
    )
    .unwrap();

    // Twice: the second flood comes before accepting has worked for long,
    // so it is the same episode (a new one is logged again; see the unit
    // tests of `spool_server`'s accept loop).
    for round in 1..=2 {
        let (clients, shed) = flood(&server.addr);
        // Those it could not take were closed at once, not left waiting.
        assert!(
            shed >= CLIENTS - 2 * HEADROOM as usize,
            "round {round}: only {shed} of {CLIENTS} connections over a limit of \
             {HEADROOM} spare descriptors were closed"
        );
        // More clients meanwhile: more failed accepts, no more lines.
        for _ in 0..6 {
            let _late = TcpStream::connect(&server.addr).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        let warnings = accept_warnings(&log);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        // Once connections close, new clients are served.
        drop(clients);
        assert!(served(&server), "round {round}: not served again");
    }
}

#[test]
fn at_start_the_server_raises_its_open_file_limit_and_says_when_the_data_directory_needs_more() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let mut server = ServerProc::start(&data);
        ok(&server.cli(&words("topic create wide --partitions 128"), b""));
        server.terminate();
    }
    let log = dir.path().join("server.log");
    // 128 partitions hold 384 descriptors: with the sealed segments' cache
    // (1,024), 100 connections and the server's own, more than 1,024 (and
    // fewer than 2,048); opening them takes fewer than 1,024.
    let needs_more = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("open-file limit"))
            .count()
    };
    for (hard, warnings) in [(1024, 1), (2048, 0)] {
        let mut server = ServerProc::start_with_open_file_limit(
            &data,
            (256, hard),
            &["--max-connections", "100"],
            &log,
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains(&format!("open-file limit: {hard} (raised from 256)")),
            "{text}"
        );
        assert_eq!(needs_more(&log), warnings, "hard limit {hard}: {text}");
        server.terminate();
    }
}

/// Issue 24: at the descriptor limit a topic creation failed half way and
/// left a half-made directory (which the next start sets aside as an
/// unknown topic). Now it leaves nothing, and the name can be created once
/// descriptors are back.
#[test]
fn a_topic_that_cannot_be_created_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data);
    assert!(served(&server));
    let pid = server.pid();
    let limit = open_descriptors(pid) + HEADROOM;
    let set_limit = |n: u64| {
        rlimit::prlimit(pid as i32, rlimit::Resource::NOFILE, Some((n, 4096)), None).unwrap();
    };
    set_limit(limit);
    // 64 partitions need 192 descriptors: far more than are left.
    let out = server.cli(&words("topic create wide --partitions 64"), b"");
    assert!(!out.status.success(), "created under the limit?");
    let topic_dir = data.join("topics").join("wide");
    assert!(!topic_dir.exists(), "half-made {}", topic_dir.display());
    set_limit(4096);
    ok(&server.cli(&words("topic create wide --partitions 64"), b""));
    assert!(topic_dir.exists());
}

/// Issue 24: the outbound HTTP client (with its TLS roots) was built
/// lazily in the callback and push tasks after the server began accepting,
/// so a flood of connections at start could take the descriptors the roots
/// needed, and callbacks failed for the life of the process (its fallback
/// panicked in the task). Now it is built once before anyone is accepted,
/// and a client that cannot be built refuses the start, saying why. Roots
/// that cannot be read stand in here for roots that cannot be opened.
#[test]
fn an_outbound_client_that_cannot_be_built_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("SSL_CERT_FILE", dir.path().join("no-roots.pem"))
        .env("SSL_CERT_DIR", dir.path().join("no-roots"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.expect("the server started without an outbound client");
    assert!(!status.success());
    assert!(
        stderr.contains("cannot build the HTTP client for callbacks and push deliveries"),
        "{stderr}"
    );
}
