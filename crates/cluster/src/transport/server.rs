//! The listening side: authenticates each connection, then answers its
//! requests, each on its own task (answers go back as they finish; the
//! dialer matches them by request id).

use super::tls::{accept_link, LinkStream, LinkTls};
use super::{frame_header, handshake, read_frame, ClusterSecret, CONNECT_TIMEOUT_MS};
use crate::types::NodeId;
use crate::wire::{decode_request, encode_response, GroupId, RaftRequest, RaftResponse};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Where this node's incoming Raft messages go (the groups it hosts).
pub trait Inbound: Send + Sync + 'static {
    /// Answers `request` for `group`, addressed to Raft member `to_member`
    /// (or [`ANY_MEMBER`](crate::wire::ANY_MEMBER)).
    fn handle(
        &self,
        group: GroupId,
        to_member: u64,
        request: RaftRequest,
    ) -> BoxFuture<'static, RaftResponse>;
}

/// Answers peers on `listener` until the task is dropped; dropping it
/// also ends every connection it accepted (a node that stops answers no
/// one).
pub async fn serve(
    listener: TcpListener,
    secret: ClusterSecret,
    own_id: NodeId,
    inbound: Arc<dyn Inbound>,
    tls: Option<LinkTls>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let secret = secret.clone();
        let inbound = inbound.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, secret, own_id, inbound, tls).await {
                tracing::debug!(%from, error = %e, "cluster connection ended");
            }
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    secret: ClusterSecret,
    own_id: NodeId,
    inbound: Arc<dyn Inbound>,
    tls: Option<LinkTls>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let handshake = async {
        let mut stream = accept_link(tls.as_ref(), stream).await?;
        let peer = match &mut stream {
            LinkStream::Plain(s) => handshake::accept(s, &secret, own_id).await?,
            LinkStream::Tls(s) => handshake::accept(s, &secret, own_id).await?,
        };
        Ok::<_, io::Error>((stream, peer))
    };
    let (stream, peer) = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "cluster handshake"))??;
    let (mut input, write_half) = stream.split();
    let (answers_tx, mut answers_rx) = mpsc::unbounded_channel::<(u64, Bytes)>();
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::new(write_half);
        while let Some((id, message)) = answers_rx.recv().await {
            out.write_all(&frame_header(id, message.len())).await?;
            out.write_all(&message).await?;
            if answers_rx.is_empty() {
                out.flush().await?;
            }
        }
        Ok::<_, io::Error>(())
    });
    // The requests in progress end with the connection.
    let mut requests = JoinSet::new();
    let result = loop {
        let (id, message) = match read_frame(&mut input).await {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        let (group, to_member, request) = match decode_request(message) {
            Ok(decoded) => decoded,
            // An authenticated peer that sends garbage is broken: hang up.
            Err(e) => break Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let answers = answers_tx.clone();
        // Called here, in the order the requests arrived: what `handle`
        // does before its future (queueing a forwarded proposal) keeps
        // that order.
        let handled = inbound.handle(group, to_member, request);
        requests.spawn(async move {
            let response = handled.await;
            let mut out = BytesMut::new();
            encode_response(&response, &mut out);
            let _ = answers.send((id, out.freeze()));
        });
    };
    tracing::debug!(peer, "cluster connection from peer closed");
    drop(answers_tx);
    writer.abort();
    result
}
