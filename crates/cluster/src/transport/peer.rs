//! The dialing side: one connection per peer, made on first use and again
//! after it breaks; requests pipelined on it, each answered through its
//! own channel.

use super::tls::{dial_link, LinkStream, LinkTls};
use super::{frame_header, handshake, read_frame, ClusterSecret, CONNECT_TIMEOUT_MS};
use crate::types::NodeId;
use crate::wire::{
    decode_response, encode_request, GroupId, RaftRequest, RaftResponse, ANY_MEMBER,
};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Requests queued for one connection's writer before callers wait.
const WRITE_QUEUE_FRAMES: usize = 256;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

struct Conn {
    writer: mpsc::Sender<(u64, Bytes)>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

/// A node this node sends Raft messages to.
pub struct Peer {
    own_id: NodeId,
    id: NodeId,
    addr: Mutex<String>,
    secret: ClusterSecret,
    tls: Option<LinkTls>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// Every peer of this node, by id.
pub struct Peers {
    own_id: NodeId,
    secret: ClusterSecret,
    /// TLS on every link, when the server has a certificate.
    tls: Option<LinkTls>,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peers {
    pub fn new(own_id: NodeId, secret: ClusterSecret, tls: Option<LinkTls>) -> Peers {
        Peers {
            own_id,
            secret,
            tls,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// The peer `id`, reached at `addr` (an address that changed is used
    /// from the next connection on).
    /// The link to node `id` (a Raft member id names its node: see
    /// [`node_of`](crate::types::node_of)).
    pub fn peer(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        let id = crate::types::node_of(id);
        let mut peers = lock(&self.peers);
        let peer = peers.entry(id).or_insert_with(|| {
            Arc::new(Peer {
                own_id: self.own_id,
                id,
                addr: Mutex::new(addr.to_string()),
                secret: self.secret.clone(),
                tls: self.tls.clone(),
                conn: tokio::sync::Mutex::new(None),
            })
        });
        let mut known = lock(&peer.addr);
        if *known != addr {
            *known = addr.to_string();
        }
        drop(known);
        peer.clone()
    }
}

impl Peer {
    /// Sends `request` for `group` and waits at most `timeout` for the
    /// answer. An error means the answer is unknown (the request may or may
    /// not have been handled); Raft's messages are safe to resend.
    pub async fn call(
        &self,
        group: &GroupId,
        request: &RaftRequest,
        timeout: Duration,
    ) -> io::Result<RaftResponse> {
        self.call_member(group, ANY_MEMBER, request, timeout).await
    }

    /// [`Peer::call`] for one Raft member of the group: the peer's replica
    /// refuses it if it is another member (a node that came back in a new
    /// generation must not answer for its old self).
    pub async fn call_member(
        &self,
        group: &GroupId,
        to_member: u64,
        request: &RaftRequest,
        timeout: Duration,
    ) -> io::Result<RaftResponse> {
        self.send_to(group, to_member, request)
            .await?
            .answer(timeout)
            .await
    }

    /// Sends `request` and returns at once, the answer to come: requests
    /// sent one after another from one task reach the peer in that order
    /// (one connection), and none waits for the answer of the one before.
    pub async fn send(&self, group: &GroupId, request: &RaftRequest) -> io::Result<Sent> {
        self.send_to(group, ANY_MEMBER, request).await
    }

    async fn send_to(
        &self,
        group: &GroupId,
        to_member: u64,
        request: &RaftRequest,
    ) -> io::Result<Sent> {
        let conn = self.connection().await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        lock(&conn.pending).insert(id, answer_tx);
        let mut message = BytesMut::new();
        encode_request(group, to_member, request, &mut message);
        if conn.writer.send((id, message.freeze())).await.is_err() {
            lock(&conn.pending).remove(&id);
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed",
            ));
        }
        Ok(Sent {
            peer: self.id,
            id,
            conn,
            answer_rx,
        })
    }

    async fn connection(&self) -> io::Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.closed.load(Ordering::Acquire) {
                return Ok(conn.clone());
            }
        }
        let addr = lock(&self.addr).clone();
        let connect = async {
            let stream = TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let mut stream = dial_link(self.tls.as_ref(), stream, &addr).await?;
            let (secret, own, peer) = (&self.secret, self.own_id, self.id);
            match &mut stream {
                LinkStream::Plain(s) => handshake::dial(s, secret, own, peer).await?,
                LinkStream::Tls(s) => handshake::dial(s, secret, own, peer).await?,
            }
            Ok::<_, io::Error>(stream)
        };
        let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
            })??;
        let conn = Arc::new(start(stream));
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// A request sent to a peer, its answer to come.
pub struct Sent {
    peer: NodeId,
    id: u64,
    conn: Arc<Conn>,
    answer_rx: oneshot::Receiver<Bytes>,
}

impl Sent {
    /// Waits at most `timeout` for the answer. An error means the answer is
    /// unknown: the request may or may not have been handled.
    pub async fn answer(self, timeout: Duration) -> io::Result<RaftResponse> {
        let Sent {
            peer,
            id,
            conn,
            answer_rx,
        } = self;
        match tokio::time::timeout(timeout, answer_rx).await {
            Ok(Ok(bytes)) => {
                decode_response(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("connection to node {peer} closed before the answer"),
            )),
            Err(_) => {
                lock(&conn.pending).remove(&id);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node {peer} did not answer within {timeout:?}"),
                ))
            }
        }
    }
}

/// Starts the writer and reader tasks of an authenticated connection.
fn start(stream: LinkStream) -> Conn {
    let (read_half, write_half) = stream.split();
    let (writer_tx, mut writer_rx) = mpsc::channel::<(u64, Bytes)>(WRITE_QUEUE_FRAMES);
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let closed = Arc::new(AtomicBool::new(false));
    let writer_closed = closed.clone();
    tokio::spawn(async move {
        let mut out = BufWriter::new(write_half);
        while let Some((id, message)) = writer_rx.recv().await {
            let written = async {
                out.write_all(&frame_header(id, message.len())).await?;
                out.write_all(&message).await?;
                if writer_rx.is_empty() {
                    out.flush().await?;
                }
                Ok::<_, io::Error>(())
            };
            if written.await.is_err() {
                break;
            }
        }
        writer_closed.store(true, Ordering::Release);
    });
    let reader_pending = pending.clone();
    let reader_closed = closed.clone();
    tokio::spawn(async move {
        let mut input = read_half;
        while let Ok((id, message)) = read_frame(&mut input).await {
            if let Some(answer) = lock(&reader_pending).remove(&id) {
                let _ = answer.send(message);
            }
        }
        reader_closed.store(true, Ordering::Release);
        // Dropping the senders tells every waiter the connection is gone.
        lock(&reader_pending).clear();
    });
    Conn {
        writer: writer_tx,
        pending,
        next_id: AtomicU64::new(1),
        closed,
    }
}
