//! [`Client`]: one TCP connection to a Spool server, shared by every
//! producer, consumer and subscriber made from it.
//!
//! After the Hello handshake two background tasks own the socket: a writer
//! that sends queued frames in the order they were queued, and a reader that
//! routes each response to the call waiting for its correlation id (in any
//! order) and each push frame to its subscription's channel. Requests are
//! pipelined: many may be in flight at once.

use crate::error::ClientError;
use crate::tls::TlsOptions;
use bytes::{Bytes, BytesMut};
use spool_proto::{
    self as p, decode_frame, peek_frame_size, Frame, FrameKind, Push, Request, Response,
    ResponseBody, TopicConfig,
};
use spool_types::limits::FRAME_BYTES_MAX;
use spool_types::ErrorCode;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long connecting (TCP connect plus the Hello exchange) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes the writer gathers from its queue into one socket write.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;

/// Most buffers given to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

/// Bytes the reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How a client introduces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Shown in server logs; at most 256 bytes.
    pub client_id: String,
    /// Credential, if the server requires one.
    pub token: Option<String>,
    /// Speak TLS to the server; `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            client_id: "spool-client".to_owned(),
            token: None,
            tls: None,
        }
    }
}

/// What the reader hands a subscription.
#[derive(Debug)]
pub(crate) enum PushEvent {
    Push(Push),
    /// The connection is gone; nothing more will come.
    Lost(ClientError),
}

type Waiter = oneshot::Sender<Result<Response, ClientError>>;

#[derive(Default)]
struct State {
    pending: HashMap<u32, Waiter>,
    subscriptions: HashMap<u32, mpsc::UnboundedSender<PushEvent>>,
    next_correlation_id: u32,
    next_subscription_id: u32,
    /// Why the connection closed, once it has.
    closed: Option<String>,
}

impl State {
    fn allocate_correlation_id(&mut self) -> u32 {
        loop {
            self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
            let id = self.next_correlation_id;
            // 0 is what connection-level errors carry; never use it.
            if id != 0 && !self.pending.contains_key(&id) {
                return id;
            }
        }
    }
}

/// State shared by the handle and the background tasks.
struct Shared {
    state: Mutex<State>,
    /// The protocol version the server chose: responses are read in its
    /// layouts.
    version: u16,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection closed and fails everything waiting on it.
    fn fail(&self, error: ClientError) {
        let (pending, subscriptions) = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(error.to_string());
            }
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.subscriptions),
            )
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(error.clone()));
        }
        for (_, sub) in subscriptions {
            let _ = sub.send(PushEvent::Lost(error.clone()));
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Vec<Bytes>>,
    reader: JoinHandle<()>,
    server_id: String,
    max_frame_bytes: usize,
    peer: SocketAddr,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer stops by itself once `out` is dropped; the reader would
        // wait for the server, so stop it here.
        self.reader.abort();
    }
}

/// A connection to a Spool server. Cheap to clone: clones share the
/// connection, which closes when the last clone (including those held by
/// producers, consumers and subscribers) is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.inner.peer)
            .field("server_id", &self.inner.server_id)
            .finish()
    }
}

/// The answer to one request; resolves when the response arrives or the
/// connection is lost.
pub(crate) struct ResponseFuture {
    rx: oneshot::Receiver<Result<Response, ClientError>>,
}

impl Future for ResponseFuture {
    type Output = Result<ResponseBody, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(Ok(response)) => response.into_result().map_err(ClientError::Server),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Disconnected(
                "the connection closed before the response arrived".to_owned(),
            )),
        })
    }
}

pub(crate) fn unexpected(body: &ResponseBody, wanted: p::Op) -> ClientError {
    ClientError::Protocol(format!("expected a {wanted} response, got {}", body.op()))
}

/// What a client connected without TLS is told when a TLS server answers.
const SERVER_SPEAKS_TLS: &str = "the server answered with TLS: connect with TLS, trusting \
     the CA that signed its certificate (spool CLI: --tls-ca FILE; Rust client: \
     ClientOptions::tls)";

/// The error for a frame the server sent that breaks framing.
fn frame_error(e: p::FrameError) -> ClientError {
    match e {
        p::FrameError::TlsRecord { .. } => ClientError::Protocol(SERVER_SPEAKS_TLS.to_owned()),
        e => ClientError::Protocol(format!("the server sent a bad frame: {e}")),
    }
}

/// Reads one frame off the socket (used only for the handshake, before the
/// reader task exists).
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Frame, ClientError> {
    loop {
        match decode_frame(buf) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(frame_error(e)),
        }
        buf.reserve(READ_CHUNK_BYTES);
        if rd.read_buf(buf).await? == 0 {
            return Err(ClientError::Disconnected(
                "the server closed the connection during the handshake".to_owned(),
            ));
        }
    }
}

impl Client {
    /// Connects, performs the Hello handshake and starts the background
    /// reader and writer.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(addr, options)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::local(
                ErrorCode::Timeout,
                format!("no connection within {} ms", CONNECT_TIMEOUT.as_millis()),
            )),
        }
    }

    async fn connect_inner(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr()?;
        match options.tls.clone() {
            None => {
                let (rd, wr) = stream.into_split();
                Self::handshake(rd, wr, peer, options).await
            }
            Some(tls) => {
                let stream = crate::tls::connect(&tls, peer, stream).await?;
                let (rd, wr) = tokio::io::split(stream);
                Self::handshake(rd, wr, peer, options).await
            }
        }
    }

    /// Speaks the protocol over an already connected stream: used by the
    /// embedded broker, whose "connection" is an in-process pipe. `peer` is
    /// what [`Client::peer_addr`] will report.
    pub async fn connect_stream<S>(
        stream: S,
        peer: SocketAddr,
        options: ClientOptions,
    ) -> Result<Client, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        Self::handshake(rd, wr, peer, options).await
    }

    async fn handshake<R, W>(
        mut rd: R,
        mut wr: W,
        peer: SocketAddr,
        options: ClientOptions,
    ) -> Result<Client, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let hello = Request::Hello(p::Hello {
            min_version: p::PROTOCOL_VERSION_MIN,
            max_version: p::PROTOCOL_VERSION,
            client_id: options.client_id,
            token: options.token,
        });
        let mut out = BytesMut::new();
        hello.encode(1, &mut out)?;
        wr.write_all(&out).await?;

        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let frame = read_frame(&mut rd, &mut buf).await?;
        if frame.kind != FrameKind::Response {
            return Err(ClientError::Protocol(format!(
                "expected the Hello response, got a {:?} frame",
                frame.kind
            )));
        }
        let response = Response::decode(frame.op, frame.body)
            .map_err(|e| ClientError::Protocol(format!("bad Hello response: {e}")))?;
        let hello_ok = match response.into_result()? {
            ResponseBody::HelloOk(ok) => ok,
            other => return Err(unexpected(&other, p::Op::Hello)),
        };
        if !(p::PROTOCOL_VERSION_MIN..=p::PROTOCOL_VERSION).contains(&hello_ok.version) {
            return Err(ClientError::Protocol(format!(
                "the server chose protocol version {}, this client speaks {}..={}",
                hello_ok.version,
                p::PROTOCOL_VERSION_MIN,
                p::PROTOCOL_VERSION
            )));
        }

        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Id 1 was the handshake.
                next_correlation_id: 1,
                ..State::default()
            }),
            version: hello_ok.version,
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(wr, out_rx, Arc::clone(&shared)));
        let reader = tokio::spawn(read_loop(rd, buf, Arc::clone(&shared)));
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                out: out_tx,
                reader,
                server_id: hello_ok.server_id,
                max_frame_bytes: (hello_ok.max_frame_bytes as usize).min(FRAME_BYTES_MAX),
                peer,
            }),
        })
    }

    /// The protocol version the handshake chose.
    pub fn protocol_version(&self) -> u16 {
        self.inner.shared.version
    }

    /// The server's self-description from the handshake.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// The largest frame the server accepts.
    pub fn max_frame_bytes(&self) -> usize {
        self.inner.max_frame_bytes
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Whether the connection has closed (every later call fails).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().closed.is_some()
    }

    /// Queues `request` for sending and returns the future of its answer.
    ///
    /// Queuing is synchronous, so requests started one after another go out
    /// in that order (which keeps pipelined produces to a partition in order).
    pub(crate) fn start(&self, request: &Request) -> Result<ResponseFuture, ClientError> {
        let (tx, rx) = oneshot::channel();
        let shared = &self.inner.shared;
        let id = {
            let mut state = shared.lock();
            if let Some(reason) = &state.closed {
                return Err(ClientError::Disconnected(reason.clone()));
            }
            let id = state.allocate_correlation_id();
            state.pending.insert(id, tx);
            id
        };
        // A produced batch goes to the socket from the producer's buffer:
        // only the frame's header is written here.
        let queued = request
            .encode_parts(id)
            .map_err(ClientError::from)
            .and_then(|parts| {
                let len: usize = parts.iter().map(Bytes::len).sum();
                if len > self.inner.max_frame_bytes + p::LENGTH_PREFIX_BYTES {
                    return Err(ClientError::local(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "the request is {len} bytes; the server accepts at most {}",
                            self.inner.max_frame_bytes
                        ),
                    ));
                }
                self.inner
                    .out
                    .send(parts)
                    .map_err(|_| ClientError::Disconnected("the connection is closed".to_owned()))
            });
        if let Err(e) = queued {
            shared.lock().pending.remove(&id);
            return Err(e);
        }
        Ok(ResponseFuture { rx })
    }

    /// Sends a request and waits for its answer.
    pub(crate) async fn call(&self, request: Request) -> Result<ResponseBody, ClientError> {
        self.start(&request)?.await
    }

    /// Sends a request whose answer nobody waits for (e.g. credit top-ups).
    pub(crate) fn send_and_forget(&self, request: &Request) {
        // The reader drops the answer when it arrives; an error is
        // reported through the subscription instead.
        let _ = self.start(request);
    }

    /// Reserves a subscription id and the channel its pushes arrive on.
    /// Registered before Subscribe is sent, so no push can be missed.
    pub(crate) fn register_subscription(
        &self,
    ) -> Result<(u32, mpsc::UnboundedReceiver<PushEvent>), ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.inner.shared.lock();
        if let Some(reason) = &state.closed {
            return Err(ClientError::Disconnected(reason.clone()));
        }
        let id = loop {
            state.next_subscription_id = state.next_subscription_id.wrapping_add(1);
            let id = state.next_subscription_id;
            if !state.subscriptions.contains_key(&id) {
                break id;
            }
        };
        state.subscriptions.insert(id, tx);
        Ok((id, rx))
    }

    pub(crate) fn unregister_subscription(&self, id: u32) {
        self.inner.shared.lock().subscriptions.remove(&id);
    }

    // ---- admin ----------------------------------------------------------

    /// Creates a topic. Absent config fields take the server's defaults.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<(), ClientError> {
        let request = Request::CreateTopic(p::CreateTopic {
            name: name.to_owned(),
            partitions,
            config,
        });
        match self.call(request).await? {
            ResponseBody::TopicCreated { .. } => Ok(()),
            other => Err(unexpected(&other, p::Op::CreateTopic)),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = Request::DeleteTopic(p::DeleteTopic {
            name: name.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::TopicDeleted => Ok(()),
            other => Err(unexpected(&other, p::Op::DeleteTopic)),
        }
    }

    /// Topics and their partition counts; `pattern` (`orders.*`,
    /// `orders.>`, or a plain name) filters them.
    pub async fn list_topics(
        &self,
        pattern: Option<&str>,
    ) -> Result<Vec<p::TopicSummary>, ClientError> {
        let request = Request::ListTopics(p::ListTopics {
            pattern: pattern.map(str::to_owned),
        });
        match self.call(request).await? {
            ResponseBody::Topics(topics) => Ok(topics),
            other => Err(unexpected(&other, p::Op::ListTopics)),
        }
    }

    /// A topic's effective settings and per-partition offsets and depth.
    pub async fn describe_topic(&self, name: &str) -> Result<p::TopicDescription, ClientError> {
        let request = Request::DescribeTopic(p::DescribeTopic {
            name: name.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::TopicDescription(d) => Ok(d),
            other => Err(unexpected(&other, p::Op::DescribeTopic)),
        }
    }

    /// Changes the present fields of `config`; absent ones stay as they are.
    pub async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<(), ClientError> {
        let request = Request::AlterTopic(p::AlterTopic {
            name: name.to_owned(),
            config,
        });
        match self.call(request).await? {
            ResponseBody::TopicAltered => Ok(()),
            other => Err(unexpected(&other, p::Op::AlterTopic)),
        }
    }

    /// A producer id for an idempotent producer (a cluster node's answer;
    /// `INVALID_REQUEST` from a single-node server).
    pub async fn init_producer_id(&self) -> Result<u64, ClientError> {
        match self.call(Request::InitProducerId).await? {
            ResponseBody::ProducerId { producer_id } => Ok(producer_id),
            other => Err(unexpected(&other, p::Op::InitProducerId)),
        }
    }

    /// The answering node's view of its cluster (`INVALID_REQUEST` from a
    /// single-node server).
    pub async fn cluster_status(&self) -> Result<p::ClusterStatus, ClientError> {
        match self.call(Request::ClusterStatus).await? {
            ResponseBody::ClusterStatus(status) => Ok(status),
            other => Err(unexpected(&other, p::Op::ClusterStatus)),
        }
    }

    /// Round-trip time of an empty request.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let started = Instant::now();
        match self.call(Request::Ping).await? {
            ResponseBody::Pong => Ok(started.elapsed()),
            other => Err(unexpected(&other, p::Op::Ping)),
        }
    }

    // ---- data plane (low level) -----------------------------------------

    /// Appends one encoded RecordBatch. Most applications use
    /// [`crate::Producer`], which batches and pipelines.
    pub async fn produce(
        &self,
        topic: &str,
        routing: p::Routing,
        batch: Bytes,
    ) -> Result<p::Produced, ClientError> {
        let request = Request::Produce(p::Produce {
            topic: topic.to_owned(),
            routing,
            batch,
        });
        match self.call(request).await? {
            ResponseBody::Produced(produced) => Ok(produced),
            other => Err(unexpected(&other, p::Op::Produce)),
        }
    }

    /// One Fetch request, as is. [`crate::decode_records`] turns the
    /// returned batches into records.
    pub async fn fetch(&self, fetch: p::Fetch) -> Result<p::Fetched, ClientError> {
        match self.call(Request::Fetch(fetch)).await? {
            ResponseBody::Fetched(fetched) => Ok(fetched),
            other => Err(unexpected(&other, p::Op::Fetch)),
        }
    }

    /// A group's committed offsets (`None` where it has none).
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Vec<p::TopicPartition>,
    ) -> Result<Vec<p::CommittedOffset>, ClientError> {
        let request = Request::FetchOffsets(p::FetchOffsets {
            group: group.to_owned(),
            partitions,
        });
        match self.call(request).await? {
            ResponseBody::Offsets(offsets) => Ok(offsets),
            other => Err(unexpected(&other, p::Op::FetchOffsets)),
        }
    }

    // ---- consumer groups (used by GroupConsumer) ------------------------

    pub(crate) async fn join_group(&self, join: p::JoinGroup) -> Result<p::Joined, ClientError> {
        match self.call(Request::JoinGroup(join)).await? {
            ResponseBody::Joined(joined) => Ok(joined),
            other => Err(unexpected(&other, p::Op::JoinGroup)),
        }
    }

    pub(crate) async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
    ) -> Result<p::HeartbeatOk, ClientError> {
        let request = Request::Heartbeat(p::Heartbeat {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            generation,
        });
        match self.call(request).await? {
            ResponseBody::HeartbeatOk(ok) => Ok(ok),
            other => Err(unexpected(&other, p::Op::Heartbeat)),
        }
    }

    pub(crate) async fn leave_group(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<(), ClientError> {
        let request = Request::LeaveGroup(p::LeaveGroup {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::LeftGroup => Ok(()),
            other => Err(unexpected(&other, p::Op::LeaveGroup)),
        }
    }

    pub(crate) async fn commit_offsets(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        offsets: Vec<p::PartitionOffset>,
    ) -> Result<(), ClientError> {
        let request = Request::CommitOffsets(p::CommitOffsets {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            generation,
            offsets,
        });
        match self.call(request).await? {
            ResponseBody::OffsetsCommitted => Ok(()),
            other => Err(unexpected(&other, p::Op::CommitOffsets)),
        }
    }
}

/// Sends queued frames: small parts copied together, large ones (produced
/// batches) written from their own buffers, all in vectored writes.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Vec<Bytes>>,
    shared: Arc<Shared>,
) {
    let mut gather = p::WriteGather::default();
    while let Some(first) = rx.recv().await {
        first.iter().for_each(|part| gather.push(part));
        while gather.len() < WRITE_COALESCE_BYTES {
            match rx.try_recv() {
                Ok(next) => next.iter().for_each(|part| gather.push(part)),
                Err(_) => break,
            }
        }
        if let Err(e) = write_parts(&mut wr, &gather.take()).await {
            shared.fail(ClientError::Disconnected(format!("write failed: {e}")));
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes every part, in order, with as few (vectored) writes as the socket
/// allows.
async fn write_parts<W: AsyncWrite + Unpin>(wr: &mut W, parts: &[Bytes]) -> std::io::Result<()> {
    for chunk in parts.chunks(WRITE_SLICES_MAX) {
        let mut slices: Vec<std::io::IoSlice<'_>> =
            chunk.iter().map(|b| std::io::IoSlice::new(b)).collect();
        let mut unwritten: &mut [std::io::IoSlice<'_>] = &mut slices;
        while !unwritten.is_empty() {
            match wr.write_vectored(unwritten).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => std::io::IoSlice::advance_slices(&mut unwritten, n),
            }
        }
    }
    Ok(())
}

/// Reads frames and routes them until the connection ends.
async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, mut buf: BytesMut, shared: Arc<Shared>) {
    loop {
        loop {
            match decode_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = route(&shared, frame) {
                        shared.fail(e);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared.fail(frame_error(e));
                    return;
                }
            }
        }
        // Make room for the whole frame being received (its size was checked
        // against the frame limit by `peek_frame_size`).
        let want = match peek_frame_size(&buf) {
            Ok(Some(size)) => size.saturating_sub(buf.len()).max(READ_CHUNK_BYTES),
            _ => READ_CHUNK_BYTES,
        };
        buf.reserve(want);
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                shared.fail(ClientError::Disconnected(
                    "the server closed the connection".to_owned(),
                ));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.fail(ClientError::Disconnected(format!("read failed: {e}")));
                return;
            }
        }
    }
}

/// Delivers one frame. An error return closes the connection.
fn route(shared: &Shared, frame: Frame) -> Result<(), ClientError> {
    match frame.kind {
        FrameKind::Request => Err(ClientError::Protocol(
            "the server sent a request frame".to_owned(),
        )),
        FrameKind::Response if frame.op == 0 => {
            // A connection-level error: the server closes after sending it.
            let error = match Response::decode(0, frame.body) {
                Ok(response) => match response.into_result() {
                    Err(wire) => ClientError::Server(wire),
                    Ok(_) => ClientError::Protocol("a success response with op 0".to_owned()),
                },
                Err(e) => ClientError::Protocol(format!("bad connection-level error: {e}")),
            };
            Err(error)
        }
        FrameKind::Response => {
            let waiter = shared.lock().pending.remove(&frame.correlation_id);
            // No waiter: an answer nobody waits for (a credit top-up).
            if let Some(waiter) = waiter {
                let result =
                    Response::decode_at(shared.version, frame.op, frame.body).map_err(|e| {
                        ClientError::Protocol(format!(
                            "undecodable response (op {}): {e}",
                            frame.op
                        ))
                    });
                let _ = waiter.send(result);
            }
            Ok(())
        }
        FrameKind::Push => {
            let id = frame.correlation_id;
            let event = match Push::decode(frame.op, frame.body) {
                Ok(push) => push,
                Err(e) => {
                    // The frame was well delimited: fail that subscription only.
                    let sub = shared.lock().subscriptions.remove(&id);
                    if let Some(sub) = sub {
                        let _ = sub.send(PushEvent::Lost(ClientError::Protocol(format!(
                            "undecodable push (op {}): {e}",
                            frame.op
                        ))));
                    }
                    return Ok(());
                }
            };
            let mut state = shared.lock();
            let closing = matches!(event, Push::SubscriptionClosed(_));
            let sub = if closing {
                state.subscriptions.remove(&id)
            } else {
                state.subscriptions.get(&id).cloned()
            };
            drop(state);
            if let Some(sub) = sub {
                let _ = sub.send(PushEvent::Push(event));
            }
            Ok(())
        }
    }
}
