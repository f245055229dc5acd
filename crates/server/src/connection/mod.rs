//! One client connection: handshake, then pipelined requests.
//!
//! Reading stops while the connection is at its in-flight limits (requests or
//! bytes), so a client that floods requests — or never reads its responses —
//! holds at most those limits in server memory. Bad input is answered with
//! an error frame; input that leaves the stream out of sync (a bad length or
//! frame kind) closes just this connection.
//!
//! Every request is one call of the operations layer ([`Ops`]), which
//! authorises, validates and runs it (`dispatch` converts the wire types);
//! what is this front end's own is framing, the handshake, in-flight
//! budgets, the writer (`outbox`) and push subscriptions (`push`).
//!
//! With authentication on, Hello must carry a valid token (else
//! `UNAUTHENTICATED` and the connection closes); a request the token may
//! not make is answered `FORBIDDEN` and the connection stays open.

mod closing;
mod dispatch;
mod outbox;
mod push;

pub(crate) use closing::CloseReason;

use crate::auth::Caller;
use crate::convert::{self, wire_error};
use crate::ops::Ops;
use bytes::BytesMut;
use closing::closing;
use outbox::{
    answer, budget_unless_closed, encode_response_parts, error_response, send_budgeted, Outbox,
    Outgoing, Permits,
};
use spool_proto::{self as p, Request, Response, ResponseBody, WireError};
use spool_types::limits::{
    CLIENT_ID_LEN_MAX, CONNECTION_IN_FLIGHT_BYTES_MAX, CONNECTION_IN_FLIGHT_MAX, FRAME_BYTES_MAX,
    RECORD_BYTES_MAX,
};
use spool_types::ErrorCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
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
/// Units of the in-flight byte budget (so a u32 permit count covers it).
const BYTE_PERMIT_UNIT: usize = 1024;
/// A connection that has not completed its handshake (Hello) this long after
/// it was accepted is closed.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// The most one leased message adds to a frame. A stored record is at most
/// `RECORD_BYTES_MAX` (key, value and headers with their lengths); the wire's
/// fixed-width lengths, the receipt and the lease fields add well under
/// 4 KiB, even with the most headers a record may carry.
const LEASED_MESSAGE_BYTES_MAX: usize = RECORD_BYTES_MAX + 4 * 1024;
/// Room for messages in one Messages response or QueueDeliver push: the
/// frame limit less the header (7), error code (2) and count (4).
const MESSAGES_ROOM: usize = FRAME_BYTES_MAX - 7 - 2 - 4;

/// Answers a connection over a limit with one error frame and closes it.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, message: &str) {
    let mut buf = BytesMut::new();
    let err = WireError::new(ErrorCode::TooManyConnections, message);
    if Response::error(0, err).encode(0, &mut buf).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
    }
    crate::listener::linger_close(stream).await;
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
                CloseReason::HandshakeTimeout,
                &format_args!("nothing sent within {HANDSHAKE_TIMEOUT_MS} ms"),
            );
            let _ = stream.set_zero_linger();
            None
        }
    }
}

/// Serves one connection: `rd` and `wr` are the two halves of its stream
/// (plain TCP, TLS, or an in-process pipe for the embedded broker).
pub async fn handle<R, W>(rd: R, wr: W, peer: SocketAddr, ops: Arc<Ops>)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    handle_until(rd, wr, peer, ops, deadline).await
}

/// [`handle`], with the handshake due by `handshake_deadline` (set when the
/// connection was accepted, see [`first_bytes`]).
pub async fn handle_until<R, W>(
    mut rd: R,
    wr: W,
    peer: SocketAddr,
    ops: Arc<Ops>,
    handshake_deadline: Instant,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, writer) = outbox::spawn_writer(wr, peer);
    let mut conn = Conn {
        peer,
        ops: Arc::clone(&ops),
        tx,
        requests: Arc::new(Semaphore::new(CONNECTION_IN_FLIGHT_MAX)),
        bytes_budget: Arc::new(Semaphore::new(
            CONNECTION_IN_FLIGHT_BYTES_MAX / BYTE_PERMIT_UNIT,
        )),
        subs: HashMap::new(),
        waits_end: CancellationToken::new(),
        greeted: false,
        version: p::PROTOCOL_VERSION,
        client_id: Arc::from("client"),
        caller: Caller::Open,
    };
    // Small to start: idle connections are common and each holds one.
    let mut buf = BytesMut::with_capacity(CONNECTION_READ_BUFFER_INITIAL_BYTES);
    let mut shutdown = ops.shutdown();
    // The client hung up (end of stream, a failed read, or the writer gave
    // up on it), as opposed to the server closing the connection.
    let mut hung_up = false;
    'conn: loop {
        // Take every complete frame already buffered.
        loop {
            let frame = match p::decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    conn.refuse_frame(e).await;
                    break 'conn;
                }
            };
            if conn.take_frame(frame).await == Next::Close {
                break 'conn;
            }
        }
        // Refuse an oversized frame as soon as its length prefix arrives;
        // make room for the rest of a large one in few steps.
        let frame_size = p::peek_frame_size(&buf);
        if let (Ok(Some(size)), true) = (&frame_size, conn.greeted) {
            // Not before the handshake: a stranger's 4-byte length prefix
            // must not make the server reserve a megabyte.
            reserve_for_frame(&mut buf, *size);
        }
        if let Err(e) = frame_size {
            conn.refuse_frame(e).await;
            break 'conn;
        }
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shutdown.changed() => break 'conn,
            // The writer gave up on this client (stalled or failed).
            _ = conn.tx.closed() => {
                hung_up = true;
                break 'conn;
            }
            _ = tokio::time::sleep_until(handshake_deadline), if !conn.greeted => {
                closing(peer, CloseReason::HandshakeTimeout, &format_args!("no handshake within {HANDSHAKE_TIMEOUT_MS} ms"));
                break 'conn;
            }
        };
        match read {
            Ok(0) => {
                hung_up = true;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, "read failed: {e}");
                hung_up = true;
                break;
            }
        }
    }
    conn.finish(hung_up).await;
    let _ = writer.await;
}

/// What the reading loop does after a frame.
#[derive(PartialEq, Eq)]
enum Next {
    Read,
    Close,
}

/// One connection's state while it reads requests.
struct Conn {
    peer: SocketAddr,
    ops: Arc<Ops>,
    tx: Outbox,
    /// Requests in flight (count), and their bytes (in
    /// [`BYTE_PERMIT_UNIT`]s): reading stops while either is used up.
    requests: Arc<Semaphore>,
    bytes_budget: Arc<Semaphore>,
    subs: HashMap<u32, push::Subscription>,
    /// Ends this connection's long polls (FETCH, RECEIVE, GET_REQUEST),
    /// unanswered: cancelled as soon as the client hangs up, else once the
    /// grace for in-flight requests after reading stopped has passed. A
    /// wait for a client that is gone would hold the connection (and its
    /// admission slot) for minutes, and a RECEIVE would lease the next
    /// message to nobody.
    waits_end: CancellationToken,
    greeted: bool,
    /// The protocol version the handshake chose: answers are encoded in
    /// its layouts.
    version: u16,
    /// Names this client's group members (from its handshake).
    client_id: Arc<str>,
    /// Who is asking (from the handshake's token).
    caller: Caller,
}

impl Conn {
    /// Answers input that broke framing with one error frame (which our
    /// client turns into advice when it is a TLS client), before the
    /// connection closes.
    async fn refuse_frame(&self, e: p::FrameError) {
        closing(self.peer, CloseReason::of_frame_error(&e), &e);
        answer(&self.tx, 0, error_response(0, e), Permits::none()).await;
    }

    /// Handles one decoded frame: the handshake first, then requests.
    async fn take_frame(&mut self, frame: p::Frame) -> Next {
        let peer = self.peer;
        if frame.kind != p::FrameKind::Request {
            closing(
                peer,
                CloseReason::NonRequestFrame,
                &"a client sent a non-request frame",
            );
            let err = WireError::new(
                ErrorCode::MalformedFrame,
                "clients may only send request frames",
            );
            let response = error_response(frame.op, err);
            answer(&self.tx, frame.correlation_id, response, Permits::none()).await;
            return Next::Close;
        }
        let cid = frame.correlation_id;
        let read_at = Instant::now();
        // In the layouts of the connection's version (Hello's is the same
        // in every version).
        let request = match Request::decode_at(self.version, frame.op, frame.body.clone()) {
            Ok(r) => r,
            Err(e) => {
                // The frame boundary is intact: answer and carry on.
                answer(&self.tx, cid, error_response(frame.op, e), Permits::none()).await;
                return if self.greeted {
                    Next::Read
                } else {
                    Next::Close
                };
            }
        };
        if !self.greeted {
            let response = self.handshake(frame.op, request);
            answer(&self.tx, cid, response, Permits::none()).await;
            return if self.greeted {
                Next::Read
            } else {
                Next::Close
            };
        }
        if let Err(e) = dispatch::admit(&self.ops, &self.caller, &request) {
            tracing::debug!(%peer, cid, op = %request.op(), "refused: {}", e.message);
            let response = error_response(frame.op, wire_error(e));
            answer(&self.tx, cid, response, Permits::none()).await;
            return Next::Read;
        }
        // Back pressure: wait for budget before taking more work. Once the
        // writer has given up on this client, take no more: its queued
        // requests would only build answers nobody can receive (a
        // never-reading client's hundreds of buffered fetches, read all at
        // once when its stalled writer freed their budget, once cost 1.5 s
        // of CPU and stalled every other client).
        let units = (frame.body.len() + 64).div_ceil(BYTE_PERMIT_UNIT) as u32;
        let Some(count_permit) = budget_unless_closed(&self.requests, 1, &self.tx).await else {
            return Next::Close;
        };
        let Some(bytes_permit) = budget_unless_closed(&self.bytes_budget, units, &self.tx).await
        else {
            return Next::Close;
        };
        let permits = Permits {
            held: vec![count_permit, bytes_permit],
            timed: p::Op::from_u16(frame.op).ok().map(|op| (read_at, op)),
        };
        self.serve(frame.op, cid, request, permits).await
    }

    /// Answers Hello: negotiates the version and authenticates the token.
    fn handshake(&mut self, op: u16, request: Request) -> Response {
        let Request::Hello(hello) = request else {
            let err = WireError::new(
                ErrorCode::HandshakeRequired,
                "the first request on a connection must be Hello",
            );
            return error_response(op, err);
        };
        let Some(version) = hello.negotiate(p::PROTOCOL_VERSION_MIN, p::PROTOCOL_VERSION) else {
            let err = WireError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "client speaks versions {}..={}, server speaks {}..={}",
                    hello.min_version,
                    hello.max_version,
                    p::PROTOCOL_VERSION_MIN,
                    p::PROTOCOL_VERSION
                ),
            );
            return error_response(op, err);
        };
        if hello.client_id.len() > CLIENT_ID_LEN_MAX {
            let err = WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "client_id is {} bytes; at most {CLIENT_ID_LEN_MAX} are allowed",
                    hello.client_id.len()
                ),
            );
            return error_response(op, err);
        }
        let who = match self
            .ops
            .auth
            .authenticate(hello.token.as_deref(), self.peer, "binary")
        {
            Ok(who) => who,
            Err(e) => return error_response(op, wire_error(e)),
        };
        self.greeted = true;
        self.version = version;
        tracing::debug!(peer = %self.peer, client = %hello.client_id, token = who.name(), "handshake");
        self.caller = who;
        let id: String = hello
            .client_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect();
        if !id.is_empty() {
            self.client_id = Arc::from(id.as_str());
        }
        Response::ok(ResponseBody::HelloOk(p::HelloOk {
            version,
            server_id: self.ops.server_id.clone(),
            max_frame_bytes: FRAME_BYTES_MAX as u32,
        }))
    }

    /// Serves an admitted request. Produces and acks are written here, on
    /// the connection's task, in arrival order (so pipelined produces keep
    /// their order); their fdatasync waits, long polls and every other
    /// operation run in tasks of their own.
    async fn serve(&mut self, op: u16, cid: u32, request: Request, permits: Permits) -> Next {
        let (ops, tx) = (Arc::clone(&self.ops), self.tx.clone());
        // The caller is cloned only for the requests answered from a task
        // of their own: produces and acks, the most frequent, start here.
        match request {
            Request::Hello(_) => {
                // As documented: answered and otherwise ignored.
                let err = WireError::new(
                    ErrorCode::HandshakeRequired,
                    "the handshake was already done on this connection",
                );
                answer(&tx, cid, error_response(op, err), permits).await;
            }
            Request::Produce(produce) => {
                // The batch is written from the received frame, not copied.
                let routing = convert::routing(&produce.routing);
                let pending =
                    ops.start_produce(&self.caller, &produce.topic, &routing, &produce.batch);
                tokio::spawn(async move {
                    let result = match pending {
                        Ok(pending) => ops.finish_produce(pending).await,
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
                // The response is held in memory until written: budget for it.
                let extra = (dispatch::fetch_bytes_max(&fetch) / BYTE_PERMIT_UNIT) as u32;
                let Some(resp_permit) = budget_unless_closed(&self.bytes_budget, extra, &tx).await
                else {
                    return Next::Close;
                };
                let mut permits = permits;
                permits.push(resp_permit);
                let (ended, caller) = (self.waits_end.clone(), self.caller.clone());
                tokio::spawn(async move {
                    let fetched = dispatch::fetch(&ops, &caller, fetch);
                    let Some(response) = unless_ended(fetched, &ended, &tx).await else {
                        return;
                    };
                    // The stored batches go out from the buffers they were
                    // read into, not copied into the frame.
                    let (bytes, rest) = encode_response_parts(cid, response);
                    let out = Outgoing {
                        rest,
                        bytes,
                        _permits: permits,
                    };
                    let _ = tx.send(out).await;
                });
            }
            Request::Subscribe(sub) => {
                let id = sub.subscription_id;
                let started = push::subscribe((&ops, &self.caller), &tx, &mut self.subs, sub);
                push::start_subscription(&tx, &mut self.subs, (op, cid, id), started, permits)
                    .await;
            }
            Request::SubscribeQueue(sub) => {
                let id = sub.subscription_id;
                let started = push::subscribe_queue((&ops, &self.caller), &tx, &mut self.subs, sub);
                push::start_subscription(&tx, &mut self.subs, (op, cid, id), started, permits)
                    .await;
            }
            Request::Receive(receive) => {
                let (budget, caller) = (Arc::clone(&self.bytes_budget), self.caller.clone());
                let ended = self.waits_end.clone();
                tokio::spawn(async move {
                    let leased = dispatch::receive(&ops, &caller, receive);
                    if let Some(response) = unless_ended(leased, &ended, &tx).await {
                        send_budgeted(&tx, &budget, cid, response, permits).await;
                    }
                });
            }
            Request::GetRequest(get) => {
                let (budget, caller) = (Arc::clone(&self.bytes_budget), self.caller.clone());
                let ended = self.waits_end.clone();
                tokio::spawn(async move {
                    let record = dispatch::get_request(&ops, &caller, get);
                    if let Some(response) = unless_ended(record, &ended, &tx).await {
                        send_budgeted(&tx, &budget, cid, response, permits).await;
                    }
                });
            }
            Request::Credit(credit) => {
                let live = self
                    .subs
                    .get(&credit.subscription_id)
                    .filter(|s| !s.task.is_finished());
                let response = match live {
                    Some(s) => {
                        s.grant(credit.messages, credit.bytes);
                        Response::ok(ResponseBody::CreditGranted)
                    }
                    None => push::no_subscription(op, credit.subscription_id),
                };
                answer(&tx, cid, response, permits).await;
            }
            Request::Unsubscribe(u) => {
                let response = match self.subs.remove(&u.subscription_id) {
                    Some(s) => {
                        s.stop().await;
                        Response::ok(ResponseBody::Unsubscribed)
                    }
                    None => push::no_subscription(op, u.subscription_id),
                };
                answer(&tx, cid, response, permits).await;
            }
            Request::Ack(ack) => {
                // Like a produce: written on this task, the fdatasync an
                // `always` topic needs waited for by the broker's sync
                // threads. Through `spawn_blocking` each ack cost two
                // thread hand-offs (BENCHMARKS.md).
                let started = ops.start_ack(&self.caller, &ack.topic, &ack.name, &ack.receipts);
                tokio::spawn(async move {
                    let response = dispatch::ack(&ops, started).await;
                    answer(&tx, cid, response, permits).await;
                });
            }
            other => {
                let (client_id, caller) = (Arc::clone(&self.client_id), self.caller.clone());
                let span = tracing::info_span!("request", cid, op = %other.op());
                let version = self.version;
                tokio::spawn(
                    async move {
                        let response = dispatch::dispatch(&ops, &client_id, &caller, other)
                            .await
                            .unwrap_or_else(|e| error_response(op, wire_error(e)));
                        // In the layouts of the connection's version.
                        let response = response.for_version(version);
                        answer(&tx, cid, response, permits).await;
                    }
                    .instrument(span),
                );
            }
        }
        Next::Read
    }

    /// Stops the connection's pushes and lets in-flight requests finish and
    /// their answers go out (up to the shutdown grace). Long polls of a
    /// client that `hung_up` end at once: nobody waits for their answers
    /// (a client that only closed its sending side gets none). When the
    /// server closes the connection (shutting down, a broken frame) they
    /// get the grace too; a shutdown answers them itself.
    async fn finish(self, hung_up: bool) {
        for (_, s) in self.subs {
            s.task.abort();
        }
        if hung_up {
            self.waits_end.cancel();
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(crate::SHUTDOWN_GRACE_MS),
            self.requests.acquire_many(CONNECTION_IN_FLIGHT_MAX as u32),
        )
        .await;
        self.waits_end.cancel();
    }
}

/// Runs a long poll unless its connection's waits end first (`None`).
/// The end is looked at first, so once it has come the wait is not polled
/// again: a RECEIVE leases nothing more for a client that is gone.
async fn unless_ended<T>(
    wait: impl std::future::Future<Output = T>,
    ended: &CancellationToken,
    tx: &Outbox,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = ended.cancelled() => None,
        _ = tx.closed() => None,
        r = wait => Some(r),
    }
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
