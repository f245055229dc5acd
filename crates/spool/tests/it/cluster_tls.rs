//! TLS on the node links: three real nodes started with the certificates
//! of `spool tls generate` and `--cluster-tls-ca-file`, one node's link
//! address pointing at a relay in this test that records every byte. The
//! messages replicate through it, and none of their text crosses it in
//! the clear. Also the settings' refusals.

use crate::support::{cli, ok, text, ServerProc, BIN};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "the TLS test's cluster secret";
const CANARY: &str = "plaintext-canary";
const MESSAGES: usize = 200;
/// What the relay keeps of each connection's opening bytes.
const OPENING_BYTES: usize = 8;

/// Everything the relay carried, both directions, and each connection's
/// first bytes from the dialer.
#[derive(Default)]
struct Recorded {
    bytes: Vec<u8>,
    openings: Vec<Vec<u8>>,
}

fn copy(mut from: TcpStream, mut to: TcpStream, recorded: Arc<Mutex<Recorded>>, dialer: bool) {
    let mut buf = [0u8; 16 * 1024];
    let mut first = dialer;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        let mut r = recorded.lock().unwrap_or_else(|p| p.into_inner());
        if first {
            r.openings.push(buf[..n.min(OPENING_BYTES)].to_vec());
            first = false;
        }
        r.bytes.extend_from_slice(&buf[..n]);
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Relays every connection on `listener` to `target`, recording it.
fn relay(listener: TcpListener, target: u16, recorded: Arc<Mutex<Recorded>>) {
    std::thread::spawn(move || {
        for dialer in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (d2, u2) = (dialer.try_clone().unwrap(), upstream.try_clone().unwrap());
            let r = recorded.clone();
            std::thread::spawn(move || copy(dialer, upstream, r, true));
            let r = recorded.clone();
            std::thread::spawn(move || copy(u2, d2, r, false));
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn with_ca(addr: &str, ca: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--tls-ca", ca.to_str().unwrap()]);
    cli(addr, &all, stdin)
}

#[test]
fn node_links_carry_no_message_in_the_clear_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let generated = Command::new(BIN)
        .args(["tls", "generate", "--host", "localhost", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    ok(&generated);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ca = certs.join("ca.crt");

    // Node 2's link address in --peers is the relay's; it listens behind.
    let relay_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay_listener.local_addr().unwrap().port();
    let (port_1, port_2, port_3) = (free_port(), free_port(), free_port());
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    relay(relay_listener, port_2, recorded.clone());
    let peers = format!("1=127.0.0.1:{port_1},2=127.0.0.1:{relay_port},3=127.0.0.1:{port_3}");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let (cert, key, ca_text, secret_text) = (
        path(&certs.join("server.crt")),
        path(&certs.join("server.key")),
        path(&ca),
        path(&secret),
    );
    let listen_2 = format!("127.0.0.1:{port_2}");
    let nodes: Vec<ServerProc> = (1..=3u64)
        .map(|id| {
            let id_text = id.to_string();
            let mut flags = vec![
                "--node-id",
                &id_text,
                "--peers",
                &peers,
                "--cluster-secret-file",
                &secret_text,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--cluster-tls-ca-file",
                &ca_text,
            ];
            if id == 2 {
                flags.extend(["--cluster-listen", &listen_2]);
            }
            let data = dir.path().join(format!("node-{id}"));
            ServerProc::start_with(&data, "127.0.0.1:0", &flags)
        })
        .collect();
    let addr_1 = &nodes[0].addr;
    ok(&with_ca(
        addr_1,
        &ca,
        &[
            "topic",
            "create",
            "secured",
            "--partitions",
            "3",
            "--replicas",
            "3",
        ],
        b"",
    ));
    let input: String = (0..MESSAGES).map(|i| format!("{CANARY}-{i}\n")).collect();
    let produced = with_ca(addr_1, &ca, &["produce", "secured"], input.as_bytes());
    assert!(
        text(&produced.stdout).contains(&format!("acknowledged: {MESSAGES}")),
        "{}",
        text(&produced.stderr)
    );
    // Node 2 holds them all: they crossed the relay (replicated to it, or
    // forwarded to it as a partition's leader).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = with_ca(
            &nodes[1].addr,
            &ca,
            &["consume", "secured", "--timeout-ms", "1000"],
            b"",
        );
        if text(&out.stdout).lines().count() == MESSAGES {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never held every message");
    }
    let r = recorded.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        r.bytes.len() > input.len(),
        "the relay carried only {} bytes",
        r.bytes.len()
    );
    assert!(
        !r.bytes
            .windows(CANARY.len())
            .any(|w| w == CANARY.as_bytes()),
        "a message crossed a node link in the clear"
    );
    // Every connection opened with a TLS handshake record (0x16, 3.x).
    assert!(!r.openings.is_empty());
    for opening in &r.openings {
        assert_eq!(&opening[..2], &[0x16, 0x03], "not TLS: {opening:?}");
    }
}

#[test]
fn cluster_tls_settings_are_refused_when_they_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    ok(&Command::new(BIN)
        .args(["tls", "generate", "--host", "localhost", "--out"])
        .arg(&certs)
        .output()
        .unwrap());
    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("server")
            .args(["--data-dir", &dir.path().join("data").to_string_lossy()])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(["--node-id", "1", "--peers", "1=127.0.0.1:1"])
            .args(args)
            .env("SPOOL_CLUSTER_SECRET", SECRET)
            .output()
            .expect("run")
    };
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    for (args, says) in [
        (
            vec!["--cluster-tls-ca-file", ca.as_str()],
            "tls_cert_file is not",
        ),
        (
            vec!["--tls-cert-file", &cert, "--tls-key-file", &key],
            "is needed with peers and TLS",
        ),
        (
            vec![
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--cluster-tls-ca-file",
                &key,
            ],
            "no certificate found",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} started");
        let stderr = text(&out.stderr);
        assert!(
            (stderr.contains("cluster_tls_ca_file") || stderr.contains("--cluster-tls-ca-file"))
                && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}
