//! Long polls end with their connection: a client that hangs up while a
//! RECEIVE or GET_REQUEST waits is leased nothing and holds nothing.

use crate::raw::{batch, Raw};
use crate::support::*;
use serde_json::Value;
use spool_proto::{self as p, Request, ResponseBody};
use std::time::Duration;

/// How long the server may take to let a hung-up connection go.
const LET_GO: Duration = Duration::from_secs(3);

/// Sends `long_poll` on a new connection, makes sure the server has taken
/// it (a PING sent after it is answered), then hangs up.
fn hang_up_during(server: &ServerProc, long_poll: &Request) {
    let mut waiter = Raw::connect(&server.addr);
    waiter.send(long_poll);
    let ping = waiter.send(&Request::Ping);
    let (cid, pong) = waiter.receive().unwrap();
    assert_eq!((cid, pong.into_result()), (ping, Ok(ResponseBody::Pong)));
    drop(waiter);
}

/// A RECEIVE long poll whose client hung up is not leased the next message:
/// another client receives it at once, as its first delivery. (It was
/// leased to the dead waiter, and with `--max-deliveries 1` went to the
/// dead letters when that lease lapsed.)
#[test]
fn a_hung_up_receive_is_leased_nothing() {
    let (_dir, server) = start_after(&[
        "topic create jobs",
        "subscription create jobs w --kind queue --ack-timeout-ms 60000 --max-deliveries 1",
    ]);
    let receive = Request::Receive(p::Receive {
        topic: "jobs".into(),
        name: "w".into(),
        max: 1,
        wait_ms: 300_000,
    });
    hang_up_during(&server, &receive);
    // Not asserted yet: before the fix the connection stayed for its 10 s
    // grace, and what matters most is where the message goes meanwhile.
    let let_go = server.binary_connections_closed(LET_GO);

    let mut producer = Raw::connect(&server.addr);
    let produced = producer.call(&Request::Produce(p::Produce {
        topic: "jobs".into(),
        routing: p::Routing::Partition(0),
        batch: batch(&[("k".into(), "the one".into())]),
    }));
    assert!(produced.result().is_ok(), "{produced:?}");
    let got = receive_one(&server);
    assert_eq!(got.len(), 1, "the message was leased to the hung-up waiter");
    assert_eq!(got[0]["value"], "the one");
    assert_eq!(got[0]["deliveries"], 1);
    assert!(let_go, "the hung-up receive held its connection");
}

/// A GET_REQUEST wait whose client hung up ends with it: the connection
/// (its task, its admission slot, its wait for the record) is gone at once,
/// not after the 5-minute wait.
#[test]
fn a_hung_up_request_wait_holds_nothing() {
    let (_dir, server) = start_after(&["topic create resize"]);
    let id = ok(&server.cli(&["request", "submit", "resize"], b"{}"))
        .trim()
        .to_owned();
    let get = Request::GetRequest(p::GetRequest {
        id: id.clone(),
        wait_ms: 300_000,
    });
    hang_up_during(&server, &get);
    assert!(
        server.binary_connections_closed(LET_GO),
        "the hung-up request wait held its connection"
    );
    // The record itself is untouched by the abandoned wait.
    let record: Value =
        serde_json::from_str(&ok(&server.cli(&["request", "status", &id], b""))).unwrap();
    assert_eq!(record["status"], "pending");
}

/// The same over HTTP: a receive long poll whose client hung up must not
/// lease the next message to nobody. (Checked, not assumed: hyper drops a
/// request's handler when its HTTP/1 connection closes.)
#[test]
fn a_hung_up_http_receive_is_leased_nothing() {
    use std::io::Write;
    let (_dir, server) = start_after(&[
        "topic create jobs",
        "subscription create jobs w --kind queue --ack-timeout-ms 60000 --max-deliveries 1",
    ]);
    let body = r#"{"max":1,"wait_ms":20000}"#;
    let mut poll = std::net::TcpStream::connect(&server.http).unwrap();
    write!(
        poll,
        "POST /v1/topics/jobs/subscriptions/w/receive HTTP/1.1\r\nhost: x\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(poll);
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&server.cli(&["produce", "jobs"], b"the one\n"));
    let got = receive_one(&server);
    assert_eq!(
        got.len(),
        1,
        "the message was leased to the hung-up HTTP waiter"
    );
    assert_eq!(got[0]["deliveries"], 1);
}

/// What another client's receive of up to one message from `jobs`/`w`
/// gets, as JSON lines.
fn receive_one(server: &ServerProc) -> Vec<Value> {
    let args = [
        "receive",
        "jobs",
        "w",
        "--max",
        "1",
        "--wait-ms",
        "2000",
        "--json",
    ];
    ok(&server.cli(&args, b""))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
