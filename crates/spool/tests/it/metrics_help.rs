//! `/metrics` of a server that has seen nothing yet: every metric with its
//! `# HELP` line, and the counters of things that have not happened at 0
//! rather than missing.

use crate::support::start_configured;

/// The value of the series `series` (name and labels, as rendered).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_fresh_servers_metrics_have_help_lines_and_counters_at_zero() {
    let admin = "metrics-help-admin-token-0123456789";
    let (_dir, server) = start_configured(
        &["--token-rate-per-s", "1000"],
        &[("SPOOL_ADMIN_TOKEN", admin)],
    );
    let reply = spool_testkit::http::blocking::get(&server.http, "/metrics");
    assert_eq!(reply.status, 200);
    let metrics = reply.body.as_str().unwrap_or_default().to_owned();
    for series in [
        r#"spool_connections_refused_total{listener="binary",reason="max_connections"}"#,
        r#"spool_connections_refused_total{listener="http",reason="max_connections_per_peer"}"#,
        r#"spool_connections_closed_total{reason="slow_client"}"#,
        r#"spool_connections_closed_total{reason="tls_on_plain_listener"}"#,
        r#"spool_tls_handshake_failures_total{listener="binary"}"#,
        r#"spool_tls_handshake_failures_total{listener="http"}"#,
        r#"spool_rate_limited_total{token="admin"}"#,
    ] {
        assert_eq!(value(&metrics, series), Some(0.0), "{series} in\n{metrics}");
    }
    // A token created later is counted from zero too.
    crate::support::ok(&server.cli(
        &[
            "token",
            "create",
            "reader",
            "--consume",
            ">",
            "--token",
            admin,
        ],
        b"",
    ));
    let reply = spool_testkit::http::blocking::get(&server.http, "/metrics");
    let later = reply.body.as_str().unwrap_or_default();
    let series = r#"spool_rate_limited_total{token="reader"}"#;
    assert_eq!(value(later, series), Some(0.0), "{later}");
    // Every metric exported says what it is.
    let names: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.len() >= 7, "{metrics}");
    for name in names {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "no HELP line for {name} in\n{metrics}"
        );
    }
}
