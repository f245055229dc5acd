use super::report::{self, Latency, Report};
use super::settings::{Settings, Stop};
use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;
use std::time::Duration;

fn args(flags: &[&str]) -> BenchArgs {
    let argv = ["spool", "bench"].iter().chain(flags).copied();
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Bench(a) => a,
        other => panic!("not bench: {other:?}"),
    }
}

fn settings(flags: &[&str]) -> Settings {
    Settings::from_args(&args(flags)).expect("valid settings")
}

fn refused(flags: &[&str]) -> String {
    let e = Settings::from_args(&args(flags)).expect_err("refused");
    assert_eq!(e.code, "INVALID_REQUEST");
    e.message
}

fn sample_report(flags: &[&str], latency: bool) -> Report {
    let mut h = report::histogram();
    for us in 1..=1000u64 {
        report::record(&mut h, Duration::from_micros(us));
    }
    Report {
        settings: settings(flags),
        addr: "127.0.0.1:7420".into(),
        topic: "bench-x-0".into(),
        messages: 2_000,
        bytes: 2_048_000,
        elapsed: Duration::from_millis(500),
        latency: latency.then(|| (Latency::of(&h), "publish → delivery")),
        extra: vec![("status_reads_per_s", serde_json::json!(12.5))],
    }
}

#[test]
fn json_report_has_the_contract_keys() {
    let r = sample_report(&["end-to-end", "--fsync", "interval"], true);
    let line = r.to_json().to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    for key in [
        "workload",
        "msgs_per_s",
        "mb_per_s",
        "size",
        "durability",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "producers",
        "consumers",
        "partitions",
        "batch",
        "window",
        "rate",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["workload"], "end-to-end");
    assert_eq!(v["durability"], "interval");
    assert_eq!(v["interval_ms"], 1000);
    assert_eq!(v["size"], 1024);
    assert_eq!(v["msgs_per_s"], 4000.0);
    assert_eq!(v["mb_per_s"], 4.096);
    assert_eq!(v["rate"], 10_000);
    assert_eq!(v["status_reads_per_s"], 12.5);
    let p50 = v["p50_us"].as_u64().expect("p50 is a number");
    assert!((495..=505).contains(&p50), "{p50}");
    assert_eq!(v["max_us"].as_u64(), Some(1000));
    assert!(v["p99_us"].as_u64() <= v["p999_us"].as_u64());

    // Throughput workloads carry no latency keys.
    let v = sample_report(&["produce"], false).to_json();
    assert_eq!(v["workload"], "produce");
    assert_eq!(v["durability"], "always");
    assert!(v["msgs_per_s"].is_number() && v["mb_per_s"].is_number());
    assert!(v.get("p99_us").is_none());
}

#[test]
fn table_names_the_numbers() {
    let t = sample_report(&["queue"], true).to_table();
    for word in [
        "workload", "queue", "msgs/s", "4,000", "MB/s", "p99.9", "µs",
    ] {
        assert!(t.contains(word), "{word} missing from\n{t}");
    }
}

#[test]
fn defaults_depend_on_the_workload() {
    let e2e = settings(&["end-to-end"]);
    assert_eq!(e2e.rate, Some(10_000));
    assert_eq!(e2e.stop, Stop::Time(Duration::from_secs(10)));
    assert_eq!(e2e.linger, Duration::ZERO);
    let q = settings(&["queue"]);
    assert_eq!((q.consumers, q.partitions, q.rate), (16, 1, None));
    let c = settings(&["consume", "--consumers", "4"]);
    assert_eq!((c.partitions, c.stop), (4, Stop::Count(100_000)));
    let p = settings(&[
        "produce", "--size", "100", "--count", "7", "--batch", "50", "--window", "4",
    ]);
    assert_eq!(
        (p.size, p.stop, p.batch, p.window),
        (100, Stop::Count(7), 50, 4)
    );
    assert_eq!(p.linger, Duration::from_millis(5));
    assert_eq!(Settings::shares(10, 3), vec![4, 3, 3]);
    assert_eq!(Settings::shares(2, 3).iter().sum::<u64>(), 2);
}

#[test]
fn bad_settings_are_refused_clearly() {
    assert!(refused(&["produce", "--size", "0"]).contains("--size"));
    assert!(refused(&["produce", "--size", "2000000"]).contains("--size"));
    assert!(refused(&["queue", "--size", "4"]).contains("send time"));
    assert!(refused(&["produce", "--count", "0"]).contains("--count"));
    assert!(refused(&["produce", "--producers", "0"]).contains("--producers"));
    assert!(refused(&["queue", "--consumers", "0"]).contains("--consumers"));
    assert!(refused(&["produce", "--partitions", "0"]).contains("--partitions"));
    assert!(refused(&["produce", "--batch", "0"]).contains("--batch"));
    assert!(refused(&["produce", "--window", "0"]).contains("--window"));
    assert!(refused(&["end-to-end", "--rate", "0"]).contains("--rate"));
    assert!(refused(&["produce", "--duration-s", "0"]).contains("--duration-s"));
    assert!(refused(&["produce", "--duration-s", "nan"]).contains("--duration-s"));
    assert!(refused(&["produce", "--count", "5", "--duration-s", "1"]).contains("not both"));
    assert!(refused(&["consume", "--duration-s", "1"]).contains("--duration-s"));
    assert!(refused(&["consume", "--rate", "5"]).contains("--rate"));
    assert!(
        refused(&["consume", "--consumers", "3", "--partitions", "2"]).contains("--partitions")
    );
    assert!(refused(&["produce", "--interval-ms", "5"]).contains("--fsync interval"));
    assert!(refused(&["queue", "--receive-max", "0"]).contains("--receive-max"));
}

#[test]
fn stamps_round_trip() {
    let epoch = Instant::now();
    let at = epoch + Duration::from_micros(1234);
    let mut buf = vec![b'x'; 16];
    stamp::write(&mut buf, at, epoch);
    assert_eq!(stamp::read(&buf, epoch), Some(at));
    assert_eq!(stamp::read(b"short", epoch), None);
    assert_eq!(report::thousands(1_234_567), "1,234,567");
    assert_eq!(report::thousands(999), "999");
}

/// Every workload, briefly, against a server in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_a_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = spool_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: None,
        data_dir: dir.path().to_path_buf(),
        ..spool_server::ServerConfig::default()
    };
    let server = spool_server::Server::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("addr").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let runs: &[&[&str]] = &[
        &[
            "produce",
            "--count",
            "500",
            "--producers",
            "2",
            "--size",
            "100",
        ],
        &[
            "consume",
            "--count",
            "500",
            "--consumers",
            "2",
            "--batch",
            "50",
        ],
        &[
            "end-to-end",
            "--rate",
            "2000",
            "--duration-s",
            "0.3",
            "--fsync",
            "never",
        ],
        &[
            "queue",
            "--count",
            "300",
            "--consumers",
            "3",
            "--size",
            "64",
            "--fsync",
            "interval",
        ],
        &[
            "requests",
            "--count",
            "50",
            "--consumers",
            "2",
            "--size",
            "32",
            "--status-duration-s",
            "0.2",
        ],
    ];
    for flags in runs {
        let s = settings(flags);
        let want = match s.stop {
            Stop::Count(n) => Some(n),
            Stop::Time(_) => None,
        };
        let r = bench(s, &addr)
            .await
            .unwrap_or_else(|e| panic!("{flags:?}: {e:#}"));
        if let Some(n) = want {
            assert_eq!(r.messages, n, "{flags:?}");
        } else {
            assert!(r.messages > 0, "{flags:?}");
        }
        assert!(r.msgs_per_s() > 0.0, "{flags:?}");
        let v = r.to_json();
        if r.latency.is_some() {
            assert!(v["p99_us"].as_u64().is_some_and(|p| p > 0), "{v}");
        }
        if flags[0] == "requests" {
            assert!(v["status_reads"].as_u64().is_some_and(|n| n > 0), "{v}");
        }
    }
    // Every bench topic was deleted.
    let client = connect(&addr).await.expect("connect");
    let topics = client.list_topics(None).await.expect("list");
    let left: Vec<_> = topics
        .iter()
        .filter(|t| t.name.starts_with("bench-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = stop.send(());
    serving.await.expect("join").expect("serve");
}
