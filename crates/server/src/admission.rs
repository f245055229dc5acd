//! Who may open a connection: the server-wide connection limit and the
//! per-peer-address limit, shared by both listeners. A [`Permit`] is held
//! for the life of a connection; dropping it frees the slot and updates
//! the `spool_connections` gauge.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which front end a connection came in on (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Binary,
    Http,
}

impl Listener {
    /// Both listeners, for registering their counters at zero.
    pub const ALL: [Listener; 2] = [Listener::Binary, Listener::Http];

    pub fn label(self) -> &'static str {
        match self {
            Listener::Binary => "binary",
            Listener::Http => "http",
        }
    }
}

/// Why a connection was refused (a metric label and a log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` reached.
    ServerFull,
    /// `max_connections_per_peer` reached for this address.
    PeerFull,
}

impl Refusal {
    /// Every reason, for registering the counters at zero.
    pub const ALL: [Refusal; 2] = [Refusal::ServerFull, Refusal::PeerFull];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::ServerFull => "max_connections",
            Refusal::PeerFull => "max_connections_per_peer",
        }
    }

    /// What the refused client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ServerFull => "the server is at its connection limit; try again later",
            Refusal::PeerFull => {
                "this address has as many connections open as the server allows one peer; close some or try again later"
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    by_peer: HashMap<IpAddr, usize>,
    by_listener: [usize; 2],
}

impl Counts {
    fn total(&self) -> usize {
        self.by_listener.iter().sum()
    }
}

pub(crate) struct Admission {
    max_total: usize,
    /// `None`: no per-peer limit beyond `max_total`.
    max_per_peer: Option<usize>,
    counts: Mutex<Counts>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_peer: Option<usize>) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_peer,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, listener: Listener) -> Result<Permit, Refusal> {
        let refusal = {
            let mut counts = self.lock();
            let of_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
            if counts.total() >= self.max_total {
                Some(Refusal::ServerFull)
            } else if self.max_per_peer.is_some_and(|max| of_peer >= max) {
                Some(Refusal::PeerFull)
            } else {
                *counts.by_peer.entry(peer).or_insert(0) += 1;
                counts.by_listener[listener as usize] += 1;
                metrics::gauge!("spool_connections", "listener" => listener.label())
                    .set(counts.by_listener[listener as usize] as f64);
                None
            }
        };
        match refusal {
            None => {
                metrics::counter!("spool_connections_accepted_total", "listener" => listener.label())
                    .increment(1);
                Ok(Permit {
                    admission: Arc::clone(self),
                    peer,
                    listener,
                })
            }
            Some(r) => {
                metrics::counter!(
                    "spool_connections_refused_total",
                    "listener" => listener.label(),
                    "reason" => r.label()
                )
                .increment(1);
                Err(r)
            }
        }
    }

    fn release(&self, peer: IpAddr, listener: Listener) {
        let mut counts = self.lock();
        if let Some(n) = counts.by_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&peer);
            }
        }
        let open = &mut counts.by_listener[listener as usize];
        *open = open.saturating_sub(1);
        metrics::gauge!("spool_connections", "listener" => listener.label()).set(*open as f64);
    }
}

/// One admitted connection's slot.
pub(crate) struct Permit {
    admission: Arc<Admission>,
    peer: IpAddr,
    listener: Listener,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.peer, self.listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_peer_and_frees_on_drop() {
        let a = Admission::new(3, Some(2));
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let p1 = a.admit(one, Listener::Binary).unwrap();
        let _p2 = a.admit(one, Listener::Http).unwrap();
        assert_eq!(
            a.admit(one, Listener::Binary).err(),
            Some(Refusal::PeerFull)
        );
        let _p3 = a.admit(two, Listener::Binary).unwrap();
        assert_eq!(
            a.admit(two, Listener::Binary).err(),
            Some(Refusal::ServerFull)
        );
        drop(p1);
        assert!(a.admit(one, Listener::Binary).is_ok());
    }

    #[test]
    fn no_per_peer_limit_means_only_the_total() {
        let a = Admission::new(2, None);
        let one: IpAddr = [10, 0, 0, 1].into();
        let _k: Vec<_> = (0..2)
            .map(|_| a.admit(one, Listener::Binary).unwrap())
            .collect();
        assert_eq!(
            a.admit(one, Listener::Binary).err(),
            Some(Refusal::ServerFull)
        );
    }
}
