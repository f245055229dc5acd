//! What a bench run prints: one JSON object (`--json`) or a table.
//!
//! Contract keys (external checks read them): `workload`, `msgs_per_s`,
//! `mb_per_s`, `size`, `durability`, and for latency workloads `p50_us`,
//! `p99_us`, `p999_us`, `max_us`. MB are 10^6 bytes of message payload.

use super::settings::{workload_name, Settings, Stop};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// Highest latency the histograms hold, in µs (one hour); longer ones are
/// recorded as this.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Constant bounds that `new_with_bounds` accepts (low ≥ 1, high ≥
    // 2·low, 3 significant figures): a unit test creates one.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Records one latency (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, LATENCY_US_MAX));
}

/// Latency percentiles, in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The outcome of one workload run.
#[derive(Debug, Clone)]
pub struct Report {
    pub settings: Settings,
    pub addr: String,
    pub topic: String,
    /// Messages (requests) that made the measured trip.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// What the latency measures, when the workload has one.
    pub latency: Option<(Latency, &'static str)>,
    /// Workload-specific numbers, in the order shown.
    pub extra: Vec<(&'static str, Value)>,
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

impl Report {
    pub fn msgs_per_s(&self) -> f64 {
        per_s(self.messages, self.elapsed)
    }

    pub fn mb_per_s(&self) -> f64 {
        per_s(self.bytes, self.elapsed) / 1e6
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let s = &self.settings;
        let mut o = Map::new();
        o.insert("workload".into(), json!(workload_name(s.workload)));
        o.insert("msgs_per_s".into(), json!(round(self.msgs_per_s(), 1)));
        o.insert("mb_per_s".into(), json!(round(self.mb_per_s(), 3)));
        o.insert("size".into(), json!(s.size));
        o.insert("durability".into(), json!(s.durability_name()));
        if let Some((l, measures)) = &self.latency {
            o.insert("p50_us".into(), json!(l.p50_us));
            o.insert("p99_us".into(), json!(l.p99_us));
            o.insert("p999_us".into(), json!(l.p999_us));
            o.insert("max_us".into(), json!(l.max_us));
            o.insert("mean_us".into(), json!(round(l.mean_us, 1)));
            o.insert("latency_samples".into(), json!(l.samples));
            o.insert("latency".into(), json!(measures));
        }
        o.insert("messages".into(), json!(self.messages));
        o.insert("bytes".into(), json!(self.bytes));
        o.insert(
            "elapsed_s".into(),
            json!(round(self.elapsed.as_secs_f64(), 4)),
        );
        for (k, v) in &self.extra {
            o.insert((*k).into(), v.clone());
        }
        if s.fsync == crate::cli::DurabilityArg::Interval {
            o.insert("interval_ms".into(), json!(s.interval_ms));
        }
        o.insert("producers".into(), json!(s.producers));
        o.insert("consumers".into(), json!(s.consumers));
        o.insert("partitions".into(), json!(s.partitions));
        o.insert("batch".into(), json!(s.batch));
        o.insert("window".into(), json!(s.window));
        o.insert(
            "linger_ms".into(),
            json!(u64::try_from(s.linger.as_millis()).unwrap_or(u64::MAX)),
        );
        o.insert("rate".into(), json!(s.rate));
        match s.stop {
            Stop::Count(n) => o.insert("count".into(), json!(n)),
            Stop::Time(d) => o.insert("duration_s".into(), json!(d.as_secs_f64())),
        };
        if matches!(
            s.workload,
            crate::cli::BenchWorkload::Queue | crate::cli::BenchWorkload::Requests
        ) {
            o.insert("receive_max".into(), json!(s.receive_max));
        }
        o.insert("addr".into(), json!(self.addr));
        o.insert("topic".into(), json!(self.topic));
        Value::Object(o)
    }

    /// The readable table.
    pub fn to_table(&self) -> String {
        let s = &self.settings;
        let mut rows: Vec<(String, String)> = vec![
            ("workload".into(), workload_name(s.workload).into()),
            ("durability".into(), durability_text(s)),
            ("messages".into(), thousands(self.messages)),
            (
                "elapsed".into(),
                format!("{:.3} s", self.elapsed.as_secs_f64()),
            ),
            ("msgs/s".into(), thousands(self.msgs_per_s().round() as u64)),
            ("MB/s".into(), format!("{:.2}", self.mb_per_s())),
        ];
        if let Some((l, measures)) = &self.latency {
            rows.push(("latency of".into(), (*measures).into()));
            for (name, v) in [
                ("p50", l.p50_us),
                ("p99", l.p99_us),
                ("p99.9", l.p999_us),
                ("max", l.max_us),
            ] {
                rows.push((name.into(), format!("{} µs", thousands(v))));
            }
        }
        for (k, v) in &self.extra {
            let text = match v {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if n.is_f64() => format!("{f:.1}"),
                    _ => n.to_string(),
                },
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            rows.push(((*k).replace('_', " "), text));
        }
        let stop = match s.stop {
            Stop::Count(n) => format!("count {}", thousands(n)),
            Stop::Time(d) => format!("duration {} s", d.as_secs_f64()),
        };
        let settings = format!(
            "{stop}, size {} B, producers {}, consumers {}, partitions {}, batch {}, window {}, linger {} ms, rate {}",
            s.size,
            s.producers,
            s.consumers,
            s.partitions,
            s.batch,
            s.window,
            s.linger.as_millis(),
            s.rate.map_or_else(|| "unpaced".to_owned(), |r| format!("{r}/s")),
        );
        rows.push(("settings".into(), settings));
        rows.push(("server".into(), self.addr.clone()));
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }
}

fn durability_text(s: &Settings) -> String {
    match s.fsync {
        crate::cli::DurabilityArg::Interval => format!("interval ({} ms)", s.interval_ms),
        _ => s.durability_name().to_owned(),
    }
}

pub fn per_s(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let first = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(&digits[..first]);
    let mut rest = &digits[first..];
    while !rest.is_empty() {
        out.push(',');
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}
