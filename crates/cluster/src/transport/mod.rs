//! Node-to-node transport: one authenticated TCP connection (TLS when the
//! server has a certificate, [`LinkTls`]) per ordered
//! node pair (the dialer sends requests, the listener answers), carrying
//! the Raft messages of every group ([`crate::wire`]), pipelined and
//! matched to their answers by request id.
//!
//! Frame: `length u32 | request id u64 | message`, the length counting
//! what follows it, at most [`CLUSTER_FRAME_BYTES_MAX`].

mod handshake;
mod network;
mod peer;
mod server;
mod tls;

pub use handshake::ClusterSecret;
pub use network::{PartitionNetwork, PartitionNetworkClient};
pub use peer::{Peer, Peers, Sent};
pub use server::{serve, Inbound};
pub use tls::LinkTls;

use bytes::{Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame a node accepts: a replication request of
/// `REPLICATION_BYTES_MAX` plus one batch that begins below that bound
/// (a request always carries at least one entry), and headers.
pub const CLUSTER_FRAME_BYTES_MAX: usize =
    crate::types::REPLICATION_BYTES_MAX + spool_types::limits::BATCH_BYTES_MAX + (64 << 10);

/// How long a dial and its handshake may take.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Reads one frame: its request id and message bytes.
pub async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<(u64, Bytes)> {
    let length = stream.read_u32().await? as usize;
    if !(8..=CLUSTER_FRAME_BYTES_MAX).contains(&length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cluster frame of {length} bytes (at most {CLUSTER_FRAME_BYTES_MAX})"),
        ));
    }
    let id = stream.read_u64().await?;
    let mut body = BytesMut::zeroed(length - 8);
    stream.read_exact(&mut body).await?;
    Ok((id, body.freeze()))
}

/// The frame header of a message of `message_bytes`.
pub fn frame_header(id: u64, message_bytes: usize) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&((message_bytes + 8) as u32).to_be_bytes());
    header[4..12].copy_from_slice(&id.to_be_bytes());
    header
}
