//! Per-address limits on failed authentications and per-token request
//! rates. Both are in memory only and local to this server: they protect
//! it, they are not state a cluster agrees on.

use super::AUTH_FAILURES_PER_MINUTE;
use spool_types::limits::{FAILURE_PEERS_MAX, RATE_BUCKETS_MAX};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed authentications per peer address, in fixed one-minute windows.
#[derive(Default)]
pub(super) struct Failures {
    peers: HashMap<IpAddr, (Instant, u32)>,
}

impl Failures {
    /// Whether `ip` used up its failures for this window.
    pub(super) fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.peers.get(&ip) {
            Some((start, n)) if now.duration_since(*start) < FAILURE_WINDOW => {
                *n >= AUTH_FAILURES_PER_MINUTE
            }
            Some(_) => {
                self.peers.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts a failure; returns how many `ip` has in this window.
    pub(super) fn record(&mut self, ip: IpAddr, now: Instant) -> u32 {
        if self.peers.len() >= FAILURE_PEERS_MAX {
            self.peers
                .retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        }
        let entry = self.peers.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

/// A token bucket: `rate_per_s` requests a second on average, bursts of
/// up to one second's worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-token request rates ([`Auth::charge`](super::Auth::charge)).
#[derive(Default)]
pub(super) struct Rates {
    /// 0: unlimited.
    pub(super) rate_per_s: u32,
    buckets: HashMap<String, Bucket>,
}

impl Rates {
    /// Takes one request from `name`'s bucket, or says how long until one
    /// is available.
    pub(super) fn take(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.rate_per_s);
        if rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= RATE_BUCKETS_MAX && !self.buckets.contains_key(name) {
            // Full buckets say nothing; forget them.
            self.buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < rate
            });
        }
        let bucket = self.buckets.entry(name.to_owned()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let mut rates = Rates {
            rate_per_s: 10,
            ..Rates::default()
        };
        let t0 = Instant::now();
        for _ in 0..10 {
            rates.take("a", t0).unwrap();
        }
        let wait = rates.take("a", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another token has its own bucket.
        rates.take("b", t0).unwrap();
        // 100 ms later one request's worth is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        rates.take("a", t1).unwrap();
        assert!(rates.take("a", t1).is_err());
        // Unlimited when the rate is 0.
        rates.rate_per_s = 0;
        for _ in 0..1000 {
            rates.take("a", t1).unwrap();
        }
    }
}
