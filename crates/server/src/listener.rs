//! Accepting connections on both listeners: admission (connection limits,
//! [`crate::admission`]), then the TLS handshake when TLS is configured,
//! each in the connection's own task so a slow client never holds up the
//! accept loop. The HTTP side is served by hyper (with a header-read
//! deadline against slowloris clients) from connections such an accept task
//! hands over; the binary side hands streams to `connection::handle`.

use crate::accept::Acceptor;
use crate::admission::{Admission, Listener as Kind, Permit};
use crate::tls::TLS_HANDSHAKE_TIMEOUT_MS;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

/// Connections accepted and handshaken but not yet taken by the HTTP server.
const HTTP_ACCEPT_QUEUE: usize = 1024;

/// How long an HTTP client may take to send a request's headers, from the
/// first byte (or, on a kept-alive connection, from the end of the previous
/// response). Without it a slowloris client — one header byte every few
/// seconds — would hold its connection slot forever.
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// Runs the TLS handshake with a deadline; `None` (logged, counted) if it
/// fails or times out.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
) -> Option<TlsStream<TcpStream>> {
    let deadline = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    let failure = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no TLS handshake within {TLS_HANDSHAKE_TIMEOUT_MS} ms"),
    };
    // Debug only: a flood of bad clients must not become a flood of logs.
    tracing::debug!(%peer, listener = kind.label(), "TLS handshake failed: {failure}");
    metrics::counter!("spool_tls_handshake_failures_total", "listener" => kind.label())
        .increment(1);
    None
}

/// An accepted HTTP connection, plain or TLS, holding its admission slot.
pub(crate) struct HttpConn {
    io: Either<TcpStream, TlsStream<TcpStream>>,
    _permit: Permit,
}

impl AsyncRead for HttpConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The HTTP listener as axum sees it: connections come ready (admitted,
/// handshaken) from the accept task, which stops when this is dropped.
pub(crate) struct HttpListener {
    ready: mpsc::Receiver<(HttpConn, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl HttpListener {
    pub fn start(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        admission: Arc<Admission>,
    ) -> io::Result<HttpListener> {
        let (tx, ready) = mpsc::channel(HTTP_ACCEPT_QUEUE);
        let accept_task = tokio::spawn(accept_loop(listener, tls, admission, tx));
        Ok(HttpListener { ready, accept_task })
    }
}

impl HttpListener {
    async fn accept(&mut self) -> Option<(HttpConn, SocketAddr)> {
        self.ready.recv().await
    }
}

/// Serves the HTTP API on `listener` until `stop` changes, then lets
/// requests in progress finish (up to `grace`). Each connection is served
/// by hyper's HTTP/1 server with a header-read deadline
/// ([`HTTP_HEADER_READ_TIMEOUT_MS`]); the peer address reaches handlers as
/// axum's `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve_http(
    mut listener: HttpListener,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (conn, peer) = tokio::select! {
            next = listener.accept() => match next {
                Some(c) => c,
                None => break,
            },
            _ = stop.changed() => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                tower_service::Service::call(&mut app, req)
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(conn), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
    // Stop accepting (the accept task ends with the listener), then drain.
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP shutdown grace period over; closing open connections");
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admission: Arc<Admission>,
    ready: mpsc::Sender<(HttpConn, SocketAddr)>,
) {
    // Out of descriptors and similar: backs off, logs once, keeps serving.
    let mut acceptor = Acceptor::new(listener, Kind::Http);
    loop {
        let (stream, peer) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        let permit = match admission.admit(peer.ip(), Kind::Http) {
            Ok(p) => p,
            Err(refusal) => {
                tracing::debug!(%peer, "HTTP connection refused: {}", refusal.message());
                if tls.is_none() {
                    tokio::spawn(refuse_http(stream, refusal.message()));
                }
                continue;
            }
        };
        let ready = ready.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let io = match tls {
                None => Either::Left(stream),
                Some(acceptor) => match handshake(&acceptor, stream, peer, Kind::Http).await {
                    Some(s) => Either::Right(s),
                    None => return,
                },
            };
            let _ = ready
                .send((
                    HttpConn {
                        io,
                        _permit: permit,
                    },
                    peer,
                ))
                .await;
        });
    }
}

/// Tells a plain-HTTP client over a connection limit why, then closes.
async fn refuse_http(mut stream: TcpStream, message: &str) {
    let body = serde_json::json!({
        "type": "https://spool.dev/errors/TOO_MANY_CONNECTIONS",
        "title": "TOO_MANY_CONNECTIONS",
        "status": 503,
        "detail": message,
        "code": "TOO_MANY_CONNECTIONS",
        "code_number": spool_types::ErrorCode::TooManyConnections.as_u16(),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
    linger_close(stream).await;
}

/// Closes after an answer without losing it: shuts the write side, then
/// reads what the client already sent (briefly), because closing with
/// unread input makes the kernel send a reset that can destroy the answer
/// before the client reads it.
pub(crate) async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::AsyncReadExt;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
