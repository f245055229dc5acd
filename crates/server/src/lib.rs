//! Spool's network front end: the binary protocol over TCP on top of the
//! broker. Thin by design: it frames bytes (`spool-proto`), converts wire
//! types to broker calls (`convert`), and owns everything asynchronous —
//! connections, long-poll waits, push tasks, the housekeeping tick and
//! graceful shutdown.
//!
//! - [`ServerConfig`] and [`Server`]: bind, then [`Server::serve`] until a
//!   shutdown future resolves (SIGINT/SIGTERM in the binary).
//! - [`ops`]: the operations layer — every operation, authorised,
//!   validated and run once for all front ends.
//! - `connection`: one task per connection, pipelined requests, per-connection
//!   in-flight limits (count and bytes) that stop reading when exceeded.
//! - `notify`: per-partition wake-ups for long polls and push subscriptions.
//! - [`auth`]: tokens, permissions and the token store (both listeners).
//! - `admission`, `listener`, [`tls`]: connection limits and TLS for both
//!   listeners.
//! - [`EmbeddedServer`]: the same broker and connection handling in-process,
//!   over in-memory pipes (the in-app queue).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accept;
mod admission;
pub mod auth;
mod callbacks;
pub mod cluster;
mod connection;
mod convert;
pub mod descriptors;
mod embedded;
pub mod http;
mod listener;
mod metric_catalog;
mod metrics;
mod notify;
pub mod ops;
pub mod outbound;
mod push_http;
pub mod tls;

pub use embedded::{EmbeddedServer, EMBEDDED_PEER, PIPE_BUFFER_BYTES};

use anyhow::Context;
use ops::Ops;
use spool_broker::Broker;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`). The common default of 128 drops SYNs in a burst of
/// connections, which then wait out a 1–3 s retransmit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with [`LISTEN_BACKLOG`] and address reuse (restarts
/// must not wait for old connections in TIME_WAIT).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How often the broker's housekeeping runs (sessions, retention, interval syncs).
pub const TICK_INTERVAL_MS: u64 = 200;

/// Ticks between metrics upkeeps (every 5 s): the exporter keeps every
/// histogram sample until it is folded in, which otherwise happens only when
/// `/metrics` is scraped — without a scraper that grew without bound
/// (4 MiB a minute in a soak).
const METRICS_UPKEEP_TICKS: u64 = 25;

/// How long shutdown waits for in-flight requests before closing anyway.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where the HTTP API listens; `None` serves no HTTP.
    pub http_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Most connections open at once, both listeners together.
    pub max_connections: usize,
    /// Most connections open at once from one IP address; `None`: only
    /// `max_connections` applies.
    pub max_connections_per_peer: Option<usize>,
    /// Secret for signing callbacks and HTTP push deliveries (at least
    /// [`CALLBACK_SECRET_LEN_MIN`] bytes); when `None`, one is generated on
    /// first start and kept in `<data_dir>/callback.secret`.
    pub callback_secret: Option<auth::Secret>,
    /// Where callbacks and push endpoints may go: `[http(s)://]host[:port]`
    /// entries, `*` for any host (see [`outbound::AllowList`]).
    pub outbound_allow_hosts: Vec<String>,
    /// How long a failing callback is retried.
    pub callback_retry_ms: i64,
    /// How long finished request records are kept.
    pub request_ttl_ms: i64,
    /// The bootstrap admin token. When set, every request needs a valid
    /// token (see [`auth`]); when `None`, nothing is checked.
    pub admin_token: Option<auth::Secret>,
    /// Requests per second one token may make (both listeners together);
    /// `None`: unlimited. Needs authentication to mean anything.
    pub token_rate_per_s: Option<u32>,
    /// Serve both listeners over TLS with this certificate and key.
    pub tls: Option<tls::TlsFiles>,
    /// Run as a node of a replicated cluster; `None`: single-node.
    pub cluster: Option<cluster::ClusterSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7421))),
            data_dir: PathBuf::from("spool-data"),
            max_connections: spool_types::limits::CONNECTIONS_MAX_DEFAULT,
            max_connections_per_peer: None,
            callback_secret: None,
            outbound_allow_hosts: outbound::LOOPBACK_HOSTS.map(String::from).to_vec(),
            callback_retry_ms: spool_broker::requests::CALLBACK_RETRY_MS_DEFAULT,
            request_ttl_ms: spool_broker::requests::REQUEST_TTL_MS_DEFAULT,
            admin_token: None,
            token_rate_per_s: None,
            tls: None,
            cluster: None,
        }
    }
}

/// Milliseconds since the Unix epoch: the broker's notion of now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the data directory, recovering every log.
pub(crate) async fn open_broker(config: &ServerConfig) -> anyhow::Result<Broker> {
    // Install the metrics recorder before anything records.
    let _ = metrics::handle();
    let dir = config.data_dir.clone();
    let (broker, notes) = tokio::task::spawn_blocking(move || Broker::open(&dir, now_ms()))
        .await?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
    for note in notes {
        tracing::warn!("recovery: {note}");
    }
    broker.set_request_ttl_ms(config.request_ttl_ms);
    Ok(broker)
}

/// Everything a serving broker runs besides its listeners: the operations
/// layer every front end calls, housekeeping, callbacks and HTTP push
/// delivery. The
/// network server and the embedded broker both run one.
pub(crate) struct Runtime {
    pub ops: Arc<Ops>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    pub fn start(
        broker: Arc<Broker>,
        auth: Arc<auth::Auth>,
        config: &ServerConfig,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> anyhow::Result<Runtime> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let allow = allow_list(config)?;
        let mut ops = Ops::new(
            Arc::clone(&broker),
            stop_rx.clone(),
            format!("spool-{}", env!("CARGO_PKG_VERSION")),
            allow.clone(),
            auth,
        );
        ops.cluster = cluster;
        let ops = Arc::new(ops);
        if let Some(cluster) = &ops.cluster {
            cluster.serve_reads(Arc::downgrade(&ops));
        }
        let secret = Arc::new(callback_secret(config)?);
        let client = outbound::client().map_err(|e| {
            anyhow::anyhow!("cannot build the HTTP client for callbacks and push deliveries: {e}")
        })?;
        let tasks = vec![
            tokio::spawn(tick_loop(Arc::clone(&broker), stop_rx.clone())),
            tokio::spawn(callbacks::callback_loop(
                client.clone(),
                Arc::clone(&broker),
                Arc::clone(&secret),
                allow.clone(),
                config.callback_retry_ms,
                stop_rx.clone(),
            )),
            tokio::spawn(push_http::push_manager(
                client,
                Arc::clone(&broker),
                Arc::clone(&ops.notifier),
                allow,
                secret,
                stop_rx,
            )),
        ];
        Ok(Runtime {
            ops,
            stop_tx,
            tasks,
        })
    }

    /// Tells connections to finish (long polls answer, pushes stop).
    pub fn signal_stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Stops the background tasks and flushes the broker; returns once
    /// nothing else holds the broker, or after [`BROKER_RELEASE_WAIT`] (a
    /// client still connected keeps it open until it disconnects).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.stop_tasks();
        let broker = Arc::clone(&self.ops.broker);
        tokio::task::spawn_blocking(move || broker.flush()).await??;
        // Connections closed just before this may still be unwinding and
        // hold the broker, directly or through `ops` (both counts
        // matter); give them a moment, so that the broker (and its files'
        // locks) is gone when this returns and the directory can be opened
        // again at once.
        let deadline = tokio::time::Instant::now() + BROKER_RELEASE_WAIT;
        let held_elsewhere =
            |rt: &Runtime| Arc::strong_count(&rt.ops) > 1 || Arc::strong_count(&rt.ops.broker) > 1;
        while held_elsewhere(&self) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        if held_elsewhere(&self) {
            tracing::warn!(
                "the broker is still in use after {BROKER_RELEASE_WAIT:?} (a client still \
                 connected?); its files close when the last user lets go"
            );
        }
        Ok(())
    }

    fn stop_tasks(&mut self) {
        self.signal_stop();
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// How long [`Runtime::finish`] waits for connections that are closing to
/// let go of the broker.
pub const BROKER_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Runtime {
    /// Dropped without [`Runtime::finish`] (an embedded broker going out of
    /// scope): stop the background tasks so they do not outlive it.
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// A bound, recovered server, ready to serve.
pub struct Server {
    listener: TcpListener,
    /// The node-to-node listener, when this server is a cluster node.
    cluster_listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    auth: Arc<auth::Auth>,
    config: ServerConfig,
}

impl Server {
    /// Opens the data directory (recovering every log) and binds the listener.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        // Bad certificate files fail the start before any data is opened.
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let broker = open_broker(&config).await?;
        // A callback secret that is too short (or unreadable) and a
        // malformed allow-list fail here, before the server announces
        // itself; the runtime reads them again.
        callback_secret(&config)?;
        allow_list(&config)?;
        let auth = auth::Auth::open(&config.data_dir, config.admin_token.as_ref())?;
        auth.set_rate_limit(config.token_rate_per_s);
        let cluster_listener = match &config.cluster {
            Some(settings) => Some(cluster::Cluster::bind(settings).await?),
            None => None,
        };
        let listener =
            listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let http_listener = match config.http_listen {
            Some(addr) => {
                Some(listen(addr).with_context(|| format!("cannot listen for HTTP on {addr}"))?)
            }
            None => None,
        };
        Ok(Server {
            listener,
            cluster_listener,
            http_listener,
            tls,
            broker: Arc::new(broker),
            auth: Arc::new(auth),
            config,
        })
    }

    /// The HTTP API's bound address, if it serves one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn broker(&self) -> Arc<Broker> {
        Arc::clone(&self.broker)
    }

    /// What the server needs of the open-file limit: its logs as opened,
    /// the cache of sealed segments' files, `max_connections` and
    /// [`descriptors::DESCRIPTORS_RESERVED`].
    pub fn descriptor_needs(&self) -> descriptors::DescriptorNeeds {
        descriptors::DescriptorNeeds {
            log_files: self.broker.open_log_files() as u64,
            sealed_files: spool_log::SEALED_FILES_OPEN_MAX as u64,
            connections: self.config.max_connections as u64,
            reserved: descriptors::DESCRIPTORS_RESERVED,
        }
    }

    /// Whether requests need a token (an admin token is configured).
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Whether both listeners speak TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (up to [`SHUTDOWN_GRACE_MS`]), flushes and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        // The runtime takes the server's own handle on the broker: at the
        // end `Runtime::finish` waits until nothing else holds it, and a
        // handle kept here made every shutdown wait out that wait.
        let cluster = match (self.cluster_listener, &self.config.cluster) {
            (Some(listener), Some(settings)) => Some(
                cluster::Cluster::start(
                    Arc::clone(&self.broker),
                    settings,
                    listener,
                    &self.config.data_dir,
                    self.listener.local_addr()?,
                    self.http_listener
                        .as_ref()
                        .and_then(|l| l.local_addr().ok()),
                )
                .await?,
            ),
            _ => None,
        };
        let runtime = Runtime::start(
            self.broker,
            Arc::clone(&self.auth),
            &self.config,
            cluster.clone(),
        )?;
        let ops = Arc::clone(&runtime.ops);
        let admission = admission::Admission::new(
            self.config.max_connections,
            self.config.max_connections_per_peer,
        );
        let http_task = match self.http_listener {
            Some(listener) => {
                let app = http::router(Arc::clone(&ops));
                let listener = listener::HttpListener::start(
                    listener,
                    self.tls.clone(),
                    Arc::clone(&admission),
                )?;
                Some(tokio::spawn(listener::serve_http(
                    listener,
                    app,
                    ops.shutdown(),
                    Duration::from_millis(SHUTDOWN_GRACE_MS),
                )))
            }
            None => None,
        };
        let mut connections = tokio::task::JoinSet::new();
        // Numbers connections for their log lines (the `conn` span).
        let mut connection_ids = 0u64;
        // Out of descriptors and similar: backs off, logs once, keeps serving.
        let mut acceptor = accept::Acceptor::new(self.listener, admission::Listener::Binary);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                (stream, peer) = acceptor.accept() => {
                    let _ = stream.set_nodelay(true);
                    match admission.admit(peer.ip(), admission::Listener::Binary) {
                        Ok(permit) => {
                            let ops = Arc::clone(&ops);
                            let tls = self.tls.clone();
                            connection_ids += 1;
                            let span = tracing::info_span!("conn", id = connection_ids, %peer);
                            connections.spawn(tracing::Instrument::instrument(async move {
                                match tls {
                                    None => {
                                        if let Some(deadline) = connection::first_bytes(&stream, peer, ops.shutdown()).await {
                                            let (rd, wr) = stream.into_split();
                                            connection::handle_until(rd, wr, peer, ops, deadline).await;
                                        }
                                    }
                                    Some(acceptor) => {
                                        let kind = admission::Listener::Binary;
                                        if let Some(s) = listener::handshake(&acceptor, stream, peer, kind).await {
                                            let (rd, wr) = tokio::io::split(s);
                                            connection::handle(rd, wr, peer, ops).await;
                                        }
                                    }
                                }
                                drop(permit);
                            }, span));
                        }
                        Err(refusal) => {
                            tracing::debug!(%peer, "connection refused: {}", refusal.message());
                            // A TLS client could not read a plain answer.
                            if self.tls.is_none() {
                                connections.spawn(connection::refuse(stream, refusal.message()));
                            }
                        }
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        drop(acceptor);
        runtime.signal_stop();
        let grace = tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = connections.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    tracing::warn!("shutdown grace period over; closing {} connection(s)", connections.len());
                    connections.abort_all();
                    break;
                }
            }
        }
        if let Some(task) = http_task {
            let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), task).await;
        }
        // The Raft groups write the broker's logs: stopped before it closes.
        if let Some(cluster) = cluster {
            cluster.shutdown().await;
        }
        // Ours too: `finish` waits for every other holder to let go.
        drop(ops);
        runtime.finish().await?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

async fn tick_loop(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        ticks += 1;
        if ticks.is_multiple_of(METRICS_UPKEEP_TICKS) {
            metrics::upkeep();
        }
        let b = Arc::clone(&broker);
        match tokio::task::spawn_blocking(move || b.tick(now_ms())).await {
            Ok(Ok(())) => {}
            // Each failure was logged, with what failed, where it happened.
            Ok(Err(_)) => {}
            Err(e) => tracing::error!("housekeeping panicked: {e}"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The outbound allow-list, parsed.
fn allow_list(config: &ServerConfig) -> anyhow::Result<outbound::AllowList> {
    outbound::AllowList::parse(&config.outbound_allow_hosts)
        .map_err(|e| anyhow::anyhow!("outbound allow-list: {e}"))
}

/// The generated callback secret, under the data directory.
const CALLBACK_SECRET_FILE: &str = "callback.secret";

pub use spool_types::limits::CALLBACK_SECRET_LEN_MIN;

/// The callback signing secret: configured, or generated once and kept in
/// the data directory so it survives restarts. Shorter than
/// [`CALLBACK_SECRET_LEN_MIN`] bytes, it refuses the start.
fn callback_secret(config: &ServerConfig) -> anyhow::Result<Vec<u8>> {
    let long_enough = |secret: &str, from: &dyn std::fmt::Display| {
        if secret.len() < CALLBACK_SECRET_LEN_MIN {
            anyhow::bail!(
                "the callback secret ({from}) must be at least {CALLBACK_SECRET_LEN_MIN} bytes"
            );
        }
        Ok(secret.as_bytes().to_vec())
    };
    if let Some(s) = &config.callback_secret {
        return long_enough(s.expose(), &"configured");
    }
    let path = config.data_dir.join(CALLBACK_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return long_enough(s.trim(), &path.display()),
        // Empty: written by an older server that crashed mid-write.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Unreadable is not absent: a new secret would silently change
        // the key every receiver checks signatures with.
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the callback secret {}: {e}",
                path.display()
            ))
        }
    }
    let secret = format!("{}{}", uuid_hex(), uuid_hex());
    // Atomic, so a crash never leaves a half-written secret to be read
    // back as a different key, and owner-only, since whoever reads it can
    // forge callbacks.
    spool_log::fsutil::write_atomic_with_mode(&path, secret.as_bytes(), auth::SECRET_FILE_MODE)
        .with_context(|| format!("cannot write the callback secret {}", path.display()))?;
    tracing::info!("generated a callback signing secret in {}", path.display());
    Ok(secret.into_bytes())
}

fn uuid_hex() -> String {
    // 122 random bits per v4 UUID, from the OS generator.
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_secret_shorter_than_the_minimum_refuses_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().to_owned(),
            callback_secret: Some(auth::Secret::new("x".repeat(CALLBACK_SECRET_LEN_MIN - 1))),
            ..ServerConfig::default()
        };
        let e = callback_secret(&config).unwrap_err().to_string();
        assert!(e.contains("at least 16 bytes"), "{e}");
        config.callback_secret = Some(auth::Secret::new("x".repeat(CALLBACK_SECRET_LEN_MIN)));
        assert_eq!(callback_secret(&config).unwrap().len(), 16);
        // Generated: 64 hex digits, read back the same; edited down to a
        // short one, refused (never silently replaced).
        config.callback_secret = None;
        let generated = callback_secret(&config).unwrap();
        assert_eq!(generated.len(), 64);
        assert_eq!(callback_secret(&config).unwrap(), generated);
        std::fs::write(dir.path().join(CALLBACK_SECRET_FILE), "short\n").unwrap();
        let e = callback_secret(&config).unwrap_err().to_string();
        assert!(
            e.contains("callback.secret") && e.contains("at least"),
            "{e}"
        );
    }
}
