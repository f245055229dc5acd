//! A connection's way out: frames queued for its writer with the share of
//! the in-flight budget they release once written, the writer task itself,
//! and how answers are encoded.

use super::closing::{closing, CloseReason};
use super::BYTE_PERMIT_UNIT;
use bytes::{Bytes, BytesMut};
use spool_proto::{self as p, Response, WireError};
use spool_types::ErrorCode;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Frames queued for the writer before producers of responses wait.
const OUTBOX_FRAMES: usize = 64;
/// Most bytes written to the socket in one call when batching queued frames
/// (a single larger frame goes alone).
const WRITE_COALESCE_BYTES: usize = 256 * 1024;
/// Most queued frames taken into one write (well under `IOV_MAX`).
const WRITE_COALESCE_FRAMES: usize = 256;

/// How long a write to a client may make no progress before the client is
/// taken to have stopped reading and is disconnected (a "slow consumer").
/// Until then its unread answers hold up to its in-flight byte budget; this
/// bounds for how long.
pub const SLOW_CLIENT_TIMEOUT_MS: u64 = 10_000;

/// A frame for the writer, with the budget it releases once written.
pub(super) struct Outgoing {
    /// The frame is `bytes` followed by `rest` (parts shared with the
    /// buffers stored batches were read into; empty for most frames).
    pub(super) bytes: Bytes,
    pub(super) rest: Vec<Bytes>,
    pub(super) _permits: Permits,
}

/// A request's share of the connection's in-flight budget, held until its
/// response is written; dropping it also records the request's latency
/// (read to written) in `spool_request_duration_seconds{op}`.
#[derive(Default)]
pub(super) struct Permits {
    pub(super) held: Vec<OwnedSemaphorePermit>,
    /// When the request was read, and its op; `None` for frames that
    /// answer no request of the client's (pushes, connection errors).
    pub(super) timed: Option<(Instant, p::Op)>,
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
    pub(super) fn none() -> Permits {
        Permits::default()
    }

    pub(super) fn push(&mut self, permit: OwnedSemaphorePermit) {
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

pub(super) type Outbox = mpsc::Sender<Outgoing>;

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

/// Queues one response frame (no shared parts) for the connection's
/// writer; a writer that has gone (the connection is closing) drops it.
pub(super) async fn answer(tx: &Outbox, correlation_id: u32, response: Response, permits: Permits) {
    let _ = tx
        .send(Outgoing {
            rest: Vec::new(),
            bytes: encode_response(correlation_id, response),
            _permits: permits,
        })
        .await;
}

pub(super) fn encode_response(correlation_id: u32, response: Response) -> Bytes {
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
pub(super) fn encode_response_parts(
    correlation_id: u32,
    response: Response,
) -> (Bytes, Vec<Bytes>) {
    match response.encode_parts(correlation_id) {
        Ok(parts) => {
            let mut parts = parts.into_iter();
            let first = parts.next().unwrap_or_default();
            (first, parts.collect())
        }
        Err(_) => (encode_response(correlation_id, response), Vec::new()),
    }
}

pub(super) fn error_response(op: u16, e: impl Into<WireError>) -> Response {
    Response::error(op, e.into())
}

/// Takes `units` of `budget`, or `None` once the connection's writer has
/// gone (the client stalled or hung up) or the budget was closed.
pub(super) async fn budget_unless_closed(
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
pub(super) async fn send_budgeted(
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

/// Starts a connection's writer: it takes frames from the returned outbox
/// in order, coalescing what is queued into one vectored write, and gives
/// up on a client that stops reading (see [`SLOW_CLIENT_TIMEOUT_MS`]).
pub(super) fn spawn_writer<W>(mut wr: W, peer: SocketAddr) -> (Outbox, tokio::task::JoinHandle<()>)
where
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
                    closing(peer, CloseReason::SlowClient, &why);
                    return release_unsent(batch, rx);
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    (tx, writer)
}
