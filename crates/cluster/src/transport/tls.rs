//! TLS on the node-to-node links, used when the server has a certificate
//! (`--tls-cert-file`): every link is encrypted, and the dialer checks the
//! listener's certificate against the cluster's CA and the name or address
//! it dialed. The cluster secret's handshake still runs inside TLS: the
//! certificate says which host answered, the secret that it is a node of
//! this cluster (a certificate from the same CA for another service does
//! not let that service join).

use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS stream of either side.
pub trait Link: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Link for T {}

/// A node link's byte stream: plain TCP, or TLS over it.
pub enum LinkStream {
    Plain(TcpStream),
    Tls(Box<dyn Link>),
}

pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;
pub type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;

impl LinkStream {
    /// Its two halves, for a reader and a writer task. Plain TCP splits
    /// into owned halves with no lock between them; TLS (one session
    /// state for both directions) through tokio's split.
    pub fn split(self) -> (LinkReader, LinkWriter) {
        match self {
            LinkStream::Plain(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            LinkStream::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Box::new(write))
            }
        }
    }
}

/// Both ends of TLS on the links: the dialer's configuration (the CA it
/// trusts) and the listener's (this node's certificate and key).
#[derive(Clone)]
pub struct LinkTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl LinkTls {
    pub fn new(dialer: Arc<ClientConfig>, listener: Arc<ServerConfig>) -> LinkTls {
        LinkTls {
            connector: TlsConnector::from(dialer),
            acceptor: TlsAcceptor::from(listener),
        }
    }
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls")
    }
}

/// The name the listener's certificate must hold: the host part of the
/// address dialed (`host:port`, `[v6]:port`).
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: {host:?} is not a name a certificate can hold: {e}"),
        )
    })
}

/// The dialer's stream to `addr`: TLS when configured.
pub async fn dial_link(
    tls: Option<&LinkTls>,
    stream: TcpStream,
    addr: &str,
) -> io::Result<LinkStream> {
    match tls {
        None => Ok(LinkStream::Plain(stream)),
        Some(tls) => {
            let name = server_name(addr)?;
            let stream =
                tls.connector.connect(name, stream).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("TLS to the node at {addr}: {e}"))
                })?;
            Ok(LinkStream::Tls(Box::new(stream)))
        }
    }
}

/// The listener's stream: TLS when configured.
pub async fn accept_link(tls: Option<&LinkTls>, stream: TcpStream) -> io::Result<LinkStream> {
    match tls {
        None => Ok(LinkStream::Plain(stream)),
        Some(tls) => Ok(LinkStream::Tls(Box::new(
            tls.acceptor.accept(stream).await?,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_name_is_the_dialed_host() {
        for (addr, name) in [
            ("127.0.0.1:7431", "127.0.0.1"),
            ("[::1]:7431", "::1"),
            ("node-2.example:7431", "node-2.example"),
        ] {
            assert_eq!(
                server_name(addr).unwrap(),
                ServerName::try_from(name.to_owned()).unwrap(),
                "{addr}"
            );
        }
        assert!(server_name("not a host:1").is_err());
    }
}
