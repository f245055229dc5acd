//! One client connection: handshake, then pipelined requests.
//!
//! Reading stops while the connection is at its in-flight limits (requests or
//! bytes), so a client that floods requests — or never reads its responses —
//! holds at most those limits in server memory. Bad input is answered with
//! an error frame; input that leaves the stream out of sync (a bad length or
//! frame kind) closes just this connection.
//!
//! Push subscriptions come in two kinds sharing one table, so Credit and
//! Unsubscribe work for both: stream subscriptions (record batches from a
//! [`PushCursor`]) and queue subscriptions (leased messages of a work queue).
//!
//! With authentication on, Hello must carry a valid token (else
//! `UNAUTHENTICATED` and the connection closes) and every later request is
//! checked by [`authorize`] against that token's permissions (`FORBIDDEN`,
//! the connection stays open).

use crate::auth::{Caller, Need, RecordAccess};
use crate::callbacks::public_json;
use crate::convert::{self, wire_error};
use crate::notify::wait_any;
use crate::{now_ms, Shared};
use bytes::{Bytes, BytesMut};
use spool_broker::push::{PushCursor, PushStart};
use spool_broker::queue::{parse_receipt, RECEIVE_MAX};
use spool_broker::{AppendListener, Broker, BrokerError, StartFrom};
use spool_proto::{self as p, Request, Response, ResponseBody, WireError};
use spool_types::limits::{
    CONNECTION_IN_FLIGHT_BYTES_MAX, CONNECTION_IN_FLIGHT_MAX, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX,
    FRAME_BYTES_MAX, GROUP_NAME_LEN_MAX, RECORD_BYTES_MAX,
};
use spool_types::{ErrorCode, NameError, TopicName};
use std::collections::{BTreeSet, HashMap};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Initial read buffer of a connection; it grows with the frames it sees.
const CONNECTION_READ_BUFFER_INITIAL_BYTES: usize = 512;

/// The most a connection's read buffer grows by ahead of the bytes that
/// arrive, beyond the size of what it already holds: a large frame (a
/// produced batch) is received into one or a few buffers instead of one
/// that doubles from a few bytes (copying what arrived at each step), while
/// a client announcing a large frame and sending little of it makes the
/// server reserve at most this much (or twice what it sent).
const READ_RESERVE_STEP_BYTES: usize = 1024 * 1024;
/// Frames queued for the writer before producers of responses wait.
const OUTBOX_FRAMES: usize = 64;
/// Units of the in-flight byte budget (so a u32 permit count covers it).
const BYTE_PERMIT_UNIT: usize = 1024;
/// A connection that has not completed its handshake (Hello) this long after
/// it was accepted is closed.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Most bytes written to the socket in one call when batching queued frames
/// (a single larger frame goes alone).
const WRITE_COALESCE_BYTES: usize = 256 * 1024;
/// Most queued frames taken into one write (well under `IOV_MAX`).
const WRITE_COALESCE_FRAMES: usize = 256;
/// Longest a push subscription sleeps without re-checking its partitions.
/// Queue long polls use it too: acks and nacks on other connections, and
/// leases lapsing, are not announced, so a wait must look again now and then.
const PUSH_RECHECK_MS: u64 = 1_000;
/// Most messages one queue push leases at a time, so one subscriber with
/// plenty of credit does not take a whole backlog away from the others.
const QUEUE_PUSH_BATCH_MAX: u32 = 100;
/// First pause before a queue wait looks again when the queue reports
/// something already due that could not be leased (ready messages held back
/// by an ordering key whose earlier message is still leased); without it the
/// wait would spin. It doubles while that lasts, up to [`PUSH_RECHECK_MS`]:
/// acks and nacks here wake waiters anyway, so the pause only delays
/// noticing a blocking lease that lapsed.
const QUEUE_DUE_RECHECK_MS: u64 = 50;
/// How often a GetRequest with `wait_ms` looks at the record again (as the
/// HTTP API's status wait does).
const REQUEST_WAIT_POLL_MS: u64 = 20;
/// The most one leased message adds to a frame. A stored record is at most
/// `RECORD_BYTES_MAX` (key, value and headers with their lengths); the wire's
/// fixed-width lengths, the receipt and the lease fields add well under
/// 4 KiB, even with the most headers a record may carry.
const LEASED_MESSAGE_BYTES_MAX: usize = RECORD_BYTES_MAX + 4 * 1024;
/// Room for messages in one Messages response or QueueDeliver push: the
/// frame limit less the header (7), error code (2) and count (4).
const MESSAGES_ROOM: usize = FRAME_BYTES_MAX - 7 - 2 - 4;

/// A frame for the writer, with the budget it releases once written.
struct Outgoing {
    /// The frame is `bytes` followed by `rest` (parts shared with the
    /// buffers stored batches were read into; empty for most frames).
    bytes: Bytes,
    rest: Vec<Bytes>,
    _permits: Permits,
}

/// A request's share of the connection's in-flight budget, held until its
/// response is written; dropping it also records the request's latency
/// (read to written) in `spool_request_duration_seconds{op}`.
#[derive(Default)]
struct Permits {
    held: Vec<OwnedSemaphorePermit>,
    /// When the request was read, and its op; `None` for frames that
    /// answer no request of the client's (pushes, connection errors).
    timed: Option<(Instant, p::Op)>,
}

impl Outgoing {
    fn len(&self) -> usize {
        self.bytes.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    fn parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.bytes).chain(&self.rest)
    }
}

impl Permits {
    fn none() -> Permits {
        Permits::default()
    }

    fn push(&mut self, permit: OwnedSemaphorePermit) {
        self.held.push(permit);
    }
}

impl Drop for Permits {
    fn drop(&mut self) {
        if let Some((started, op)) = self.timed {
            metrics::histogram!("spool_request_duration_seconds", "listener" => "binary", "op" => op.name())
                .record(started.elapsed().as_secs_f64());
        }
    }
}

type Outbox = mpsc::Sender<Outgoing>;

/// What a push subscription delivers, and where its credit is kept.
enum Flow {
    /// Record batches; the cursor keeps positions and credit.
    Stream(Arc<Mutex<PushCursor>>),
    /// Leased messages of a queue subscription; the broker keeps the leases,
    /// the credit is kept here.
    Queue {
        credit: Arc<Mutex<QueueCredit>>,
        /// Asks the push task to stop between deliveries (see
        /// [`Subscription::stop`]).
        stop: Arc<Notify>,
    },
}

struct Subscription {
    flow: Flow,
    /// Wakes the push task when credit is granted.
    credit: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    fn grant(&self, messages: u32, bytes: u32) {
        match &self.flow {
            Flow::Stream(cursor) => lock(cursor).grant(messages, bytes),
            Flow::Queue { credit, .. } => lock(credit).grant(messages, bytes),
        }
        self.credit.notify_one();
    }

    /// Ends the push task and waits until it has, so that no push for this
    /// id follows the Unsubscribe answer. A queue task is asked to stop
    /// rather than aborted: messages it has leased are still sent, not left
    /// to sit out their ack timeout.
    async fn stop(mut self) {
        match &self.flow {
            Flow::Stream(_) => self.task.abort(),
            Flow::Queue { stop, .. } => stop.notify_one(),
        }
        let _ = (&mut self.task).await;
    }
}

/// A queue subscription's flow-control counters (section 7 of the protocol).
#[derive(Debug)]
struct QueueCredit {
    messages: u32,
    bytes: u32,
}

impl QueueCredit {
    fn grant(&mut self, messages: u32, bytes: u32) {
        self.messages = self.messages.saturating_add(messages);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn available(&self) -> bool {
        self.messages > 0 && self.bytes > 0
    }

    /// Charges a delivery; counters stop at zero (a delivery may overshoot).
    fn charge(&mut self, messages: usize, bytes: usize) {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.messages = self.messages.saturating_sub(clamp(messages));
        self.bytes = self.bytes.saturating_sub(clamp(bytes));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a write to a client may make no progress before the client is
/// taken to have stopped reading and is disconnected (a "slow consumer").
/// Until then its unread answers hold up to its in-flight byte budget; this
/// bounds for how long.
pub const SLOW_CLIENT_TIMEOUT_MS: u64 = 10_000;

/// Notes that the server is closing a connection because of what the
/// client did. Logged at debug level only and counted in
/// `spool_connections_closed_total{reason}`: a flood of bad clients must
/// not become a flood of log lines (10,000 handshake timeouts logged at
/// once stalled the server for half a second).
fn closing(peer: SocketAddr, reason: &'static str, why: &dyn std::fmt::Display) {
    tracing::debug!(%peer, reason, "closing connection: {why}");
    metrics::counter!("spool_connections_closed_total", "reason" => reason).increment(1);
}

enum WriteFailure {
    Io,
    Stalled,
}

/// Writes `frames` in order, giving up if one write makes no progress for
/// [`SLOW_CLIENT_TIMEOUT_MS`] (a slow but reading client keeps going).
/// Small frames are copied together; a large one (a fetch answer of
/// megabytes) is written from its own buffer, never copied again: one
/// vectored write covers them all.
async fn write_frames_unless_stalled<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frames: &[Outgoing],
) -> Result<(), WriteFailure> {
    let mut gather = p::WriteGather::default();
    for part in frames.iter().flat_map(Outgoing::parts) {
        gather.push(part);
    }
    let segments = gather.take();
    let mut slices: Vec<IoSlice<'_>> = segments.iter().map(|b| IoSlice::new(b)).collect();
    let mut unwritten: &mut [IoSlice<'_>] = &mut slices;
    let stall = Duration::from_millis(SLOW_CLIENT_TIMEOUT_MS);
    while !unwritten.is_empty() {
        match tokio::time::timeout(stall, wr.write_vectored(unwritten)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(WriteFailure::Io),
            Ok(Ok(n)) => IoSlice::advance_slices(&mut unwritten, n),
            Err(_) => return Err(WriteFailure::Stalled),
        }
    }
    Ok(())
}

/// Drops what a connection's writer still held (answers it will never
/// send, up to the connection's byte budget) on a blocking thread: giving
/// the memory back to the system costs about a millisecond per 4 MiB, and
/// 20 clients that stopped reading at the same moment once held the async
/// workers (and so every other client) for 70 ms doing it.
fn release_unsent(mut unsent: Vec<Outgoing>, mut rx: mpsc::Receiver<Outgoing>) {
    rx.close();
    while let Ok(frame) = rx.try_recv() {
        unsent.push(frame);
    }
    drop(rx);
    if !unsent.is_empty() {
        tokio::task::spawn_blocking(move || drop(unsent));
    }
}

/// Answers a connection over a limit with one error frame and closes it.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, message: &str) {
    let mut buf = BytesMut::new();
    let err = WireError::new(ErrorCode::TooManyConnections, message);
    if Response::error(0, err).encode(0, &mut buf).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
    }
    crate::listener::linger_close(stream).await;
}

/// Queues one response frame (no shared parts) for the connection's
/// writer; a writer that has gone (the connection is closing) drops it.
async fn answer(tx: &Outbox, correlation_id: u32, response: Response, permits: Permits) {
    let _ = tx
        .send(Outgoing {
            rest: Vec::new(),
            bytes: encode_response(correlation_id, response),
            _permits: permits,
        })
        .await;
}

/// Waits for a broker operation that answers through a callback (a
/// `finish_*_then`): the fdatasync wait parks no thread, the broker's sync
/// threads answer through a channel. `what` names the operation in the
/// error should the callback be dropped unanswered.
async fn synced<T: Send + 'static>(
    what: &str,
    finish: impl FnOnce(Box<dyn FnOnce(Result<T, BrokerError>) + Send>),
) -> Result<T, BrokerError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    finish(Box::new(move |r| {
        let _ = done_tx.send(r);
    }));
    done_rx.await.unwrap_or_else(|_| {
        Err(BrokerError::new(
            ErrorCode::Internal,
            format!("the {what} was dropped before it was synced"),
        ))
    })
}

fn encode_response(correlation_id: u32, response: Response) -> Bytes {
    let mut buf = BytesMut::with_capacity(response.encoded_len_hint());
    if let Err(e) = response.encode(correlation_id, &mut buf) {
        // Only an oversized body can fail to encode; say so instead.
        buf.clear();
        let err = WireError::new(
            ErrorCode::Internal,
            format!("response could not be encoded: {e}"),
        );
        let _ = Response::error(response.op(), err).encode(correlation_id, &mut buf);
    }
    buf.freeze()
}

/// [`encode_response`] as parts: the first, then any large shared ones.
fn encode_response_parts(correlation_id: u32, response: Response) -> (Bytes, Vec<Bytes>) {
    match response.encode_parts(correlation_id) {
        Ok(parts) => {
            let mut parts = parts.into_iter();
            let first = parts.next().unwrap_or_default();
            (first, parts.collect())
        }
        Err(_) => (encode_response(correlation_id, response), Vec::new()),
    }
}

fn error_response(op: u16, e: impl Into<WireError>) -> Response {
    Response::error(op, e.into())
}

/// Waits until a freshly accepted plain-TCP connection sends something,
/// before anything is set up for it. A connection that sends nothing within
/// [`HANDSHAKE_TIMEOUT_MS`] is reset (no FIN exchange, no `TIME_WAIT`): it
/// never spoke, so there is no answer to lose, and closing 10,000 such
/// connections gracefully, all at once, cost ~60 µs of CPU each and slowed
/// every other client for the best part of a second. Returns the deadline
/// that still holds for the handshake, or `None` if the connection is done.
pub async fn first_bytes(
    stream: &TcpStream,
    peer: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    // `peek`, not `readable`: a new socket can report readiness before any
    // byte has arrived (measured: at once, on every connection).
    let mut first = [0u8; 1];
    let waited = tokio::select! {
        r = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => r,
        // A silent connection must not hold up a shutdown.
        _ = shutdown.changed() => return None,
    };
    match waited {
        Ok(_) => Some(deadline), // a byte, end of stream or an error: handle() sees which
        Err(_) => {
            closing(
                peer,
                "handshake_timeout",
                &format_args!("nothing sent within {HANDSHAKE_TIMEOUT_MS} ms"),
            );
            let _ = stream.set_zero_linger();
            None
        }
    }
}

/// Serves one connection: `rd` and `wr` are the two halves of its stream
/// (plain TCP, TLS, or an in-process pipe for the embedded broker).
pub async fn handle<R, W>(rd: R, wr: W, peer: SocketAddr, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    handle_until(rd, wr, peer, shared, deadline).await
}

/// [`handle`], with the handshake due by `handshake_deadline` (set when the
/// connection was accepted, see [`first_bytes`]).
pub async fn handle_until<R, W>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    shared: Arc<Shared>,
    handshake_deadline: Instant,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        let mut batch: Vec<Outgoing> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut batch_bytes = first.len();
            batch.push(first);
            while batch_bytes < WRITE_COALESCE_BYTES && batch.len() < WRITE_COALESCE_FRAMES {
                match rx.try_recv() {
                    Ok(next) => {
                        batch_bytes += next.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            match write_frames_unless_stalled(&mut wr, &batch).await {
                // Dropping the written frames releases their in-flight budget.
                Ok(()) => batch.clear(),
                Err(WriteFailure::Io) => return release_unsent(batch, rx),
                Err(WriteFailure::Stalled) => {
                    let why = format_args!(
                        "the client read nothing for {SLOW_CLIENT_TIMEOUT_MS} ms while {batch_bytes} bytes of answers waited",
                    );
                    closing(peer, "slow_client", &why);
                    return release_unsent(batch, rx);
                }
            }
        }
        let _ = wr.shutdown().await;
    });

    let requests = Arc::new(Semaphore::new(CONNECTION_IN_FLIGHT_MAX));
    let bytes_budget = Arc::new(Semaphore::new(
        CONNECTION_IN_FLIGHT_BYTES_MAX / BYTE_PERMIT_UNIT,
    ));
    let mut subs: HashMap<u32, Subscription> = HashMap::new();
    // Small to start: idle connections are common and each holds one.
    let mut buf = BytesMut::with_capacity(CONNECTION_READ_BUFFER_INITIAL_BYTES);
    let mut shutdown = shared.shutdown.clone();
    // Cancelled once this connection's reading is over and its grace for
    // in-flight requests has passed: long polls then end instead of
    // holding the connection (and its admission slot) for minutes.
    let reading_done = CancellationToken::new();
    let mut greeted = false;
    // Names this client's group members (from its handshake).
    let mut client_id: Arc<str> = Arc::from("client");
    // Who is asking (from the handshake's token).
    let mut caller = Caller::Open;

    'conn: loop {
        // Take every complete frame already buffered.
        loop {
            let frame = match p::decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    closing(peer, "malformed_frame", &e);
                    answer(&tx, 0, error_response(0, e), Permits::none()).await;
                    break 'conn;
                }
            };
            if frame.kind != p::FrameKind::Request {
                closing(
                    peer,
                    "non_request_frame",
                    &"a client sent a non-request frame",
                );
                let err = WireError::new(
                    ErrorCode::MalformedFrame,
                    "clients may only send request frames",
                );
                answer(
                    &tx,
                    frame.correlation_id,
                    error_response(frame.op, err),
                    Permits::none(),
                )
                .await;
                break 'conn;
            }
            let cid = frame.correlation_id;
            let read_at = Instant::now();
            let request = match Request::decode(frame.op, frame.body.clone()) {
                Ok(r) => r,
                Err(e) => {
                    // The frame boundary is intact: answer and carry on.
                    answer(&tx, cid, error_response(frame.op, e), Permits::none()).await;
                    if !greeted {
                        break 'conn;
                    }
                    continue;
                }
            };
            if !greeted {
                let Request::Hello(hello) = request else {
                    let err = WireError::new(
                        ErrorCode::HandshakeRequired,
                        "the first request on a connection must be Hello",
                    );
                    answer(&tx, cid, error_response(frame.op, err), Permits::none()).await;
                    break 'conn;
                };
                let authenticated = hello
                    .negotiate(p::PROTOCOL_VERSION, p::PROTOCOL_VERSION)
                    .map(|v| {
                        shared
                            .auth
                            .authenticate(hello.token.as_deref(), peer, "binary")
                            .map(|c| (v, c))
                    });
                let response = match authenticated {
                    Some(Err(e)) => error_response(frame.op, wire_error(e)),
                    Some(Ok((version, who))) => {
                        greeted = true;
                        tracing::debug!(%peer, client = %hello.client_id, token = who.name(), "handshake");
                        caller = who;
                        if !hello.client_id.is_empty() {
                            let id: String = hello
                                .client_id
                                .chars()
                                .filter(|c| {
                                    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
                                })
                                .take(64)
                                .collect();
                            if !id.is_empty() {
                                client_id = Arc::from(id.as_str());
                            }
                        }
                        Response::ok(ResponseBody::HelloOk(p::HelloOk {
                            version,
                            server_id: shared.server_id.clone(),
                            max_frame_bytes: FRAME_BYTES_MAX as u32,
                        }))
                    }
                    None => error_response(
                        frame.op,
                        WireError::new(
                            ErrorCode::UnsupportedVersion,
                            format!(
                                "client speaks versions {}..={}, server speaks {}",
                                hello.min_version,
                                hello.max_version,
                                p::PROTOCOL_VERSION
                            ),
                        ),
                    ),
                };
                answer(&tx, cid, response, Permits::none()).await;
                if !greeted {
                    break 'conn;
                }
                continue;
            }
            if let Err(e) = authorize(&shared, &caller, &request) {
                tracing::debug!(%peer, cid, op = %request.op(), "refused: {}", e.message);
                answer(
                    &tx,
                    cid,
                    error_response(frame.op, wire_error(e)),
                    Permits::none(),
                )
                .await;
                continue;
            }
            // Back pressure: wait for budget before taking more work. Once
            // the writer has given up on this client, take no more: its
            // queued requests would only build answers nobody can receive
            // (a never-reading client's hundreds of buffered fetches, read
            // all at once when its stalled writer freed their budget, once
            // cost 1.5 s of CPU and stalled every other client).
            let units = (frame.body.len() + 64).div_ceil(BYTE_PERMIT_UNIT) as u32;
            let Some(count_permit) = budget_unless_closed(&requests, 1, &tx).await else {
                break 'conn;
            };
            let Some(bytes_permit) = budget_unless_closed(&bytes_budget, units, &tx).await else {
                break 'conn;
            };
            let permits = Permits {
                held: vec![count_permit, bytes_permit],
                timed: p::Op::from_u16(frame.op).ok().map(|op| (read_at, op)),
            };
            match request {
                Request::Hello(_) => {
                    let err =
                        WireError::new(ErrorCode::InvalidRequest, "the handshake was already done");
                    answer(&tx, cid, error_response(frame.op, err), permits).await;
                }
                Request::Produce(produce) => {
                    // Written in arrival order (so pipelined produces keep
                    // their order); the fsync wait happens off this loop.
                    // The write is a pwrite into the page cache (microseconds),
                    // made right here: handing the worker off around it with
                    // `block_in_place` churned 200+ threads under load for
                    // no gain in throughput (BENCHMARKS.md, third session).
                    // The batch is written from the received frame, not copied.
                    let broker = Arc::clone(&shared.broker);
                    let routing = convert::routing(&produce.routing);
                    let pending =
                        broker.start_produce(&produce.topic, &routing, &produce.batch, now_ms());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let result = match pending {
                            Ok(pending) => {
                                synced("produce", |done| broker.finish_produce_then(pending, done))
                                    .await
                            }
                            Err(e) => Err(e),
                        };
                        let response = match result {
                            Ok(r) => Response::ok(ResponseBody::Produced(p::Produced {
                                partition: r.partition,
                                base_offset: r.base_offset as u64,
                                last_offset: r.last_offset as u64,
                            })),
                            Err(e) => error_response(p::Op::Produce.as_u16(), wire_error(e)),
                        };
                        answer(&tx, cid, response, permits).await;
                    });
                }
                Request::Fetch(fetch) => {
                    let max_bytes = (fetch.max_bytes as usize)
                        .min(FETCH_BYTES_MAX)
                        .min(FRAME_BYTES_MAX - 64 * 1024);
                    // The response is held in memory until written: budget for it.
                    let extra = (max_bytes / BYTE_PERMIT_UNIT) as u32;
                    let Some(resp_permit) = budget_unless_closed(&bytes_budget, extra, &tx).await
                    else {
                        break 'conn;
                    };
                    let mut permits = permits;
                    permits.push(resp_permit);
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    let reading_done = reading_done.clone();
                    tokio::spawn(async move {
                        // A long poll for a client that is gone ends now.
                        let response = tokio::select! {
                            r = fetch_long_poll(&shared, fetch, max_bytes) => r,
                            _ = tx.closed() => return,
                            _ = reading_done.cancelled() => return,
                        };
                        // The stored batches go out from the buffers they
                        // were read into, not copied into the frame.
                        let (bytes, rest) = encode_response_parts(cid, response);
                        let _ = tx
                            .send(Outgoing {
                                rest,
                                bytes,
                                _permits: permits,
                            })
                            .await;
                    });
                }
                Request::Subscribe(sub) => {
                    let id = sub.subscription_id;
                    let started = subscribe(&shared, &tx, &subs, sub);
                    let ids = (frame.op, cid, id);
                    start_subscription(&tx, &mut subs, ids, started, permits).await;
                }
                Request::SubscribeQueue(sub) => {
                    let id = sub.subscription_id;
                    let started = subscribe_queue(&shared, &tx, &subs, sub);
                    let ids = (frame.op, cid, id);
                    start_subscription(&tx, &mut subs, ids, started, permits).await;
                }
                Request::Receive(receive) => {
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    let budget = Arc::clone(&bytes_budget);
                    tokio::spawn(async move {
                        let response = receive_long_poll(&shared, receive).await;
                        send_budgeted(&tx, &budget, cid, response, permits).await;
                    });
                }
                Request::GetRequest(get) => {
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    let budget = Arc::clone(&bytes_budget);
                    tokio::spawn(async move {
                        let response = get_request_wait(&shared, get).await;
                        send_budgeted(&tx, &budget, cid, response, permits).await;
                    });
                }
                Request::Credit(credit) => {
                    let live = subs
                        .get(&credit.subscription_id)
                        .filter(|s| !s.task.is_finished());
                    let response = match live {
                        Some(s) => {
                            s.grant(credit.messages, credit.bytes);
                            Response::ok(ResponseBody::CreditGranted)
                        }
                        None => no_subscription(frame.op, credit.subscription_id),
                    };
                    answer(&tx, cid, response, permits).await;
                }
                Request::Unsubscribe(u) => {
                    let response = match subs.remove(&u.subscription_id) {
                        Some(s) => {
                            s.stop().await;
                            Response::ok(ResponseBody::Unsubscribed)
                        }
                        None => no_subscription(frame.op, u.subscription_id),
                    };
                    answer(&tx, cid, response, permits).await;
                }
                Request::Ack(ack) => {
                    // Like a produce: the records are written here (page
                    // cache), the fdatasync an `always` topic needs is
                    // waited for by the broker's sync threads. Through
                    // `spawn_blocking` each ack cost two thread hand-offs
                    // (BENCHMARKS.md, sixth session).
                    let pending =
                        shared
                            .broker
                            .start_ack(&ack.topic, &ack.name, &ack.receipts, now_ms());
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    tokio::spawn(async move {
                        let result = match pending {
                            Ok(pending) => {
                                synced("ack", |done| shared.broker.finish_ack_then(pending, done))
                                    .await
                            }
                            Err(e) => Err(e),
                        };
                        let response = match result {
                            Ok(results) => {
                                let ordered = shared
                                    .broker
                                    .queue(&ack.topic, &ack.name)
                                    .is_ok_and(|q| q.spec().ordered);
                                if ordered {
                                    wake_after_settle(&shared, &ack.topic, &ack.receipts, &results);
                                }
                                Response::ok(ResponseBody::Acked(convert::receipt_codes(&results)))
                            }
                            Err(e) => error_response(p::Op::Ack.as_u16(), wire_error(e)),
                        };
                        answer(&tx, cid, response, permits).await;
                    });
                }
                other => {
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    let op = frame.op;
                    let client_id = Arc::clone(&client_id);
                    let caller = caller.clone();
                    let span = tracing::info_span!("request", cid, op = %other.op());
                    tokio::spawn(
                        async move {
                            let span = tracing::Span::current();
                            let response = tokio::task::spawn_blocking(move || {
                                let _entered = span.enter();
                                dispatch(&shared, &client_id, &caller, other)
                            })
                            .await
                            .unwrap_or_else(|e| {
                                Err(BrokerError::new(ErrorCode::Internal, e.to_string()))
                            });
                            let response =
                                response.unwrap_or_else(|e| error_response(op, wire_error(e)));
                            answer(&tx, cid, response, permits).await;
                        }
                        .instrument(span),
                    );
                }
            }
        }
        // Refuse an oversized frame as soon as its length prefix arrives;
        // make room for the rest of a large one in few steps.
        let frame_size = p::peek_frame_size(&buf);
        if let (Ok(Some(size)), true) = (&frame_size, greeted) {
            // Not before the handshake: a stranger's 4-byte length prefix
            // must not make the server reserve a megabyte.
            reserve_for_frame(&mut buf, *size);
        }
        if let Err(e) = frame_size {
            closing(peer, "frame_too_large", &e);
            answer(&tx, 0, error_response(0, e), Permits::none()).await;
            break 'conn;
        }
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shutdown.changed() => break 'conn,
            // The writer gave up on this client (stalled or failed).
            _ = tx.closed() => break 'conn,
            _ = tokio::time::sleep_until(handshake_deadline), if !greeted => {
                closing(peer, "handshake_timeout", &format_args!("no handshake within {HANDSHAKE_TIMEOUT_MS} ms"));
                break 'conn;
            }
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, "read failed: {e}");
                break;
            }
        }
    }
    for (_, s) in subs.drain() {
        s.task.abort();
    }
    // Let in-flight requests finish and their answers go out.
    let _ = tokio::time::timeout(
        Duration::from_millis(crate::SHUTDOWN_GRACE_MS),
        requests.acquire_many(CONNECTION_IN_FLIGHT_MAX as u32),
    )
    .await;
    reading_done.cancel();
    drop(tx);
    let _ = writer.await;
}

/// Takes `units` of `budget`, or `None` once the connection's writer has
/// gone (the client stalled or hung up) or the budget was closed.
async fn budget_unless_closed(
    budget: &Arc<Semaphore>,
    units: u32,
    tx: &Outbox,
) -> Option<OwnedSemaphorePermit> {
    if tx.is_closed() {
        return None;
    }
    tokio::select! {
        p = Arc::clone(budget).acquire_many_owned(units) => p.ok(),
        _ = tx.closed() => None,
    }
}

/// Sends a response whose size is known only once it is built (a Receive
/// or a request record of up to a megabyte): it is held in memory until
/// written, so it takes its share of the connection's byte budget first.
async fn send_budgeted(
    tx: &Outbox,
    budget: &Arc<Semaphore>,
    cid: u32,
    response: Response,
    mut permits: Permits,
) {
    let bytes = encode_response(cid, response);
    let units = (bytes.len() / BYTE_PERMIT_UNIT) as u32;
    if units > 0 {
        // Nobody left to send it to: the answer is dropped.
        let Some(p) = budget_unless_closed(budget, units, tx).await else {
            return;
        };
        permits.push(p);
    }
    let _ = tx
        .send(Outgoing {
            bytes,
            rest: Vec::new(),
            _permits: permits,
        })
        .await;
}

fn no_subscription(op: u16, id: u32) -> Response {
    error_response(
        op,
        WireError::new(
            ErrorCode::UnknownSubscription,
            format!("no subscription {id} on this connection"),
        ),
    )
}

/// Whether `id` names a live subscription. One the server closed (after a
/// SubscriptionClosed push) has ended its task, and its id is free again.
fn id_in_use(subs: &HashMap<u32, Subscription>, id: u32) -> bool {
    subs.get(&id).is_some_and(|s| !s.task.is_finished())
}

fn id_in_use_error(id: u32) -> WireError {
    WireError::new(
        ErrorCode::InvalidRequest,
        format!("subscription id {id} is already in use"),
    )
}

/// A subscription ready to run and the signal that lets its push task
/// start, or why there is none.
type Started = Result<(Subscription, oneshot::Sender<()>), WireError>;

/// Answers a Subscribe or SubscribeQueue and only then lets the push task
/// run, so the answer precedes the subscription's first push.
async fn start_subscription(
    tx: &Outbox,
    subs: &mut HashMap<u32, Subscription>,
    (op, cid, id): (u16, u32, u32),
    started: Started,
    permits: Permits,
) {
    let (response, go) = match started {
        Ok((sub, go)) => {
            let body = match sub.flow {
                Flow::Stream(_) => ResponseBody::Subscribed {
                    subscription_id: id,
                },
                Flow::Queue { .. } => ResponseBody::QueueSubscribed {
                    subscription_id: id,
                },
            };
            subs.insert(id, sub);
            (Response::ok(body), Some(go))
        }
        Err(e) => (error_response(op, e), None),
    };
    answer(tx, cid, response, permits).await;
    if let Some(go) = go {
        let _ = go.send(());
    }
}

fn subscribe(
    shared: &Arc<Shared>,
    tx: &Outbox,
    subs: &HashMap<u32, Subscription>,
    sub: p::Subscribe,
) -> Started {
    if id_in_use(subs, sub.subscription_id) {
        return Err(id_in_use_error(sub.subscription_id));
    }
    if sub.group.is_some() {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            "push subscriptions with a group are not supported yet; use a group consumer",
        ));
    }
    let start = match sub.start {
        p::SubscribeStart::Earliest => PushStart::Earliest,
        p::SubscribeStart::Latest => PushStart::Latest,
        p::SubscribeStart::Offset(o) => PushStart::Offset(o.min(i64::MAX as u64) as i64),
    };
    let cursor = Broker::parse_patterns(&sub.topics).and_then(|patterns| {
        PushCursor::new(
            &shared.broker,
            patterns,
            start,
            sub.credit_messages,
            sub.credit_bytes,
        )
    });
    let cursor = match cursor {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => return Err(wire_error(e)),
    };
    let credit = Arc::new(Notify::new());
    let (go, start) = oneshot::channel();
    let task = tokio::spawn(push_loop(
        Arc::clone(shared),
        tx.clone(),
        sub.subscription_id,
        Arc::clone(&cursor),
        Arc::clone(&credit),
        start,
    ));
    let sub = Subscription {
        flow: Flow::Stream(cursor),
        credit,
        task,
    };
    Ok((sub, go))
}

/// Sends batches to a push subscriber as they appear, within its credit.
async fn push_loop(
    shared: Arc<Shared>,
    tx: Outbox,
    id: u32,
    cursor: Arc<Mutex<PushCursor>>,
    credit: Arc<Notify>,
    start: oneshot::Receiver<()>,
) {
    if start.await.is_err() {
        return;
    }
    loop {
        let notifies: Vec<Arc<Notify>> = {
            let c = cursor.lock().unwrap_or_else(|p| p.into_inner());
            c.partitions()
                .map(|(t, p)| shared.notifier.partition(t, *p))
                .collect()
        };
        let mut next = None;
        let deadline = Instant::now() + Duration::from_millis(PUSH_RECHECK_MS);
        let mut all = notifies;
        all.push(Arc::clone(&credit));
        wait_any(&all, Some(&shared.notifier.topics), deadline, || {
            let result = tokio::task::block_in_place(|| {
                cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next(&shared.broker)
            });
            let ready = !matches!(result, Ok(None));
            next = Some(result);
            ready
        })
        .await;
        match next {
            Some(Ok(Some(d))) => {
                let push = p::Push::Deliver(p::Deliver {
                    topic: d.topic,
                    partition: d.partition,
                    batches: d.batches,
                });
                let mut buf = BytesMut::new();
                if push.encode(id, &mut buf).is_err() {
                    continue;
                }
                if tx
                    .send(Outgoing {
                        rest: Vec::new(),
                        bytes: buf.freeze(),
                        _permits: Permits::none(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(e)) => {
                let mut buf = BytesMut::new();
                if p::Push::SubscriptionClosed(wire_error(e))
                    .encode(id, &mut buf)
                    .is_ok()
                {
                    let _ = tx
                        .send(Outgoing {
                            rest: Vec::new(),
                            bytes: buf.freeze(),
                            _permits: Permits::none(),
                        })
                        .await;
                }
                return;
            }
            _ => {}
        }
    }
}

fn subscribe_queue(
    shared: &Arc<Shared>,
    tx: &Outbox,
    subs: &HashMap<u32, Subscription>,
    sub: p::SubscribeQueue,
) -> Started {
    if id_in_use(subs, sub.subscription_id) {
        return Err(id_in_use_error(sub.subscription_id));
    }
    // Refuse at once what the push task would otherwise report later.
    if let Err(e) = shared
        .broker
        .topic(&sub.topic)
        .and_then(|_| shared.broker.queue(&sub.topic, &sub.name))
    {
        return Err(wire_error(e));
    }
    let credit = Arc::new(Mutex::new(QueueCredit {
        messages: sub.credit_messages,
        bytes: sub.credit_bytes,
    }));
    let granted = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let (go, start) = oneshot::channel();
    let push = QueuePush {
        shared: Arc::clone(shared),
        tx: tx.clone(),
        id: sub.subscription_id,
        topic: sub.topic,
        name: sub.name,
        credit: Arc::clone(&credit),
        granted: Arc::clone(&granted),
        stop: Arc::clone(&stop),
    };
    let task = tokio::spawn(push.run(start));
    let sub = Subscription {
        flow: Flow::Queue { credit, stop },
        credit: granted,
        task,
    };
    Ok((sub, go))
}

/// The push task of a queue subscription.
struct QueuePush {
    shared: Arc<Shared>,
    tx: Outbox,
    id: u32,
    topic: String,
    name: String,
    credit: Arc<Mutex<QueueCredit>>,
    granted: Arc<Notify>,
    stop: Arc<Notify>,
}

impl QueuePush {
    /// While there is credit, leases what is ready (up to the message credit
    /// and [`QUEUE_PUSH_BATCH_MAX`]) and sends it as one QueueDeliver; then
    /// waits for an append, a credit grant, the queue's next wake-up or a
    /// periodic re-check.
    async fn run(self, start: oneshot::Receiver<()>) {
        if start.await.is_err() {
            return;
        }
        let mut due_pause = QUEUE_DUE_RECHECK_MS;
        loop {
            let (mut notifies, wake) = match queue_wakeups(&self.shared, &self.topic, &self.name) {
                Ok(w) => w,
                Err(e) => return close_subscription(&self.tx, self.id, e).await,
            };
            notifies.push(Arc::clone(&self.granted));
            let recheck = Instant::now() + Duration::from_millis(PUSH_RECHECK_MS);
            // Without credit only a grant (or the re-check) matters.
            let until = if lock(&self.credit).available() {
                wake_deadline(wake, recheck, &mut due_pause)
            } else {
                recheck
            };
            let mut leased = None;
            let waited = wait_any(&notifies, None, until, || {
                let want = {
                    let credit = lock(&self.credit);
                    if !credit.available() {
                        return false;
                    }
                    credit.messages.min(QUEUE_PUSH_BATCH_MAX)
                };
                let got = tokio::task::block_in_place(|| {
                    lease_within_frame(&self.shared.broker, &self.topic, &self.name, want as usize)
                });
                let ready = !matches!(&got, Ok(m) if m.is_empty());
                leased = Some(got);
                ready
            });
            // Stop is checked first, and never after a lease: the wait only
            // completes once it has leased, and then the messages go out.
            tokio::select! {
                biased;
                _ = self.stop.notified() => return,
                _ = waited => {}
            }
            match leased {
                Some(Ok(messages)) if !messages.is_empty() => {
                    let bytes = messages
                        .iter()
                        .map(|m| {
                            m.key.as_ref().map_or(0, |k| k.len())
                                + m.value.as_ref().map_or(0, |v| v.len())
                        })
                        .sum();
                    lock(&self.credit).charge(messages.len(), bytes);
                    let mut buf = BytesMut::new();
                    let push = p::Push::QueueDeliver(p::QueueDeliver { messages });
                    if let Err(e) = push.encode(self.id, &mut buf) {
                        // Cannot happen: leasing stops at the frame limit.
                        // The leases lapse and the messages are redelivered.
                        tracing::error!(id = self.id, "queue delivery could not be encoded: {e}");
                        continue;
                    }
                    let out = Outgoing {
                        rest: Vec::new(),
                        bytes: buf.freeze(),
                        _permits: Permits::none(),
                    };
                    if self.tx.send(out).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => return close_subscription(&self.tx, self.id, e).await,
                _ => {}
            }
        }
    }
}

/// Ends a subscription from the server side with SubscriptionClosed.
async fn close_subscription(tx: &Outbox, id: u32, e: BrokerError) {
    let mut buf = BytesMut::new();
    if p::Push::SubscriptionClosed(wire_error(e))
        .encode(id, &mut buf)
        .is_ok()
    {
        let _ = tx
            .send(Outgoing {
                rest: Vec::new(),
                bytes: buf.freeze(),
                _permits: Permits::none(),
            })
            .await;
    }
}

/// Leases up to `max` messages (clamped to 1 … `RECEIVE_MAX`), but no more
/// than one frame can carry: a message leased and not sent would sit out its
/// ack timeout (or, at most once, be lost). The broker cannot lease by size,
/// so it is asked in rounds of as many messages as the remaining room holds
/// in the worst case.
fn lease_within_frame(
    broker: &Broker,
    topic: &str,
    name: &str,
    max: usize,
) -> Result<Vec<p::LeasedMessage>, BrokerError> {
    let mut want = max.clamp(1, RECEIVE_MAX);
    let mut room = MESSAGES_ROOM;
    let mut out = Vec::new();
    while want > 0 {
        let round = want.min(room / LEASED_MESSAGE_BYTES_MAX);
        if round == 0 {
            break;
        }
        let leased = match broker.receive(topic, name, round, now_ms()) {
            Ok(leased) => leased,
            // What is already leased must reach the client; a lasting error
            // shows up on the next call.
            Err(e) if !out.is_empty() => {
                tracing::debug!(topic, name, "receive stopped early: {e}");
                break;
            }
            Err(e) => return Err(e),
        };
        let got = leased.len();
        for m in leased {
            let m = convert::leased_message(m);
            room = room.saturating_sub(m.encoded_len());
            out.push(m);
        }
        if got < round {
            break; // nothing more is ready
        }
        want -= got;
    }
    Ok(out)
}

/// What a queue wait listens to: appends on every partition of the topic,
/// and the time (ms since the epoch) at which the queue's next delayed or
/// backed-off message becomes ready or a lease lapses. Looked up afresh for
/// each wait because the topic or subscription may be deleted meanwhile;
/// the error then ends the wait.
fn queue_wakeups(
    shared: &Shared,
    topic: &str,
    name: &str,
) -> Result<(Vec<Arc<Notify>>, Option<i64>), BrokerError> {
    let partitions = shared.broker.topic(topic)?.partitions.len() as u32;
    let wake = shared.broker.queue(topic, name)?.next_wakeup();
    let notifies = (0..partitions)
        .map(|p| shared.notifier.partition(topic, p))
        .collect();
    Ok((notifies, wake))
}

/// When a queue wait should look again: at the queue's next wake-up, if
/// that comes before `latest`. One in the future gets a millisecond extra,
/// so the wait does not wake just before the broker's clock says it is due.
/// One already due (the attempt just made could not lease it) gets
/// `due_pause`, which doubles each time in a row (see
/// [`QUEUE_DUE_RECHECK_MS`]).
fn wake_deadline(wake: Option<i64>, latest: Instant, due_pause: &mut u64) -> Instant {
    let Some(at) = wake else {
        return latest;
    };
    let ms = match u64::try_from(at.saturating_sub(now_ms())) {
        Ok(ms) if ms > 0 => {
            *due_pause = QUEUE_DUE_RECHECK_MS;
            ms.saturating_add(1)
        }
        _ => {
            let pause = *due_pause;
            *due_pause = pause.saturating_mul(2).min(PUSH_RECHECK_MS);
            pause
        }
    };
    Instant::now()
        .checked_add(Duration::from_millis(ms))
        .map_or(latest, |t| t.min(latest))
}

/// Leases messages; if none is ready, waits for an append on the topic, the
/// queue's next wake-up or the deadline, whichever comes first, and tries
/// again (like [`fetch_long_poll`]).
async fn receive_long_poll(shared: &Shared, receive: p::Receive) -> Response {
    let op = p::Op::Receive.as_u16();
    let wait_ms = u64::from(receive.wait_ms).min(FETCH_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut shutdown = shared.shutdown.clone();
    let mut due_pause = QUEUE_DUE_RECHECK_MS;
    loop {
        let (notifies, wake) = match queue_wakeups(shared, &receive.topic, &receive.name) {
            Ok(w) => w,
            Err(e) => return error_response(op, wire_error(e)),
        };
        let recheck = Instant::now() + Duration::from_millis(PUSH_RECHECK_MS);
        let until = wake_deadline(wake, deadline.min(recheck), &mut due_pause);
        let stopping = *shutdown.borrow_and_update();
        let mut result = None;
        let quick = shared
            .broker
            .receive_is_quick(&receive.topic, &receive.name);
        let waited = wait_any(&notifies, None, until, || {
            let lease = || {
                lease_within_frame(
                    &shared.broker,
                    &receive.topic,
                    &receive.name,
                    receive.max as usize,
                )
            };
            // Page-cache reads and writes only: run here, as a produce's
            // write is. Handing the worker off (`block_in_place`) for each
            // receive cost more than the receive (BENCHMARKS.md, sixth
            // session).
            let leased = if quick {
                lease()
            } else {
                tokio::task::block_in_place(lease)
            };
            let ready =
                !matches!(&leased, Ok(m) if m.is_empty()) || stopping || Instant::now() >= deadline;
            result = Some(leased);
            ready
        });
        tokio::select! {
            _ = waited => {}
            _ = shutdown.changed() => {}
        }
        match result {
            Some(Err(e)) => return error_response(op, wire_error(e)),
            Some(Ok(messages))
                if !messages.is_empty()
                    || Instant::now() >= deadline
                    || *shared.shutdown.borrow() =>
            {
                return Response::ok(ResponseBody::Messages(messages));
            }
            _ => {}
        }
    }
}

/// Answers GetRequest: the record now, or — with `wait_ms` — once it is
/// final or the wait is over. Records change without any notification this
/// side could wait on (a worker on another connection or over HTTP), so the
/// wait polls, as the HTTP API's status wait does.
async fn get_request_wait(shared: &Shared, get: p::GetRequest) -> Response {
    let op = p::Op::GetRequest.as_u16();
    let wait_ms = u64::from(get.wait_ms).min(FETCH_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut shutdown = shared.shutdown.clone();
    loop {
        let record = tokio::task::block_in_place(|| shared.broker.get_request(&get.id, now_ms()));
        let record = match record {
            Ok(r) => r,
            Err(e) => return error_response(op, wire_error(e)),
        };
        let now = Instant::now();
        if record.status.is_final() || now >= deadline || *shutdown.borrow_and_update() {
            return Response::ok(ResponseBody::RequestRecord {
                json: public_json(&record).to_string(),
            });
        }
        let pause = Duration::from_millis(REQUEST_WAIT_POLL_MS).min(deadline - now);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Checks a SubmitRequest before anything is stored.
fn check_submit(shared: &Shared, s: &p::SubmitRequest) -> Result<(), BrokerError> {
    // A user-facing name: `spool.` topics are the server's own, and a
    // request must never land in one just because it already exists.
    if let Err(e) = TopicName::new(&s.queue) {
        let code = match e {
            NameError::Reserved => ErrorCode::ReservedTopicName,
            _ => ErrorCode::InvalidTopicName,
        };
        return Err(BrokerError::new(
            code,
            format!("request queue {:?}: {e}", s.queue),
        ));
    }
    if let Some(url) = &s.callback_url {
        shared
            .allow
            .check(url)
            .map_err(|e| BrokerError::invalid(format!("callback_url: {e}")))?;
    }
    if s.json {
        // Workers are told the payload is JSON: hold the submitter to it.
        serde_json::from_slice::<serde::de::IgnoredAny>(&s.payload).map_err(|e| {
            BrokerError::invalid(format!(
                "the payload is marked JSON but does not parse: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Wakes waiting receivers and queue pushes on the partitions of settled
/// receipts: a nack makes its message ready again (at once, or when its
/// delay ends), and in an ordered queue an ack frees the next message of
/// its key. Neither appends anything, so no append would wake them.
fn wake_after_settle<T>(
    shared: &Shared,
    topic: &str,
    receipts: &[String],
    results: &[Result<T, BrokerError>],
) {
    let partitions: BTreeSet<u32> = receipts
        .iter()
        .zip(results)
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(receipt, _)| parse_receipt(receipt).map(|(p, _, _)| p))
        .collect();
    for p in partitions {
        shared.notifier.appended(topic, p);
    }
}

/// A stream subscription is a consumer group, created by its first
/// JoinGroup; creating one only checks that it could be joined.
fn check_stream_subscription(broker: &Broker, topic: &str, name: &str) -> Result<(), BrokerError> {
    broker.topic(topic)?;
    if name.is_empty() || name.len() > GROUP_NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(BrokerError::invalid(format!(
            "subscription name must be 1 to {GROUP_NAME_LEN_MAX} printable characters"
        )));
    }
    Ok(())
}

/// Reads every asked partition; if nothing is there, waits for appends up to
/// `max_wait_ms` and reads again.
async fn fetch_long_poll(shared: &Shared, fetch: p::Fetch, max_bytes: usize) -> Response {
    let wait_ms = (fetch.max_wait_ms as u64).min(FETCH_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let notifies: Vec<Arc<Notify>> = fetch
        .partitions
        .iter()
        .map(|fp| shared.notifier.partition(&fp.topic, fp.partition))
        .collect();
    loop {
        let mut result = None;
        let mut shutdown = shared.shutdown.clone();
        let stopping = *shutdown.borrow_and_update();
        let waited = async {
            wait_any(&notifies, None, deadline, || {
                let r = if reads_no_file(&shared.broker, &fetch) {
                    // A caught-up long poll: answered from memory, without
                    // handing the worker off (`block_in_place` wakes a
                    // thread each time: 14 % of the server's samples in a
                    // 10,000 msgs/s end-to-end run).
                    read_partitions(&shared.broker, &fetch, max_bytes)
                } else {
                    tokio::task::block_in_place(|| {
                        read_partitions(&shared.broker, &fetch, max_bytes)
                    })
                };
                let has_data = r
                    .partitions
                    .iter()
                    .any(|p| !p.batches.is_empty() || p.error.is_some());
                result = Some(r);
                has_data || stopping || Instant::now() >= deadline
            })
            .await
        };
        tokio::select! {
            _ = waited => {}
            _ = shutdown.changed() => {}
        }
        let Some(r) = result else { continue };
        let done = r
            .partitions
            .iter()
            .any(|p| !p.batches.is_empty() || p.error.is_some())
            || Instant::now() >= deadline
            || *shared.shutdown.borrow();
        if done {
            return Response::ok(ResponseBody::Fetched(r));
        }
    }
}

/// Whether reading `fetch` would touch no file: every partition is read up
/// to its end (or is out of range, or unknown), so the answer comes from
/// the logs' in-memory state. Data that arrives after this check is read
/// inline then; a read of fresh data is from the page cache anyway.
fn reads_no_file(broker: &Broker, fetch: &p::Fetch) -> bool {
    fetch.partitions.iter().all(|fp| {
        match (
            broker.offsets(&fp.topic, fp.partition),
            i64::try_from(fp.offset),
        ) {
            (Ok((start, end)), Ok(offset)) => offset >= end || offset < start,
            _ => true,
        }
    })
}

fn read_partitions(broker: &Broker, fetch: &p::Fetch, max_bytes: usize) -> p::Fetched {
    let mut budget = max_bytes;
    let mut out = Vec::with_capacity(fetch.partitions.len());
    for fp in &fetch.partitions {
        let mut entry = p::FetchedPartition {
            topic: fp.topic.clone(),
            partition: fp.partition,
            error: None,
            start_offset: 0,
            end_offset: 0,
            batches: Bytes::new(),
        };
        if let Ok((start, end)) = broker.offsets(&fp.topic, fp.partition) {
            entry.start_offset = start.max(0) as u64;
            entry.end_offset = end.max(0) as u64;
        }
        let want = (fp.max_bytes as usize).min(budget);
        let read = convert::offset_from_wire(fp.offset).and_then(|o| {
            if want == 0 {
                Ok(None)
            } else {
                broker.fetch(&fp.topic, fp.partition, o, want).map(Some)
            }
        });
        match read {
            Ok(Some(r)) => {
                // The first batch with data is always sent whole, even past
                // `max_bytes`, so a consumer can never stall on a big batch
                // (a batch is at most BATCH_BYTES_MAX, which fits a frame);
                // later partitions only within what is left of the budget.
                let first_with_data = budget == max_bytes;
                if r.bytes.len() <= budget || first_with_data {
                    budget = budget.saturating_sub(r.bytes.len());
                    entry.batches = r.bytes;
                }
                entry.start_offset = r.start_offset.max(0) as u64;
                entry.end_offset = r.end_offset.max(0) as u64;
            }
            Ok(None) => {}
            Err(e) => entry.error = Some(e.code.into()),
        }
        out.push(entry);
    }
    p::Fetched { partitions: out }
}

/// Whether `caller` may make `request` (see `docs/protocol.md`, section
/// 6.4). Ops that name a request record look its queue up. Ops this
/// function does not know are for admins only.
fn authorize(shared: &Shared, caller: &Caller, request: &Request) -> Result<(), BrokerError> {
    if matches!(caller, Caller::Open) {
        return Ok(());
    }
    // A revoked token is refused whatever it asks.
    caller.check(Need::Any)?;
    // Flow-control frames of a subscription are not requests of the caller's.
    if !matches!(request, Request::Credit(_) | Request::Unsubscribe(_)) {
        shared.auth.charge(caller)?;
    }
    let consume_all = |topics: &mut dyn Iterator<Item = &String>| {
        for t in topics {
            caller.check(Need::Consume(t))?;
        }
        Ok(())
    };
    let record = |id: &str, access: RecordAccess| {
        let record = tokio::task::block_in_place(|| shared.broker.get_request(id, now_ms()))?;
        caller.check(access.need(&record.queue))
    };
    match request {
        Request::Hello(_) | Request::Ping | Request::Credit(_) | Request::Unsubscribe(_) => Ok(()),
        // Answered with only what the caller may see (in `dispatch`).
        Request::ListTopics(_)
        | Request::ListSubscriptions(p::ListSubscriptions { topic: None }) => Ok(()),
        Request::ListSubscriptions(p::ListSubscriptions { topic: Some(t) }) => {
            caller.check(Need::Consume(t))
        }
        Request::DescribeTopic(d) => caller.check(Need::ProduceOrConsume(&d.name)),
        Request::Produce(m) => caller.check(Need::Produce(&m.topic)),
        Request::SubmitRequest(s) => caller.check(Need::Produce(&s.queue)),
        Request::Fetch(f) => consume_all(&mut f.partitions.iter().map(|fp| &fp.topic)),
        Request::JoinGroup(j) => consume_all(&mut j.topics.iter()),
        Request::Subscribe(s) => consume_all(&mut s.topics.iter()),
        Request::CommitOffsets(c) => consume_all(&mut c.offsets.iter().map(|po| &po.topic)),
        Request::FetchOffsets(f) => consume_all(&mut f.partitions.iter().map(|tp| &tp.topic)),
        Request::Heartbeat(_) | Request::LeaveGroup(_) => caller.check(Need::ConsumeSomething),
        Request::SubscribeQueue(s) => caller.check(Need::Consume(&s.topic)),
        Request::Receive(r) => caller.check(Need::Consume(&r.topic)),
        Request::Ack(a) => caller.check(Need::Consume(&a.topic)),
        Request::Nack(n) => caller.check(Need::Consume(&n.topic)),
        Request::ExtendLease(x) => caller.check(Need::Consume(&x.topic)),
        Request::GetRequest(g) => record(&g.id, RecordAccess::Read),
        Request::CompleteRequest(c) => record(&c.id, RecordAccess::Settle),
        Request::FailRequest(f) => record(&f.id, RecordAccess::Settle),
        // Topics, subscriptions, redrive, tokens, and anything newer.
        _ => caller.check(Need::Admin),
    }
}

/// The requests that are plain broker calls (run on a blocking thread).
fn dispatch(
    shared: &Shared,
    client_id: &str,
    caller: &Caller,
    request: Request,
) -> Result<Response, BrokerError> {
    let broker = &shared.broker;
    let now = now_ms();
    let body = match request {
        Request::CreateTopic(c) => {
            let config =
                spool_broker::TopicConfig::default().apply(&convert::patch_from_wire(&c.config)?);
            broker.create_topic(&c.name, c.partitions, config, now)?;
            ResponseBody::TopicCreated { name: c.name }
        }
        Request::DeleteTopic(d) => {
            broker.delete_topic(&d.name, now)?;
            ResponseBody::TopicDeleted
        }
        Request::ListTopics(l) => ResponseBody::Topics(
            broker
                .list_topics(l.pattern.as_deref())?
                .into_iter()
                .filter(|(name, _)| caller.may(Need::ProduceOrConsume(name)))
                .map(|(name, partitions)| p::TopicSummary { name, partitions })
                .collect(),
        ),
        Request::DescribeTopic(d) => {
            let desc = broker.describe_topic(&d.name)?;
            ResponseBody::TopicDescription(p::TopicDescription {
                name: desc.name,
                config: convert::config_to_wire(&desc.config),
                partitions: desc
                    .partitions
                    .into_iter()
                    .map(|pi| p::PartitionInfo {
                        partition: pi.partition,
                        start_offset: pi.start_offset.max(0) as u64,
                        end_offset: pi.end_offset.max(0) as u64,
                        messages: pi.messages,
                        bytes: pi.bytes,
                    })
                    .collect(),
            })
        }
        Request::AlterTopic(a) => {
            broker.alter_topic(&a.name, &convert::patch_from_wire(&a.config)?, now)?;
            ResponseBody::TopicAltered
        }
        Request::JoinGroup(j) => {
            let start = match j.start {
                p::GroupStart::Earliest => StartFrom::Earliest,
                p::GroupStart::Latest => StartFrom::Latest,
            };
            let a = broker.join_group(
                &j.group,
                j.member_id.as_deref(),
                client_id,
                &j.topics,
                j.session_timeout_ms as u64,
                start,
                now,
            )?;
            ResponseBody::Joined(p::Joined {
                member_id: a.member_id.clone(),
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::Heartbeat(h) => {
            let a = broker.heartbeat(&h.group, &h.member_id, h.generation, now)?;
            ResponseBody::HeartbeatOk(p::HeartbeatOk {
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::LeaveGroup(l) => {
            broker.leave_group(&l.group, &l.member_id)?;
            ResponseBody::LeftGroup
        }
        Request::CommitOffsets(c) => {
            let offsets = c
                .offsets
                .iter()
                .map(|po| {
                    Ok((
                        po.topic.clone(),
                        po.partition,
                        convert::offset_from_wire(po.offset)?,
                    ))
                })
                .collect::<Result<Vec<_>, BrokerError>>()?;
            broker.commit(&c.group, &c.member_id, &offsets, now)?;
            ResponseBody::OffsetsCommitted
        }
        Request::FetchOffsets(f) => {
            let tps: Vec<(String, u32)> = f
                .partitions
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect();
            let committed = broker.committed(&f.group, &tps);
            ResponseBody::Offsets(
                tps.into_iter()
                    .zip(committed)
                    .map(|((topic, partition), o)| p::CommittedOffset {
                        topic,
                        partition,
                        offset: o.map(|o| o.max(0) as u64),
                    })
                    .collect(),
            )
        }
        Request::CreateSubscription(c) => {
            match c.kind {
                p::SubscriptionKind::Stream => {
                    check_stream_subscription(broker, &c.topic, &c.name)?
                }
                p::SubscriptionKind::Queue => {
                    let spec = convert::queue_spec(&c);
                    match broker.create_queue(spec.clone(), now) {
                        Ok(()) => {}
                        // Creating what exists with the same settings is not
                        // an error, so set-up scripts can simply re-run.
                        Err(e)
                            if e.code == ErrorCode::GroupExists
                                && broker
                                    .queue(&spec.topic, &spec.name)
                                    .is_ok_and(|q| q.spec() == spec) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            ResponseBody::SubscriptionCreated
        }
        Request::DeleteSubscription(d) => {
            broker.delete_queue(&d.topic, &d.name, now)?;
            ResponseBody::SubscriptionDeleted
        }
        Request::ListSubscriptions(l) => {
            if let Some(topic) = &l.topic {
                broker.topic(topic)?;
            }
            let infos = broker
                .list_queues(l.topic.as_deref())
                .into_iter()
                .filter(|spec| caller.may(Need::Consume(&spec.topic)))
                .map(|spec| {
                    // Deleted since it was listed: report it empty.
                    let load = broker.queue(&spec.topic, &spec.name).map_or_else(
                        |_| convert::QueueLoad::default(),
                        |q| convert::QueueLoad::of(broker, &q),
                    );
                    convert::subscription_info(spec, load)
                })
                .collect();
            ResponseBody::Subscriptions(infos)
        }
        Request::Nack(n) => {
            let results = broker.nack(
                &n.topic,
                &n.name,
                &n.receipts,
                u64::from(n.delay_ms),
                n.error.as_deref(),
                now,
            )?;
            wake_after_settle(shared, &n.topic, &n.receipts, &results);
            ResponseBody::Nacked(convert::receipt_codes(&results))
        }
        Request::ExtendLease(x) => {
            let results =
                broker.extend(&x.topic, &x.name, &x.receipts, u64::from(x.extend_ms), now)?;
            ResponseBody::LeasesExtended(convert::receipt_codes(&results))
        }
        Request::Redrive(r) => ResponseBody::Redriven {
            count: broker.redrive(&r.topic, &r.name, now)?,
        },
        Request::SubmitRequest(submit) => {
            check_submit(shared, &submit)?;
            let record = broker.submit_request(
                &submit.queue,
                submit.payload.to_vec(),
                submit.json,
                submit.callback_url,
                now,
            )?;
            ResponseBody::RequestAccepted { id: record.id }
        }
        Request::CompleteRequest(c) => {
            let result: serde_json::Value = serde_json::from_str(&c.result_json)
                .map_err(|e| BrokerError::invalid(format!("result_json is not JSON: {e}")))?;
            let record = broker.complete_request(&c.id, result, now)?;
            ResponseBody::RequestCompleted {
                json: public_json(&record).to_string(),
            }
        }
        Request::FailRequest(f) => {
            // The lease being given back, to wake waiting workers below.
            let held = broker.get_request(&f.id, now).ok();
            let record = broker.fail_request(&f.id, &f.error, f.retry, now)?;
            if f.retry {
                if let Some((queue, receipt)) =
                    held.and_then(|r| r.receipt.map(|receipt| (r.queue, receipt)))
                {
                    // Like a nack: the message is ready again (after its
                    // backoff), and nothing was appended to announce it.
                    wake_after_settle(shared, &queue, &[receipt], &[Ok::<(), BrokerError>(())]);
                }
            }
            ResponseBody::RequestFailed {
                json: public_json(&record).to_string(),
            }
        }
        Request::CreateToken(c) => {
            let token = shared
                .auth
                .create(&c.name, &c.produce, &c.consume, c.admin, now)?;
            ResponseBody::TokenCreated(p::TokenCreated {
                name: c.name,
                token,
            })
        }
        Request::ListTokens => ResponseBody::Tokens(
            shared
                .auth
                .list()
                .into_iter()
                .map(|t| p::TokenInfo {
                    name: t.name,
                    produce: t.produce,
                    consume: t.consume,
                    admin: t.admin,
                    created_ms: t.created_ms,
                })
                .collect(),
        ),
        Request::RevokeToken(r) => {
            shared.auth.revoke(&r.name)?;
            ResponseBody::TokenRevoked
        }
        Request::Ping => ResponseBody::Pong,
        other => {
            return Err(BrokerError::new(
                ErrorCode::UnknownRequestType,
                format!("{:?} is not handled here", other.op()),
            ));
        }
    };
    Ok(Response::ok(body))
}

/// Grows `buf` towards a frame of `size` bytes whose start it holds: by what
/// is missing, but by no more than [`READ_RESERVE_STEP_BYTES`] or what it
/// holds already, whichever is more (so growth is at least geometric).
fn reserve_for_frame(buf: &mut BytesMut, size: usize) {
    let missing = size.saturating_sub(buf.len());
    let spare = buf.capacity() - buf.len();
    if missing > spare {
        buf.reserve(missing.min(buf.len().max(READ_RESERVE_STEP_BYTES)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_frame_is_reserved_in_big_steps_but_never_far_ahead_of_what_arrived() {
        const MIB: usize = 1024 * 1024;
        // A few bytes of a 5 MiB frame: at most one step is reserved.
        let mut buf = BytesMut::from(&[0u8; 10][..]);
        reserve_for_frame(&mut buf, 5 * MIB);
        assert!(buf.capacity() >= READ_RESERVE_STEP_BYTES);
        assert!(buf.capacity() < 2 * READ_RESERVE_STEP_BYTES + 64);
        // 3 MiB of it arrived: the rest (2 MiB) at once.
        let mut buf = BytesMut::from(&vec![0u8; 3 * MIB][..]);
        reserve_for_frame(&mut buf, 5 * MIB);
        assert!(buf.capacity() >= 5 * MIB);
        // A frame that fits in what is spare needs nothing.
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&[0u8; 100]);
        reserve_for_frame(&mut buf, 200);
        assert_eq!(buf.capacity(), 4096);
    }
}
