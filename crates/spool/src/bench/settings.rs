//! The checked settings of one `spool bench` run: flags validated, defaults
//! per workload filled in.

use crate::cli::{BenchArgs, BenchWorkload, DurabilityArg};
use crate::Failure;
use spool_client::{Durability, TopicConfig};
use spool_types::limits::{
    BATCH_RECORDS_MAX, CONNECTION_IN_FLIGHT_MAX, PARTITIONS_MAX, RECORD_BYTES_MAX,
};
use std::time::Duration;

/// Room left in a record for its framing and headers.
const RECORD_OVERHEAD_ROOM: usize = 1024;
/// Largest `--size`.
pub const SIZE_MAX: usize = RECORD_BYTES_MAX - RECORD_OVERHEAD_ROOM;
/// Bytes at the start of a payload holding its send time (latency
/// workloads), so those need at least this `--size`.
pub const STAMP_BYTES: usize = 8;
/// Most producers or consumers (each is a connection).
const CLIENTS_MAX: u64 = 1024;
/// Longest `--duration-s` / `--status-duration-s`: one day.
const DURATION_S_MAX: f64 = 86_400.0;
/// Highest `--rate`.
const RATE_MAX: u64 = 100_000_000;
/// Longest `--linger-ms`.
const LINGER_MS_MAX: u64 = 60_000;
/// Most messages a receive may lease (the server's own cap).
const RECEIVE_MAX: u64 = 1000;
/// Flush interval of `--fsync interval` without `--interval-ms`.
const INTERVAL_MS_DEFAULT: u32 = 1000;
/// The offered rate of end-to-end without `--rate`.
pub const E2E_RATE_DEFAULT: u64 = 10_000;
/// How long end-to-end runs without `--count` or `--duration-s`.
const E2E_DURATION_DEFAULT: Duration = Duration::from_secs(10);

/// When the senders stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many messages in all.
    Count(u64),
    /// After this long.
    Time(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub workload: BenchWorkload,
    pub size: usize,
    pub stop: Stop,
    pub producers: u32,
    pub consumers: u32,
    pub partitions: u32,
    pub batch: usize,
    pub window: usize,
    pub linger: Duration,
    /// Messages/s over all producers; `None`: as fast as acknowledgements
    /// allow.
    pub rate: Option<u64>,
    pub fsync: DurabilityArg,
    pub interval_ms: u32,
    pub receive_max: u32,
    pub status_duration: Duration,
    pub json: bool,
}

pub fn workload_name(w: BenchWorkload) -> &'static str {
    match w {
        BenchWorkload::Produce => "produce",
        BenchWorkload::Consume => "consume",
        BenchWorkload::EndToEnd => "end-to-end",
        BenchWorkload::Queue => "queue",
        BenchWorkload::Requests => "requests",
    }
}

/// Consumers when `--consumers` is not given: 16 for queue and requests,
/// else 1.
fn default_consumers(w: BenchWorkload) -> u64 {
    match w {
        BenchWorkload::Queue | BenchWorkload::Requests => 16,
        _ => 1,
    }
}

/// Linger when `--linger-ms` is not given: 0 for end-to-end and queue,
/// else 5.
fn default_linger_ms(w: BenchWorkload) -> u64 {
    match w {
        BenchWorkload::EndToEnd | BenchWorkload::Queue => 0,
        _ => 5,
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new("INVALID_REQUEST", message)
}

/// `value` as a count between `min` and `max`, or an error naming `flag`.
fn ranged(flag: &str, value: u64, min: u64, max: u64) -> Result<u64, Failure> {
    if value < min && max == u64::MAX {
        return Err(invalid(format!(
            "{flag} must be at least {min}, not {value}"
        )));
    }
    if value < min || value > max {
        return Err(invalid(format!(
            "{flag} must be between {min} and {max}, not {value}"
        )));
    }
    Ok(value)
}

fn seconds(flag: &str, s: f64) -> Result<Duration, Failure> {
    if !s.is_finite() || s <= 0.0 || s > DURATION_S_MAX {
        return Err(invalid(format!(
            "{flag} must be more than 0 and at most {DURATION_S_MAX} seconds, not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Settings {
    /// Checks the flags and fills in the workload's defaults.
    pub fn from_args(a: &BenchArgs) -> Result<Settings, Failure> {
        let w = a.workload;
        let name = workload_name(w);
        let latency = matches!(
            w,
            BenchWorkload::EndToEnd | BenchWorkload::Queue | BenchWorkload::Requests
        );
        let min_size = if latency { STAMP_BYTES as u64 } else { 1 };
        if a.size < min_size || a.size > SIZE_MAX as u64 {
            let why = if latency {
                format!(" ({name} writes the send time into the first {STAMP_BYTES} bytes)")
            } else {
                String::new()
            };
            return Err(invalid(format!(
                "--size must be between {min_size} and {SIZE_MAX} bytes{why}, not {}",
                a.size
            )));
        }
        let size = usize::try_from(a.size).unwrap_or(SIZE_MAX);
        let producers = ranged("--producers", a.producers, 1, CLIENTS_MAX)?;
        let consumers = a.consumers.unwrap_or(default_consumers(w));
        let consumers = ranged("--consumers", consumers, 1, CLIENTS_MAX)?;
        let partitions_default = match w {
            BenchWorkload::Consume | BenchWorkload::EndToEnd => consumers,
            _ => 1,
        };
        let partitions = a.partitions.unwrap_or(partitions_default);
        let partitions = ranged("--partitions", partitions, 1, u64::from(PARTITIONS_MAX))?;
        if matches!(w, BenchWorkload::Consume | BenchWorkload::EndToEnd) && consumers > partitions {
            return Err(invalid(format!(
                "{name}: each consumer reads its own partitions, so --partitions ({partitions}) must be at least --consumers ({consumers})"
            )));
        }
        let batch = ranged("--batch", a.batch, 1, BATCH_RECORDS_MAX as u64)?;
        let window = ranged("--window", a.window, 1, CONNECTION_IN_FLIGHT_MAX as u64)?;
        let linger_ms = a.linger_ms.unwrap_or(default_linger_ms(w));
        let linger_ms = ranged("--linger-ms", linger_ms, 0, LINGER_MS_MAX)?;
        let rate = match (w, a.rate) {
            (BenchWorkload::Consume | BenchWorkload::Requests, Some(_)) => {
                return Err(invalid(format!(
                    "--rate applies to produce, end-to-end and queue, not {name}"
                )))
            }
            (BenchWorkload::EndToEnd, None) => Some(E2E_RATE_DEFAULT),
            (_, r) => r,
        };
        if let Some(r) = rate {
            ranged("--rate", r, 1, RATE_MAX)?;
        }
        if a.count.is_some() && a.duration_s.is_some() {
            return Err(invalid("give --count or --duration-s, not both"));
        }
        let stop = match (a.count, a.duration_s) {
            (Some(n), _) => Stop::Count(ranged("--count", n, 1, u64::MAX)?),
            (None, Some(s)) => {
                if w == BenchWorkload::Consume {
                    return Err(invalid(
                        "consume reads a pre-filled topic of --count messages; --duration-s does not apply",
                    ));
                }
                Stop::Time(seconds("--duration-s", s)?)
            }
            (None, None) => match w {
                BenchWorkload::Produce | BenchWorkload::Consume => Stop::Count(100_000),
                BenchWorkload::Queue => Stop::Count(50_000),
                BenchWorkload::Requests => Stop::Count(10_000),
                BenchWorkload::EndToEnd => Stop::Time(E2E_DURATION_DEFAULT),
            },
        };
        let interval_ms = match (a.fsync, a.interval_ms) {
            (DurabilityArg::Interval, ms) => u32::try_from(ranged(
                "--interval-ms",
                u64::from(ms.unwrap_or(INTERVAL_MS_DEFAULT)),
                1,
                u64::from(u32::MAX),
            )?)
            .unwrap_or(INTERVAL_MS_DEFAULT),
            (_, Some(_)) => {
                return Err(invalid("--interval-ms applies only to --fsync interval"));
            }
            (_, None) => 0,
        };
        let receive_max = ranged("--receive-max", a.receive_max, 1, RECEIVE_MAX)?;
        let status_duration = seconds("--status-duration-s", a.status_duration_s)?;
        Ok(Settings {
            workload: w,
            size,
            stop,
            producers: to_u32(producers),
            consumers: to_u32(consumers),
            partitions: to_u32(partitions),
            batch: usize::try_from(batch).unwrap_or(BATCH_RECORDS_MAX),
            window: usize::try_from(window).unwrap_or(CONNECTION_IN_FLIGHT_MAX),
            linger: Duration::from_millis(linger_ms),
            rate,
            fsync: a.fsync,
            interval_ms,
            receive_max: to_u32(receive_max),
            status_duration,
            json: a.json,
        })
    }

    pub fn durability_name(&self) -> &'static str {
        match self.fsync {
            DurabilityArg::Always => "always",
            DurabilityArg::Interval => "interval",
            DurabilityArg::Never => "never",
        }
    }

    /// The bench topic's configuration: server defaults but durability.
    pub fn topic_config(&self) -> TopicConfig {
        let durability = match self.fsync {
            DurabilityArg::Always => Durability::Always,
            DurabilityArg::Interval => Durability::Interval {
                interval_ms: self.interval_ms,
            },
            DurabilityArg::Never => Durability::Never,
        };
        TopicConfig {
            durability: Some(durability),
            ..TopicConfig::default()
        }
    }

    /// Each producer's share of a count (the first ones take the rest).
    pub fn shares(total: u64, parts: u32) -> Vec<u64> {
        let parts = u64::from(parts.max(1));
        (0..parts)
            .map(|i| total / parts + u64::from(i < total % parts))
            .collect()
    }
}
