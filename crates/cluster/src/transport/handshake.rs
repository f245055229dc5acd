//! Mutual authentication of a node-to-node connection with the cluster
//! secret: each side proves it knows the secret by an HMAC-SHA256 over
//! both sides' fresh nonces and node ids, so a recorded handshake cannot
//! be replayed and a node that does not know the secret learns nothing it
//! could use. The secret itself never crosses the wire.
//!
//! ```text
//! dialer   → listener: MAGIC | version u16 | dialer id u64 | dialer nonce [16]
//! listener → dialer:   MAGIC | version u16 | listener id u64 | listener nonce [16] | mac("listener")
//! dialer   → listener: mac("dialer")
//! mac(role) = HMAC-SHA256(secret, role | dialer nonce | listener nonce | dialer id | listener id)
//! ```

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: &[u8; 4] = b"SPRF";
/// The node-link message layout: 2 added the target member to every
/// request, the generation to heartbeat answers and leadership handovers
/// (nodes of different layouts refuse each other at the handshake).
const VERSION: u16 = 2;
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
const HELLO_BYTES: usize = 4 + 2 + 8 + NONCE_BYTES;

/// The shared secret of a cluster (`--cluster-secret-file`).
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    /// Shortest secret accepted: guessing must be out of reach.
    pub const BYTES_MIN: usize = 16;

    pub fn new(bytes: Vec<u8>) -> Result<ClusterSecret, String> {
        if bytes.len() < Self::BYTES_MIN {
            return Err(format!(
                "the cluster secret has {} bytes; at least {} are needed",
                bytes.len(),
                Self::BYTES_MIN
            ));
        }
        Ok(ClusterSecret(bytes))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

fn refused(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("cluster handshake: {why}"),
    )
}

struct Hello {
    node_id: u64,
    nonce: [u8; NONCE_BYTES],
}

fn encode_hello(node_id: u64, nonce: &[u8; NONCE_BYTES]) -> [u8; HELLO_BYTES] {
    let mut out = [0u8; HELLO_BYTES];
    out[0..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_be_bytes());
    out[6..14].copy_from_slice(&node_id.to_be_bytes());
    out[14..].copy_from_slice(nonce);
    out
}

async fn read_hello<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Hello> {
    let mut buf = [0u8; HELLO_BYTES];
    stream.read_exact(&mut buf).await?;
    if &buf[0..4] != MAGIC {
        return Err(refused("not a Spool cluster peer"));
    }
    let version = u16::from_be_bytes([buf[4], buf[5]]);
    if version != VERSION {
        return Err(refused(&format!(
            "peer speaks version {version}, this node {VERSION}"
        )));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[6..14]);
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&buf[14..]);
    Ok(Hello {
        node_id: u64::from_be_bytes(id),
        nonce,
    })
}

fn mac(secret: &ClusterSecret, role: &[u8], dialer: &Hello, listener: &Hello) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(role);
    mac.update(&dialer.nonce);
    mac.update(&listener.nonce);
    mac.update(&dialer.node_id.to_be_bytes());
    mac.update(&listener.node_id.to_be_bytes());
    mac
}

fn fresh_nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// The dialing side. Returns once both sides are proven; refuses a peer
/// that is not `expected_peer`.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
    own_id: u64,
    expected_peer: u64,
) -> io::Result<()> {
    let own = Hello {
        node_id: own_id,
        nonce: fresh_nonce(),
    };
    stream
        .write_all(&encode_hello(own.node_id, &own.nonce))
        .await?;
    let peer = read_hello(stream).await?;
    if peer.node_id != expected_peer {
        return Err(refused(&format!(
            "expected node {expected_peer} at this address, found node {}",
            peer.node_id
        )));
    }
    let mut their_mac = [0u8; MAC_BYTES];
    stream.read_exact(&mut their_mac).await?;
    mac(secret, b"listener", &own, &peer)
        .verify_slice(&their_mac)
        .map_err(|_| refused("the peer does not know the cluster secret"))?;
    let ours = mac(secret, b"dialer", &own, &peer).finalize().into_bytes();
    stream.write_all(&ours).await?;
    stream.flush().await
}

/// The listening side. Returns the proven peer's node id.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
    own_id: u64,
) -> io::Result<u64> {
    let peer = read_hello(stream).await?;
    let own = Hello {
        node_id: own_id,
        nonce: fresh_nonce(),
    };
    let ours = mac(secret, b"listener", &peer, &own)
        .finalize()
        .into_bytes();
    stream
        .write_all(&encode_hello(own.node_id, &own.nonce))
        .await?;
    stream.write_all(&ours).await?;
    stream.flush().await?;
    let mut their_mac = [0u8; MAC_BYTES];
    stream.read_exact(&mut their_mac).await?;
    mac(secret, b"dialer", &peer, &own)
        .verify_slice(&their_mac)
        .map_err(|_| refused("the peer does not know the cluster secret"))?;
    Ok(peer.node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes().to_vec()).unwrap()
    }

    /// Runs both sides, each owning its end, so a side that fails hangs up
    /// and the other sees it.
    async fn shake(
        dialer_secret: &str,
        listener_secret: &str,
        expected_peer: u64,
    ) -> (io::Result<()>, io::Result<u64>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (dialer_secret, listener_secret) = (secret(dialer_secret), secret(listener_secret));
        let dialer = async move { dial(&mut a, &dialer_secret, 1, expected_peer).await };
        let listener = async move { accept(&mut b, &listener_secret, 2).await };
        tokio::join!(dialer, listener)
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_agree() {
        let (dialed, accepted) = shake(
            "correct horse battery staple",
            "correct horse battery staple",
            2,
        )
        .await;
        dialed.unwrap();
        assert_eq!(accepted.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (dialed, accepted) = shake(
            "correct horse battery staple",
            "incorrect horse battery staple",
            2,
        )
        .await;
        assert_eq!(dialed.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn the_wrong_node_at_an_address_is_refused() {
        let (dialed, accepted) = shake(
            "correct horse battery staple",
            "correct horse battery staple",
            3,
        )
        .await;
        assert!(dialed.unwrap_err().to_string().contains("expected node 3"));
        assert!(accepted.is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterSecret::new(b"short".to_vec()).is_err());
    }
}
