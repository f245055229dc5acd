//! Accepting connections when the process is out of descriptors (or the
//! kernel out of memory for sockets), for both listeners.
//!
//! `accept` then fails at once, and keeps failing, while the listener stays
//! readable: a loop that only retried would spin, and one that logged each
//! failure would log without end. [`Acceptor`] backs off instead (from
//! [`ACCEPT_BACKOFF_MIN_MS`], doubling to [`ACCEPT_BACKOFF_MAX_MS`]), logs one
//! warning per episode (an episode ends once accepting has worked for
//! [`ACCEPT_EPISODE_QUIET_MS`]; an info line then says what it cost), and
//! closes the connections waiting in the backlog at once rather than leave
//! their clients hanging: it keeps one descriptor in reserve (`/dev/null`),
//! and on `EMFILE`/`ENFILE` gives it up for as long as it takes to accept
//! each waiting connection and close it (the technique of libev and nginx).

use crate::admission::Listener as Kind;
use futures::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The first pause after `accept` failed for want of resources.
pub const ACCEPT_BACKOFF_MIN_MS: u64 = 100;

/// The longest pause between attempts while `accept` keeps failing: how long
/// a client may wait for a descriptor freed meanwhile.
pub const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// How long accepting must work without a failure before an episode of
/// failures is over (and the next failure is logged again). At the limit,
/// every descriptor freed is taken by the next accept and the one after
/// fails: without this, a busy server would log a warning per connection.
pub const ACCEPT_EPISODE_QUIET_MS: u64 = 5_000;

/// Most waiting connections closed in one go when out of descriptors, so a
/// flood of connections cannot keep the accept task from yielding.
const SHED_BATCH_MAX: u64 = 1_024;

/// A listener's accept loop with back-off (see the module documentation).
pub(crate) struct Acceptor {
    listener: TcpListener,
    kind: Kind,
    /// The descriptor given up to accept (and close) a waiting connection
    /// when there is none left; `None` if it could not be opened (again).
    reserve: Option<std::fs::File>,
    /// The failures since accepting last worked for
    /// [`ACCEPT_EPISODE_QUIET_MS`], if any.
    episode: Option<Episode>,
    /// Episodes begun (each logged once).
    episodes: u64,
}

struct Episode {
    since: Instant,
    failures: u64,
    /// Connections closed unserved.
    shed: u64,
    /// The next pause.
    backoff: Duration,
    /// Since when accepting has worked without a failure, if it has.
    working_since: Option<Instant>,
}

impl Acceptor {
    pub fn new(listener: TcpListener, kind: Kind) -> Acceptor {
        Acceptor {
            listener,
            kind,
            reserve: open_reserve(),
            episode: None,
            episodes: 0,
        }
    }

    /// The next connection. Cancel-safe: state survives between calls.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.accepted();
                    return accepted;
                }
                // The connection went away before it was accepted: nothing
                // is wrong with the listener.
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    let pause = self.failed(&e);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Counts a failure (logging the first of an episode), closes waiting
    /// connections if that can help their clients, and says how long to
    /// pause.
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.end_quiet_episode();
        let out_of_descriptors = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        if self.episode.is_none() {
            tracing::warn!(
                listener = self.kind.label(),
                "cannot accept connections: {e}; retrying every {ACCEPT_BACKOFF_MIN_MS}–\
                 {ACCEPT_BACKOFF_MAX_MS} ms{} (logged once until accepting has worked for \
                 {ACCEPT_EPISODE_QUIET_MS} ms)",
                if out_of_descriptors {
                    ", closing waiting connections meanwhile"
                } else {
                    ""
                }
            );
            self.episodes += 1;
        }
        let shed = if out_of_descriptors { self.shed() } else { 0 };
        let episode = self.episode.get_or_insert_with(|| Episode {
            since: Instant::now(),
            failures: 0,
            shed: 0,
            backoff: Duration::from_millis(ACCEPT_BACKOFF_MIN_MS),
            working_since: None,
        });
        episode.failures += 1;
        episode.shed += shed;
        episode.working_since = None;
        let pause = episode.backoff;
        episode.backoff = (pause * 2).min(Duration::from_millis(ACCEPT_BACKOFF_MAX_MS));
        pause
    }

    /// Accepts and at once closes the connections waiting now, with the
    /// reserve descriptor; how many. Their clients see the connection
    /// closed instead of waiting for an accept that may not come.
    fn shed(&mut self) -> u64 {
        let Some(reserve) = self.reserve.take() else {
            self.reserve = open_reserve();
            return 0;
        };
        drop(reserve);
        let mut shed = 0;
        while shed < SHED_BATCH_MAX {
            // Only what is waiting already: never wait here.
            match self.listener.accept().now_or_never() {
                Some(Ok((stream, _))) => {
                    // A reset, not a FIN: no TIME_WAIT, and the client
                    // learns at once.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    shed += 1;
                }
                Some(Err(_)) | None => break,
            }
        }
        // Another thread may have taken the descriptor meanwhile; then
        // the next failure tries again.
        self.reserve = open_reserve();
        if shed > 0 {
            metrics::counter!("spool_connections_shed_total", "listener" => self.kind.label())
                .increment(shed);
        }
        shed
    }

    /// A connection was accepted: pauses start short again, and an episode
    /// ends once accepting has worked for [`ACCEPT_EPISODE_QUIET_MS`].
    fn accepted(&mut self) {
        self.end_quiet_episode();
        if let Some(episode) = &mut self.episode {
            episode.backoff = Duration::from_millis(ACCEPT_BACKOFF_MIN_MS);
            episode.working_since.get_or_insert_with(Instant::now);
        }
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
    }

    /// Ends the episode (logging what it cost) if accepting has worked
    /// for [`ACCEPT_EPISODE_QUIET_MS`] since its last failure.
    fn end_quiet_episode(&mut self) {
        let quiet = Duration::from_millis(ACCEPT_EPISODE_QUIET_MS);
        let Some(episode) = self
            .episode
            .take_if(|e| e.working_since.is_some_and(|t| t.elapsed() >= quiet))
        else {
            return;
        };
        tracing::info!(
            listener = self.kind.label(),
            "accepting connections again: {} failed attempts over {:?}; {} waiting \
             connections were closed unserved",
            episode.failures,
            episode.working_since.unwrap_or(episode.since) - episode.since,
            episode.shed
        );
    }
}

/// Failures of one connection, not of the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(e.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_episode_until_accepting_works_for_a_while_with_doubling_pauses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut acceptor = Acceptor::new(listener, Kind::Binary);
        let e = io::Error::from_raw_os_error(libc::ENOBUFS);
        let pauses: Vec<u64> = (0..6)
            .map(|_| acceptor.failed(&e).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1_000, 1_000]);
        // A connection taken, then failures again soon after: the same
        // episode, with short pauses again.
        acceptor.accepted();
        tokio::time::advance(Duration::from_millis(ACCEPT_EPISODE_QUIET_MS - 1)).await;
        assert_eq!(acceptor.failed(&e), Duration::from_millis(100));
        assert_eq!(acceptor.episodes, 1);
        assert_eq!(acceptor.episode.as_ref().map(|e| e.failures), Some(7));
        // Accepting went on working long enough: the next failure is news.
        acceptor.accepted();
        tokio::time::advance(Duration::from_millis(ACCEPT_EPISODE_QUIET_MS)).await;
        acceptor.failed(&e);
        assert_eq!(acceptor.episodes, 2);
        assert_eq!(acceptor.episode.as_ref().map(|e| e.failures), Some(1));
        // Failures alone never end one.
        tokio::time::advance(Duration::from_millis(10 * ACCEPT_EPISODE_QUIET_MS)).await;
        acceptor.failed(&e);
        assert_eq!(acceptor.episodes, 2);
    }

    #[tokio::test]
    async fn out_of_descriptors_closes_the_waiting_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, Kind::Http);
        let mut clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // Let the listener see them as readable.
        tokio::time::sleep(Duration::from_millis(50)).await;
        acceptor.failed(&io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(acceptor.episode.as_ref().map(|e| e.shed), Some(3));
        assert!(acceptor.reserve.is_some());
        for c in &mut clients {
            use std::io::Read;
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            match c.read(&mut [0u8; 1]) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("a waiting connection was not closed: {other:?}"),
            }
        }
    }
}
