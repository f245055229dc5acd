//! Connection rules over the binary protocol, against an in-process
//! server: the handshake's refusals and the limits one connection lives
//! within.

use crate::queues::Conn;
use spool_proto::{Request, ResponseBody};
use spool_testkit::TestServer;
use spool_types::limits::CLIENT_ID_LEN_MAX;
use spool_types::ErrorCode;

/// A second Hello is answered `HANDSHAKE_REQUIRED`, as documented, and
/// the connection goes on (it was `INVALID_REQUEST`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_refused_and_the_connection_goes_on() {
    let server = TestServer::start().await;
    let mut c = Conn::open(server.addr).await;
    let err = c.hello("again", None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::HandshakeRequired, "{err:?}");
    assert!(err.message.contains("already"), "{}", err.message);
    assert_eq!(c.call(Request::Ping).await.unwrap(), ResponseBody::Pong);
}

/// A `client_id` over `CLIENT_ID_LEN_MAX` bytes is refused at the
/// handshake with a message naming the limit (a 5,000-byte one was
/// accepted); one of exactly the limit is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_over_its_limit_is_refused_at_the_handshake() {
    let server = TestServer::start().await;
    let mut c = Conn::connect(server.addr).await;
    let err = c.hello(&"x".repeat(5_000), None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest, "{err:?}");
    let limit = CLIENT_ID_LEN_MAX.to_string();
    assert!(
        err.message.contains("client_id") && err.message.contains(&limit),
        "{}",
        err.message
    );

    let mut c = Conn::connect(server.addr).await;
    let id = "x".repeat(CLIENT_ID_LEN_MAX);
    assert!(c.hello(&id, None).await.is_ok());
    assert_eq!(c.call(Request::Ping).await.unwrap(), ResponseBody::Pong);
}
