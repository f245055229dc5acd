//! The group consumer's fetch sent ahead, seen from the wire: a relay
//! between the member and the server counts the member's requests.

use crate::support::{default_producer, start_with_topic, TestServer};
use spool_client::{Client, ClientOptions, ConsumedRecord, GroupConsumer, GroupOptions, Message};
use spool_proto::{decode_frame, Op};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn text(r: &ConsumedRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

/// The ops of the requests a client has sent so far.
type SentOps = Arc<Mutex<Vec<u16>>>;

/// A client whose requests to `server` pass through a relay that records
/// each request's op.
async fn client_with_counted_requests(server: &TestServer) -> (Client, SentOps) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let (near, far) = tokio::io::duplex(1 << 20);
    let (mut far_rd, mut far_wr) = tokio::io::split(far);
    let sent: SentOps = Arc::default();
    let seen = Arc::clone(&sent);
    tokio::spawn(async move {
        let mut pending = bytes::BytesMut::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match far_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Ok(Some(frame)) = decode_frame(&mut pending) {
                seen.lock().expect("ops").push(frame.op);
            }
            if up_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move { tokio::io::copy(&mut up_rd, &mut far_wr).await });
    let client = Client::connect_stream(near, server.addr, ClientOptions::default())
        .await
        .expect("handshake through the relay");
    (client, sent)
}

fn fetches(sent: &SentOps) -> usize {
    let ops = sent.lock().expect("ops");
    ops.iter().filter(|op| **op == Op::Fetch.as_u16()).count()
}

async fn committed(admin: &Client, group: &str) -> Option<u64> {
    let partitions = vec![spool_proto::TopicPartition {
        topic: "t".to_owned(),
        partition: 0,
    }];
    let offsets = admin
        .fetch_offsets(group, partitions)
        .await
        .expect("offsets");
    offsets[0].offset
}

/// A member that got records has its next fetch on the way (a long poll)
/// while the application commits, so the next message needs no new round
/// trip; that fetch moves no position: a commit made while its answer is
/// already in stores only what `poll` returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_fetches_ahead_and_commits_only_what_it_returned() {
    let (server, admin) = start_with_topic("t", 1).await;
    let producer = default_producer(&admin);
    let send = |value: &'static str| {
        let producer = producer.clone();
        async move {
            let delivery = producer.send("t", Message::new(value)).await.expect("send");
            delivery.await.expect("delivered");
        }
    };
    send("a").await;
    let (client, sent) = client_with_counted_requests(&server).await;
    let mut member = GroupConsumer::join(client, "g", vec!["t".into()], GroupOptions::default())
        .await
        .expect("join");
    let first = member.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(first.iter().map(text).collect::<Vec<_>>(), ["a"]);
    // Let the relay pass on what the member has sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fetches(&sent), 2, "the poll's fetch and the one sent ahead");

    // "b" reaches the member through the fetch already waiting ...
    send("b").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... but the commit stores what was returned: "a" only.
    member.commit().await.expect("commit");
    assert_eq!(committed(&admin, "g").await, Some(1));
    let second = member.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(second.iter().map(text).collect::<Vec<_>>(), ["b"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fetches(&sent), 3, "b came with the fetch sent ahead");
    member.commit().await.expect("commit");
    assert_eq!(committed(&admin, "g").await, Some(2));

    // A seek drops the fetch sent ahead: the next poll starts from it.
    assert!(member.seek("t", 0, 0));
    let again = member.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(again.iter().map(text).collect::<Vec<_>>(), ["a", "b"]);
    member.close().await.expect("close");
    server.shutdown().await;
}
