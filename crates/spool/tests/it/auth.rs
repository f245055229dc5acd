//! Authentication and authorization on both protocols, the backend-only
//! default (no public address without an admin token), and the server's
//! configuration layers (`--config` < `SPOOL_…` < flags, `--print-config`).

use super::support::{cli, ok, start_configured, temp_file, text, words, ServerProc, BIN};
use spool_testkit::http::blocking::call_as;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "test-admin-token-0123456789";

fn start_secured(dir: &Path) -> ServerProc {
    ServerProc::start_with_env(dir, "127.0.0.1:0", &[], &[("SPOOL_ADMIN_TOKEN", ADMIN)])
}

/// Runs a CLI command with `--token TOKEN` (if any).
fn as_token(server: &ServerProc, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    if let Some(t) = token {
        all.extend(["--token", t]);
    }
    cli(&server.addr, &all, stdin)
}

/// Asserts a command failed with `code` on stderr.
fn fails_with(out: &Output, code: &str) {
    assert!(
        !out.status.success() && text(&out.stderr).contains(code),
        "expected {code}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A minimal HTTP/1.1 call with an optional bearer token: status and the
/// whole reply.
fn http(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let reply = call_as(addr, method, path, body, token);
    (reply.status, reply.raw)
}

#[test]
fn without_a_valid_token_nothing_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_secured(dir.path());

    fails_with(
        &as_token(&server, None, &["topic", "list"], b""),
        "UNAUTHENTICATED",
    );
    fails_with(
        &as_token(
            &server,
            Some("spool_not-a-real-token"),
            &["topic", "list"],
            b"",
        ),
        "UNAUTHENTICATED",
    );
    ok(&as_token(&server, Some(ADMIN), &["topic", "list"], b""));

    let (status, reply) = http(&server.http, "GET", "/v1/topics", "", None);
    assert_eq!(status, 401, "{reply}");
    assert!(reply.contains("UNAUTHENTICATED"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{reply}"
    );
    let (status, _) = http(&server.http, "GET", "/v1/topics", "", Some("wrong"));
    assert_eq!(status, 401);
    let (status, _) = http(&server.http, "GET", "/v1/topics", "", Some(ADMIN));
    assert_eq!(status, 200);
    // Health checks stay open for load balancers and orchestrators.
    let (status, _) = http(&server.http, "GET", "/healthz", "", None);
    assert_eq!(status, 200);
    let (status, _) = http(&server.http, "GET", "/readyz", "", None);
    assert_eq!(status, 200);
    // So does the API's documentation, machine-readable and for people.
    for path in ["/openapi.json", "/docs"] {
        let (status, reply) = http(&server.http, "GET", path, "", None);
        assert_eq!(status, 200, "{path}: {reply}");
    }
}

#[test]
fn permissions_are_checked_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_secured(dir.path());
    let admin = Some(ADMIN);
    for topic in ["orders.eu", "payments"] {
        ok(&as_token(&server, admin, &["topic", "create", topic], b""));
    }

    // The admin makes a produce-only token for orders.*; it is the last line.
    let out = ok(&as_token(
        &server,
        admin,
        &words("token create orders-producer --produce orders.*"),
        b"",
    ));
    let producer_token = out.lines().last().unwrap().trim().to_owned();
    assert!(producer_token.starts_with("spool_"), "{out}");
    let out = ok(&as_token(
        &server,
        admin,
        &["token", "create", "orders-reader", "--consume", "orders.>"],
        b"",
    ));
    let reader_token = out.lines().last().unwrap().trim().to_owned();
    let producer = Some(producer_token.as_str());
    let reader = Some(reader_token.as_str());

    // Binary protocol: produce allowed where granted, refused elsewhere.
    let out = as_token(&server, producer, &["produce", "orders.eu"], b"one\n");
    assert!(ok(&out).contains("acknowledged: 1"));
    fails_with(
        &as_token(&server, producer, &["produce", "payments"], b"x\n"),
        "FORBIDDEN",
    );
    fails_with(
        &as_token(
            &server,
            producer,
            &words("consume orders.eu --count 1 --timeout-ms 2000"),
            b"",
        ),
        "FORBIDDEN",
    );
    // Consume allowed where granted; produce not.
    let out = ok(&as_token(
        &server,
        reader,
        &words("consume orders.eu --count 1 --timeout-ms 5000"),
        b"",
    ));
    assert_eq!(out.trim(), "one");
    fails_with(
        &as_token(&server, reader, &["produce", "orders.eu"], b"x\n"),
        "FORBIDDEN",
    );
    fails_with(
        &as_token(
            &server,
            reader,
            &words("consume payments --count 1 --timeout-ms 2000"),
            b"",
        ),
        "FORBIDDEN",
    );
    // Admin operations need an admin token.
    fails_with(
        &as_token(&server, producer, &["topic", "create", "orders.us"], b""),
        "FORBIDDEN",
    );
    fails_with(
        &as_token(&server, reader, &["token", "list"], b""),
        "FORBIDDEN",
    );
    // Listing shows only what a token may see.
    let listed = ok(&as_token(&server, producer, &["topic", "list"], b""));
    assert!(
        listed.contains("orders.eu") && !listed.contains("payments"),
        "{listed}"
    );

    // HTTP: the same permissions.
    let message = r#"{"messages":[{"value":"two"}]}"#;
    let publish = |topic: &str, token| {
        http(
            &server.http,
            "POST",
            &format!("/v1/topics/{topic}/messages"),
            message,
            token,
        )
        .0
    };
    let fetch = |topic: &str, token| {
        http(
            &server.http,
            "GET",
            &format!("/v1/topics/{topic}/messages"),
            "",
            token,
        )
        .0
    };
    assert_eq!(publish("orders.eu", producer), 200);
    assert_eq!(publish("payments", producer), 403);
    assert_eq!(publish("orders.eu", reader), 403);
    assert_eq!(fetch("orders.eu", reader), 200);
    assert_eq!(fetch("orders.eu", producer), 403);
    assert_eq!(fetch("payments", reader), 403);
    let create = r#"{"name":"orders.us"}"#;
    assert_eq!(
        http(&server.http, "POST", "/v1/topics", create, producer).0,
        403
    );
    assert_eq!(
        http(&server.http, "POST", "/v1/topics", create, admin).0,
        201
    );

    // Tokens are listed without secrets and stored only hashed.
    let listed = ok(&as_token(&server, admin, &["token", "list"], b""));
    assert!(
        listed.contains("orders-producer") && listed.contains("orders.*"),
        "{listed}"
    );
    let store = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    for token in [&producer_token, &reader_token] {
        assert!(!listed.contains(token));
        assert!(!store.contains(token), "tokens.json holds a token in clear");
        assert!(!store.contains(&token["spool_".len()..]));
    }
    assert!(!store.contains(ADMIN));

    // Revoked: refused as unknown, on both protocols.
    ok(&as_token(
        &server,
        admin,
        &["token", "revoke", "orders-producer"],
        b"",
    ));
    fails_with(
        &as_token(&server, producer, &["produce", "orders.eu"], b"x\n"),
        "UNAUTHENTICATED",
    );
    assert_eq!(publish("orders.eu", producer), 401);
    assert_eq!(publish("orders.eu", admin), 200);
}

/// Runs `spool server ARGS` expecting it to exit; returns its output.
fn server_exits(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .arg("server")
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("spool server {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn public_addresses_need_an_admin_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (listen, http, named) in [
        ("0.0.0.0:0", "127.0.0.1:0", "--listen"),
        ("127.0.0.1:0", "0.0.0.0:0", "--http-listen"),
    ] {
        let out = server_exits(
            &[
                "--listen",
                listen,
                "--http-listen",
                http,
                "--data-dir",
                data,
            ],
            &[],
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("refusing to listen on 0.0.0.0:0")
                && err.contains(named)
                && err.contains("--insecure")
                && err.contains("SPOOL_ADMIN_TOKEN"),
            "{err}"
        );
    }

    // --insecure serves anyway (reached here over loopback).
    let server = ServerProc::start_with(dir.path(), "0.0.0.0:0", &["--insecure"]);
    let port = server.addr.rsplit(':').next().unwrap();
    ok(&cli(&format!("127.0.0.1:{port}"), &["topic", "list"], b""));
}

#[test]
fn print_config_layers_file_env_and_flags() {
    let (_dir, file) = temp_file(
        "spool.toml",
        "listen = \"127.0.0.1:7001\"\nhttp_listen = \"127.0.0.1:7101\"\nmax_connections = 5\n\
         log_format = \"json\"\ncallback_secret = \"file-secret-value\"\n",
    );
    let config = file.to_str().unwrap();
    let envs = [
        ("SPOOL_LISTEN", "127.0.0.1:7002"),
        ("SPOOL_HTTP_LISTEN", "127.0.0.1:7102"),
        ("SPOOL_CALLBACK_SECRET", "env-secret-value"),
        ("SPOOL_ADMIN_TOKEN", ADMIN),
    ];
    let out = server_exits(
        &[
            "--config",
            config,
            "--listen",
            "127.0.0.1:7003",
            "--print-config",
        ],
        &envs,
    );
    let printed = ok(&out);
    // Flag beats environment beats file; untouched file values stay.
    assert!(
        printed.contains("listen = \"127.0.0.1:7003\"  # from --listen"),
        "{printed}"
    );
    assert!(
        printed.contains("http_listen = \"127.0.0.1:7102\"  # from SPOOL_HTTP_LISTEN"),
        "{printed}"
    );
    assert!(
        printed.contains("max_connections = 5  # from `max_connections` in"),
        "{printed}"
    );
    assert!(printed.contains("log_format = \"json\""), "{printed}");
    assert!(
        printed.contains("data_dir = \"./spool-data\"  # default"),
        "{printed}"
    );
    // Secrets never appear.
    for secret in ["file-secret-value", "env-secret-value", ADMIN] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("callback_secret = \"<redacted>\""),
        "{printed}"
    );
    assert!(
        printed.contains("admin_token = \"<redacted>\""),
        "{printed}"
    );
    // The printed configuration is TOML.
    let parsed: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(parsed["max_connections"].as_integer(), Some(5));

    // Errors name the offending key, wherever it came from.
    let out = server_exits(&["--print-config"], &[("SPOOL_MAX_CONNECTIONS", "lots")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SPOOL_MAX_CONNECTIONS"),
        "{}",
        text(&out.stderr)
    );
    let out = server_exits(&["--print-config", "--listen", "not an address"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--listen"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&file, "max_connections = 0\n").unwrap();
    let out = server_exits(&["--config", config, "--print-config"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("`max_connections` in") && err.contains("spool.toml"),
        "{err}"
    );
}

/// A flag's value shows in `ps`, so the callback secret comes from a file
/// or the environment; a short one refuses the start, naming where it came
/// from; `--print-config` never shows it.
#[test]
fn the_callback_secret_comes_from_a_file_or_the_environment_never_a_flag() {
    let out = server_exits(
        &[
            "--callback-secret",
            "a-long-enough-secret-value",
            "--print-config",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--callback-secret"), "{err}");

    let out = server_exits(
        &["--print-config"],
        &[("SPOOL_CALLBACK_SECRET", "too-short")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("SPOOL_CALLBACK_SECRET") && err.contains("at least 16 bytes"),
        "{err}"
    );
    assert!(!err.contains("too-short"), "{err}");

    let (_dir, file) = temp_file("callback.key", "a-secret-kept-in-a-file\n");
    let path = file.to_str().unwrap();
    let out = server_exits(&["--callback-secret-file", path, "--print-config"], &[]);
    let printed = ok(&out);
    assert!(
        printed.contains(&format!(
            "callback_secret_file = \"{path}\"  # from --callback-secret-file"
        )),
        "{printed}"
    );
    assert!(!printed.contains("a-secret-kept-in-a-file"), "{printed}");
    std::fs::write(&file, "short\n").unwrap();
    let out = server_exits(&["--print-config"], &[("SPOOL_CALLBACK_SECRET_FILE", path)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("SPOOL_CALLBACK_SECRET_FILE") && err.contains("at least 16 bytes"),
        "{err}"
    );
}

#[test]
fn unknown_keys_in_the_file_are_refused_by_name() {
    let (dir, file) = temp_file(
        "spool.toml",
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    );
    let data = dir.path().join("data");
    let out = server_exits(
        &[
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("listen_adress") && err.contains("spool.toml"),
        "{err}"
    );
    // Refused before anything was created.
    assert!(!data.exists());
}

#[test]
fn request_records_follow_their_queue_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_secured(dir.path());
    // A CLI command with a token.
    let run =
        |token: Option<&str>, args: &[&str], stdin: &[u8]| as_token(&server, token, args, stdin);
    let create = |name: &str, flag: &str| {
        let out = ok(&run(
            Some(ADMIN),
            &["token", "create", name, flag, "jobs"],
            b"",
        ));
        out.lines().last().unwrap().trim().to_owned()
    };
    let submitter = create("submitter", "--produce");
    let worker = create("worker", "--consume");
    let (submitter, worker) = (Some(submitter.as_str()), Some(worker.as_str()));
    // Creating a request queue is an admin's act.
    ok(&run(Some(ADMIN), &words("topic create jobs"), b""));
    ok(&run(
        Some(ADMIN),
        &words("subscription create jobs workers"),
        b"",
    ));

    fails_with(
        &run(worker, &["request", "submit", "jobs"], b"{}"),
        "FORBIDDEN",
    );
    let out = ok(&run(
        submitter,
        &["request", "submit", "jobs"],
        b"{\"n\":1}",
    ));
    let id = out.trim().to_owned();

    // The submitter may read its record but not take the work.
    ok(&run(submitter, &["request", "status", &id], b""));
    fails_with(
        &run(submitter, &["receive", "jobs", "workers"], b""),
        "FORBIDDEN",
    );
    let leased = ok(&run(
        worker,
        &["receive", "jobs", "workers", "--wait-ms", "5000"],
        b"",
    ));
    assert!(leased.contains("\"n\":1"), "{leased}");

    // Only a consumer of the queue may finish it, over HTTP too.
    let path = format!("/v1/requests/{id}/complete");
    let result = r#"{"result":{"ok":true}}"#;
    assert_eq!(http(&server.http, "POST", &path, result, submitter).0, 403);
    assert_eq!(http(&server.http, "POST", &path, result, worker).0, 200);
    let status = format!("/v1/requests/{id}");
    assert_eq!(http(&server.http, "GET", &status, "", submitter).0, 200);
    assert_eq!(http(&server.http, "GET", &status, "", None).0, 401);
    let out = ok(&run(submitter, &["request", "wait", &id], b""));
    assert!(out.contains("succeeded"), "{out}");
}

#[test]
fn only_an_admin_creates_a_request_queue_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_secured(dir.path());
    let run =
        |token: Option<&str>, args: &[&str], stdin: &[u8]| as_token(&server, token, args, stdin);
    let out = ok(&run(
        Some(ADMIN),
        &["token", "create", "submitter", "--produce", "jobs.*"],
        b"",
    ));
    let producer = out.lines().last().unwrap().trim().to_owned();
    let producer = Some(producer.as_str());
    let submit_http = |queue: &str, token: Option<&str>| {
        let body = format!(r#"{{"queue":"{queue}","payload":{{"n":1}}}}"#);
        http(&server.http, "POST", "/v1/requests", &body, token)
    };

    // A queue that does not exist: refused on both protocols, saying why.
    let out = run(producer, &words("request submit jobs.new"), b"{}");
    fails_with(&out, "FORBIDDEN");
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));
    let (status, reply) = submit_http("jobs.other", producer);
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("FORBIDDEN"), "{reply}");
    // A topic without the `workers` subscription is not one either, and
    // does not become one.
    ok(&run(Some(ADMIN), &words("topic create jobs.bare"), b""));
    fails_with(
        &run(producer, &words("request submit jobs.bare"), b"{}"),
        "FORBIDDEN",
    );
    assert_eq!(submit_http("jobs.bare", producer).0, 403);
    // Nothing was created.
    let topics = ok(&run(Some(ADMIN), &words("topic list"), b""));
    assert!(
        !topics.contains("jobs.new") && !topics.contains("jobs.other"),
        "{topics}"
    );
    let subscriptions = ok(&run(
        Some(ADMIN),
        &words("subscription list jobs.bare"),
        b"",
    ));
    assert!(!subscriptions.contains("workers"), "{subscriptions}");

    // Once an admin's request created it, the produce token submits to it
    // on both protocols.
    ok(&run(Some(ADMIN), &words("request submit jobs.new"), b"{}"));
    ok(&run(producer, &words("request submit jobs.new"), b"{}"));
    let (status, reply) = submit_http("jobs.new", producer);
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn a_token_over_its_request_rate_is_told_to_slow_down_on_both_protocols() {
    let (_dir, server) = start_configured(
        &["--token-rate-per-s", "5"],
        &[("SPOOL_ADMIN_TOKEN", ADMIN)],
    );
    // HTTP: a burst of 5 passes, then 429 with Retry-After and the code.
    let replies: Vec<(u16, String)> = (0..12)
        .map(|_| http(&server.http, "GET", "/v1/topics", "", Some(ADMIN)))
        .collect();
    let limited: Vec<&(u16, String)> = replies.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        replies.iter().filter(|(s, _)| *s == 200).count() >= 5,
        "{replies:?}"
    );
    assert!(!limited.is_empty(), "{replies:?}");
    let (_, reply) = limited[0];
    assert!(reply.contains("RATE_LIMITED"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("retry-after: 1"),
        "{reply}"
    );
    // After a second the bucket has refilled.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        http(&server.http, "GET", "/v1/topics", "", Some(ADMIN)).0,
        200
    );

    // The binary protocol shares the token's budget: quick CLI calls run
    // into the limit too (each is a handshake plus one request).
    let mut refused = None;
    for _ in 0..60 {
        let out = as_token(&server, Some(ADMIN), &["topic", "list"], b"");
        if !out.status.success() {
            refused = Some(out);
            break;
        }
    }
    let out = refused.expect("some call over the rate limit is refused");
    fails_with(&out, "RATE_LIMITED");
    // Refusals are counted per token.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, metrics) = http(&server.http, "GET", "/metrics", "", Some(ADMIN));
    assert!(
        metrics.contains("spool_rate_limited_total{token=\"admin\"}"),
        "{metrics}"
    );
}

/// The permission bits of a file.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

#[test]
fn secret_files_are_readable_by_the_owner_only() {
    // An empty SPOOL_CALLBACK_SECRET counts as unset (the harness sets one),
    // so the server generates its own.
    let (dir, server) = start_configured(
        &[],
        &[("SPOOL_CALLBACK_SECRET", ""), ("SPOOL_ADMIN_TOKEN", ADMIN)],
    );
    // Generated as the server starts serving, just after it announced its
    // address.
    let secret_path = dir.path().join("callback.secret");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !secret_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    assert!(
        secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_hexdigit()),
        "{secret:?}"
    );
    let mode = mode_of(&secret_path);
    assert_eq!(mode, 0o600, "callback.secret has mode {mode:o}");

    ok(&as_token(
        &server,
        Some(ADMIN),
        &["token", "create", "reader", "--consume", "orders"],
        b"",
    ));
    // The request store holds results and callback URLs.
    for name in ["tokens.json", "requests.redb"] {
        let mode = mode_of(&dir.path().join(name));
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// Issue 24: consumer groups across tenants. Member ids were predictable
/// (`client-<time>-<counter>`), and another tenant with consume rights on
/// any topic could heartbeat (reading the assignment), rejoin as, or make
/// leave someone else's member. Now ids are random and a member is usable
/// only by the token that joined it.
#[test]
fn a_group_member_belongs_to_the_token_that_joined_it() {
    let admin = Some(ADMIN);
    let dir = tempfile::tempdir().unwrap();
    let server = start_secured(dir.path());
    ok(&as_token(
        &server,
        admin,
        &words("topic create orders"),
        b"",
    ));
    ok(&as_token(&server, admin, &words("topic create other"), b""));
    let token = |name: &str, topic: &str| {
        let out = ok(&as_token(
            &server,
            admin,
            &["token", "create", name, "--consume", topic],
            b"",
        ));
        out.lines().last().unwrap().trim().to_owned()
    };
    let alice = token("alice", "orders");
    let mallory = token("mallory", "other");
    let post = |path: &str, body: &str, as_: &str| {
        let reply = call_as(&server.http, "POST", path, body, Some(as_));
        (reply.status, reply.raw)
    };
    let (status, reply) = post(
        "/v1/groups/billing/join",
        r#"{"topics":["orders"],"client_id":"alice-app"}"#,
        &alice,
    );
    assert_eq!(status, 200, "{reply}");
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let joined: serde_json::Value = serde_json::from_str(body).unwrap();
    let member = joined["member_id"].as_str().unwrap().to_owned();
    let random = member.strip_prefix("alice-app-").unwrap();
    assert_eq!(random.len(), 32, "122 random bits in hex: {member}");
    let generation = joined["generation"].as_u64().unwrap();

    let heartbeat = format!(r#"{{"member_id":"{member}","generation":{generation}}}"#);
    let (status, reply) = post("/v1/groups/billing/heartbeat", &heartbeat, &mallory);
    assert!(reply.contains("UNKNOWN_MEMBER"), "{status} {reply}");
    assert!(!reply.contains("orders"), "no assignment shown: {reply}");
    let leave = format!(r#"{{"member_id":"{member}"}}"#);
    let (_, reply) = post("/v1/groups/billing/leave", &leave, &mallory);
    assert!(reply.contains("UNKNOWN_MEMBER"), "{reply}");
    let (status, reply) = post("/v1/groups/billing/heartbeat", &heartbeat, &alice);
    assert_eq!(status, 200, "alice's member is still hers: {reply}");
    let (status, reply) = post("/v1/groups/billing/leave", &leave, &alice);
    assert!(status < 300, "{status} {reply}");
}
