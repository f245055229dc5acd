//! TLS on both listeners with a self-signed certificate generated here
//! (rcgen): the CLI and an HTTPS client that trust it get through; plain
//! clients, and clients trusting another certificate, are refused cleanly
//! and the server keeps serving. Also the per-peer connection limit, and
//! `spool tls generate`.

use crate::support::{cli, lines, ok, start_configured, ServerProc, BIN};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 and its
/// key; returns (certificate, key) paths.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
    let cert = dir.join(format!("{name}.crt.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn with_ca(addr: &str, ca: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--tls-ca", ca.to_str().unwrap()]);
    cli(addr, &all, stdin)
}

fn https_get(url: &str, ca: &Path) -> Result<(u16, String), String> {
    let pem = std::fs::read(ca).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    })
}

#[test]
fn tls_round_trip_on_both_listeners_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server");
    let (other_cert, _) = self_signed(dir.path(), "other");
    let data = dir.path().join("data");
    let server = ServerProc::start_with(
        &data,
        "127.0.0.1:0",
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    let addr = &server.addr;

    // The CLI over TLS: create, produce, consume.
    ok(&with_ca(addr, &cert, &["topic", "create", "secure"], b""));
    ok(&with_ca(
        addr,
        &cert,
        &["produce", "secure"],
        b"one\ntwo\nthree\n",
    ));
    let out = with_ca(
        addr,
        &cert,
        &["consume", "secure", "--count", "3", "--timeout-ms", "5000"],
        b"",
    );
    assert_eq!(lines(&out), ["one", "two", "three"]);

    // The same address by name: the certificate is valid for localhost too.
    let port = addr.rsplit_once(':').unwrap().1;
    let by_name = format!("localhost:{port}");
    ok(&with_ca(
        &by_name,
        &cert,
        &["topic", "describe", "secure"],
        b"",
    ));

    // A client that does not speak TLS gets nowhere, and is told why.
    let plain = cli(addr, &["topic", "list"], b"");
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("the server answered with TLS"), "{err}");
    assert!(err.contains("--tls-ca"), "{err}");
    assert!(!err.contains("frame length"), "{err}");
    // A client trusting another certificate refuses the server's.
    let wrong = with_ca(addr, &other_cert, &["topic", "list"], b"");
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("TLS handshake failed"), "{err}");

    // HTTPS with the same certificate.
    let http_port = server.http.rsplit_once(':').unwrap().1;
    let (status, body) =
        https_get(&format!("https://localhost:{http_port}/v1/topics"), &cert).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("secure"), "{body}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut raw = std::net::TcpStream::connect(&server.http).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    raw.write_all(b"GET /v1/topics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = raw.read_to_end(&mut reply);
    assert!(!String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));

    // Still serving, and the refusals were counted.
    let (_, metrics) = https_get(&format!("https://127.0.0.1:{http_port}/metrics"), &cert).unwrap();
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("spool_tls_handshake_failures_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(failures >= 2.0, "{metrics}");
    assert!(
        metrics.contains("spool_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

/// The reverse: a TLS client on a plain listener is told the server does
/// not speak TLS, and the server's log says what happened (not that a
/// frame was too long).
#[test]
fn a_tls_client_on_a_plain_listener_is_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = self_signed(dir.path(), "ca");
    let log = dir.path().join("server.log");
    let server = ServerProc::start_logging_to(&dir.path().join("data"), &log);
    for _ in 0..2 {
        let out = with_ca(&server.addr, &ca, &["topic", "list"], b"");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not seem to speak TLS"), "{err}");
    }
    // Still serving plain clients.
    ok(&server.cli(&["topic", "list"], b""));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("a client tried TLS on a plain listener"),
        "{logged}"
    );
    // Once, not once per client.
    assert_eq!(logged.matches("tried TLS").count(), 1, "{logged}");
    assert!(!logged.contains("frame length"), "{logged}");
    let metrics = spool_testkit::http::blocking::get(&server.http, "/metrics").body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("spool_connections_closed_total{reason=\"tls_on_plain_listener\"} 2"),
        "{metrics}"
    );
}

/// Runs `spool tls generate ARGS`.
fn tls_generate(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(["tls", "generate"])
        .args(args)
        .output()
        .expect("run spool tls generate")
}

/// A server on `cert` and `key` (PEM files) with its log in `dir`.
fn start_tls(dir: &Path, cert: &Path, key: &Path) -> ServerProc {
    ServerProc::start_with(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    )
}

/// The documented first TLS setup: `spool tls generate`, the server on the
/// server certificate, the CLI trusting the CA.
#[test]
fn tls_generate_makes_a_ca_and_a_server_certificate_the_cli_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = certs.to_str().unwrap();
    ok(&tls_generate(&["--host", "spool.test", "--out", out]));
    // The keys are readable by their owner only.
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(certs.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let ca = certs.join("ca.crt");
    let server = start_tls(
        dir.path(),
        &certs.join("server.crt"),
        &certs.join("server.key"),
    );
    let addr = &server.addr;
    ok(&with_ca(addr, &ca, &["topic", "create", "secure"], b""));
    ok(&with_ca(addr, &ca, &["produce", "secure"], b"one\ntwo\n"));
    let consumed = with_ca(
        addr,
        &ca,
        &["consume", "secure", "--count", "2", "--timeout-ms", "5000"],
        b"",
    );
    assert_eq!(lines(&consumed), ["one", "two"]);
    // By name too: localhost is among the certificate's names.
    let port = addr.rsplit_once(':').unwrap().1;
    ok(&with_ca(
        &format!("localhost:{port}"),
        &ca,
        &["topic", "list"],
        b"",
    ));

    // A second run overwrites nothing.
    let before = std::fs::read(certs.join("ca.key")).unwrap();
    let again = tls_generate(&["--host", "spool.test", "--out", out]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("ALREADY_EXISTS"), "{err}");
    assert_eq!(std::fs::read(certs.join("ca.key")).unwrap(), before);
    // A host no client could check against is refused.
    let bad = tls_generate(&["--host", "no such host", "--out", out]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("INVALID_REQUEST"), "{err}");
}

/// A CA certificate as the server's own (what `openssl req -x509` makes by
/// default) cannot work with webpki; the client says what to do instead.
#[test]
fn a_ca_certificate_as_the_servers_own_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert_pem = params.self_signed(&key).unwrap().pem();
    let (cert, key_path) = (
        dir.path().join("ca-as-server.crt"),
        dir.path().join("k.pem"),
    );
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = start_tls(dir.path(), &cert, &key_path);
    let out = with_ca(&server.addr, &cert, &["topic", "list"], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CaUsedAsEndEntity"), "{err}");
    assert!(err.contains("spool tls generate"), "{err}");
}

#[test]
fn bad_certificate_files_stop_the_start_with_the_file_named() {
    let (dir, bogus) = crate::support::temp_file("bogus.pem", "not a certificate\n");
    let data = dir.path().join("data");
    let err = crate::support::start_refused(
        &data,
        &[
            "--tls-cert-file".as_ref(),
            bogus.as_os_str(),
            "--tls-key-file".as_ref(),
            bogus.as_os_str(),
        ],
    );
    assert!(err.contains("bogus.pem"), "{err}");
    // Half a TLS configuration is refused too, naming the missing key.
    let err =
        crate::support::start_refused(&data, &["--tls-cert-file".as_ref(), bogus.as_os_str()]);
    assert!(err.contains("tls_key_file"), "{err}");
}

#[test]
fn connections_per_peer_are_limited_and_counted() {
    let (_dir, server) = start_configured(&["--max-connections-per-peer", "3"], &[]);
    // Three idle connections from 127.0.0.1 use up its share.
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = server.cli(&["topic", "list"], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOO_MANY_CONNECTIONS"), "{err}");
    // HTTP shares the limit: a plain-HTTP client is told 503 why.
    let reply = spool_testkit::http::blocking::get(&server.http, "/v1/topics");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["code"], "TOO_MANY_CONNECTIONS", "{}", reply.body);
    // Closing one frees a slot.
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&server.cli(&["topic", "list"], b""));
    let metrics = spool_testkit::http::blocking::get(&server.http, "/metrics").body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("spool_connections_refused_total{listener=\"binary\",reason=\"max_connections_per_peer\"}"),
        "{metrics}"
    );
}
