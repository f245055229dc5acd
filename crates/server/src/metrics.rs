//! Prometheus metrics at `GET /metrics`, rendered by
//! `metrics-exporter-prometheus`. Counters and histograms are recorded where
//! things happen (broker and front ends, through the `metrics` facade);
//! gauges describing state (depths, offsets, lag, leases, request records)
//! are refreshed from the broker at each scrape. Names and labels are listed
//! in `docs/metrics.md`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use spool_broker::Broker;
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from 50 µs to 10 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Installs the process-wide recorder once; later calls reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    crate::metric_catalog::describe();
                    crate::metric_catalog::register_zero_counters();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!("metrics recorder not installed: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Folds recorded histogram samples into their buckets. Run regularly:
/// until then every sample is kept.
pub fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// Refreshes state gauges from the broker and renders the text format.
pub fn render(broker: &Broker) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    if let Ok(topics) = broker.list_topics(Some(">")) {
        for (name, _) in topics {
            let Ok(d) = broker.describe_topic(&name) else {
                continue;
            };
            for p in &d.partitions {
                let labels = [
                    ("topic", name.clone()),
                    ("partition", p.partition.to_string()),
                ];
                metrics::gauge!("spool_partition_messages", &labels).set(p.messages as f64);
                metrics::gauge!("spool_partition_bytes", &labels).set(p.bytes as f64);
                metrics::gauge!("spool_partition_start_offset", &labels).set(p.start_offset as f64);
                metrics::gauge!("spool_partition_end_offset", &labels).set(p.end_offset as f64);
            }
            let (m, b) = d
                .partitions
                .iter()
                .fold((0, 0), |(m, b), p| (m + p.messages, b + p.bytes));
            metrics::gauge!("spool_topic_messages", "topic" => name.clone()).set(m as f64);
            metrics::gauge!("spool_topic_bytes", "topic" => name.clone()).set(b as f64);
            // warn_depth (0 is off), so an alert needs no log scraping.
            let warn = d.config.warn_depth.filter(|w| *w > 0);
            if let Some(w) = warn {
                metrics::gauge!("spool_topic_warn_depth", "topic" => name.clone()).set(w as f64);
            }
            let over = warn.is_some_and(|w| m >= w);
            metrics::gauge!("spool_topic_over_warn_depth", "topic" => name.clone())
                .set(f64::from(u8::from(over)));
        }
    }
    for lag in broker.group_lags() {
        let labels = [
            ("group", lag.group),
            ("topic", lag.topic),
            ("partition", lag.partition.to_string()),
        ];
        metrics::gauge!("spool_group_lag_messages", &labels).set(lag.lag as f64);
        metrics::gauge!("spool_group_committed_offset", &labels).set(lag.committed as f64);
    }
    for q in broker.subscriptions() {
        let spec = q.spec();
        let labels = [
            ("topic", spec.topic.clone()),
            ("subscription", spec.name.clone()),
        ];
        let (outstanding, leased) = q.counts();
        let lag = broker.subscription_lag(&q);
        metrics::gauge!("spool_queue_lag_messages", &labels).set(lag as f64);
        metrics::gauge!("spool_queue_outstanding_messages", &labels).set(outstanding as f64);
        metrics::gauge!("spool_queue_leases_in_flight", &labels).set(leased as f64);
        metrics::counter!("spool_queue_redeliveries_total", &labels)
            .absolute(q.redeliveries.load(std::sync::atomic::Ordering::Relaxed));
        metrics::counter!("spool_queue_dead_letters_total", &labels)
            .absolute(q.dead_letters.load(std::sync::atomic::Ordering::Relaxed));
    }
    if let Ok(counts) = broker.request_counts() {
        for (state, n) in spool_types::RequestStatus::ALL.iter().zip(counts) {
            metrics::gauge!("spool_requests", "state" => state.as_str()).set(n as f64);
        }
    }
    handle.render()
}
