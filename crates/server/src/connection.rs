//! One client connection: handshake, then pipelined requests.
//!
//! Reading stops while the connection is at its in-flight limits (requests or
//! bytes), so a client that floods requests — or never reads its responses —
//! holds at most those limits in server memory. Bad input is answered with
//! an error frame; input that leaves the stream out of sync (a bad length or
//! frame kind) closes just this connection.

use crate::convert::{self, wire_error};
use crate::notify::wait_any;
use crate::{now_ms, Shared};
use bytes::{Bytes, BytesMut};
use spool_broker::push::{PushCursor, PushStart};
use spool_broker::{Broker, BrokerError, StartFrom};
use spool_proto::{self as p, Request, Response, ResponseBody, WireError};
use spool_types::limits::{
    CONNECTION_IN_FLIGHT_BYTES_MAX, CONNECTION_IN_FLIGHT_MAX, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX,
    FRAME_BYTES_MAX,
};
use spool_types::ErrorCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

/// Frames queued for the writer before producers of responses wait.
const OUTBOX_FRAMES: usize = 64;
/// Units of the in-flight byte budget (so a u32 permit count covers it).
const BYTE_PERMIT_UNIT: usize = 1024;
/// A connection that sends nothing at all for this long before its handshake is closed.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Most bytes written to the socket in one call when batching queued frames.
const WRITE_COALESCE_BYTES: usize = 256 * 1024;
/// Longest a push subscription sleeps without re-checking its partitions.
const PUSH_RECHECK_MS: u64 = 1_000;

/// A frame for the writer, with the budget it releases once written.
struct Outgoing {
    bytes: Bytes,
    _permits: Vec<OwnedSemaphorePermit>,
}

type Outbox = mpsc::Sender<Outgoing>;

struct Subscription {
    cursor: Arc<Mutex<PushCursor>>,
    credit: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Answers a connection over the limit with one error frame and closes it.
pub async fn refuse(mut stream: TcpStream) {
    let mut buf = BytesMut::new();
    let err = WireError::new(
        ErrorCode::TooManyConnections,
        "the server is at its connection limit; try again later",
    );
    if Response::error(0, err).encode(0, &mut buf).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
    }
}

fn encode_response(correlation_id: u32, response: Response) -> Bytes {
    let mut buf = BytesMut::new();
    if let Err(e) = response.encode(correlation_id, &mut buf) {
        // Only an oversized body can fail to encode; say so instead.
        buf.clear();
        let err = WireError::new(
            ErrorCode::Internal,
            format!("response could not be encoded: {e}"),
        );
        let _ = Response::error(response.op(), err).encode(correlation_id, &mut buf);
    }
    buf.freeze()
}

fn error_response(op: u16, e: impl Into<WireError>) -> Response {
    Response::error(op, e.into())
}

pub async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.recv().await {
            out.clear();
            out.extend_from_slice(&first.bytes);
            let mut done = vec![first];
            while out.len() < WRITE_COALESCE_BYTES {
                match rx.try_recv() {
                    Ok(next) => {
                        out.extend_from_slice(&next.bytes);
                        done.push(next);
                    }
                    Err(_) => break,
                }
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
            drop(done); // releases the in-flight budget of what was written
        }
        let _ = wr.shutdown().await;
    });

    let requests = Arc::new(Semaphore::new(CONNECTION_IN_FLIGHT_MAX));
    let bytes_budget = Arc::new(Semaphore::new(
        CONNECTION_IN_FLIGHT_BYTES_MAX / BYTE_PERMIT_UNIT,
    ));
    let mut subs: HashMap<u32, Subscription> = HashMap::new();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut shutdown = shared.shutdown.clone();
    let mut greeted = false;
    let handshake_deadline =
        tokio::time::Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);

    'conn: loop {
        // Take every complete frame already buffered.
        loop {
            let frame = match p::decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, "closing connection: {e}");
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(0, error_response(0, e)),
                            _permits: vec![],
                        })
                        .await;
                    break 'conn;
                }
            };
            if frame.kind != p::FrameKind::Request {
                tracing::info!(%peer, "closing connection: a client sent a non-request frame");
                let err = WireError::new(
                    ErrorCode::MalformedFrame,
                    "clients may only send request frames",
                );
                let _ = tx
                    .send(Outgoing {
                        bytes: encode_response(frame.correlation_id, error_response(frame.op, err)),
                        _permits: vec![],
                    })
                    .await;
                break 'conn;
            }
            let cid = frame.correlation_id;
            let request = match Request::decode(frame.op, frame.body.clone()) {
                Ok(r) => r,
                Err(e) => {
                    // The frame boundary is intact: answer and carry on.
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, error_response(frame.op, e)),
                            _permits: vec![],
                        })
                        .await;
                    if !greeted {
                        break 'conn;
                    }
                    continue;
                }
            };
            if !greeted {
                let Request::Hello(hello) = request else {
                    let err = WireError::new(
                        ErrorCode::HandshakeRequired,
                        "the first request on a connection must be Hello",
                    );
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, error_response(frame.op, err)),
                            _permits: vec![],
                        })
                        .await;
                    break 'conn;
                };
                let response = match hello.negotiate(p::PROTOCOL_VERSION, p::PROTOCOL_VERSION) {
                    Some(version) => {
                        greeted = true;
                        tracing::debug!(%peer, client = %hello.client_id, "handshake");
                        Response::ok(ResponseBody::HelloOk(p::HelloOk {
                            version,
                            server_id: shared.server_id.clone(),
                            max_frame_bytes: FRAME_BYTES_MAX as u32,
                        }))
                    }
                    None => error_response(
                        frame.op,
                        WireError::new(
                            ErrorCode::UnsupportedVersion,
                            format!(
                                "client speaks versions {}..={}, server speaks {}",
                                hello.min_version,
                                hello.max_version,
                                p::PROTOCOL_VERSION
                            ),
                        ),
                    ),
                };
                let _ = tx
                    .send(Outgoing {
                        bytes: encode_response(cid, response),
                        _permits: vec![],
                    })
                    .await;
                if !greeted {
                    break 'conn;
                }
                continue;
            }
            // Back pressure: wait for budget before taking more work.
            let units = (frame.body.len() + 64).div_ceil(BYTE_PERMIT_UNIT) as u32;
            let Ok(count_permit) = Arc::clone(&requests).acquire_owned().await else {
                break 'conn;
            };
            let Ok(bytes_permit) = Arc::clone(&bytes_budget).acquire_many_owned(units).await else {
                break 'conn;
            };
            let permits = vec![count_permit, bytes_permit];
            match request {
                Request::Hello(_) => {
                    let err =
                        WireError::new(ErrorCode::InvalidRequest, "the handshake was already done");
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, error_response(frame.op, err)),
                            _permits: permits,
                        })
                        .await;
                }
                Request::Produce(produce) => {
                    // Written in arrival order (so pipelined produces keep
                    // their order); the fsync wait happens off this loop.
                    let broker = Arc::clone(&shared.broker);
                    let mut batch = produce.batch.to_vec();
                    let routing = convert::routing(&produce.routing);
                    let pending = tokio::task::block_in_place(|| {
                        broker.start_produce(&produce.topic, &routing, &mut batch, now_ms())
                    });
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let result = match pending {
                            Ok(pending) => {
                                tokio::task::spawn_blocking(move || broker.finish_produce(pending))
                                    .await
                                    .unwrap_or_else(|e| {
                                        Err(BrokerError::new(ErrorCode::Internal, e.to_string()))
                                    })
                            }
                            Err(e) => Err(e),
                        };
                        let response = match result {
                            Ok(r) => Response::ok(ResponseBody::Produced(p::Produced {
                                partition: r.partition,
                                base_offset: r.base_offset as u64,
                                last_offset: r.last_offset as u64,
                            })),
                            Err(e) => error_response(p::Op::Produce.as_u16(), wire_error(e)),
                        };
                        let _ = tx
                            .send(Outgoing {
                                bytes: encode_response(cid, response),
                                _permits: permits,
                            })
                            .await;
                    });
                }
                Request::Fetch(fetch) => {
                    let max_bytes = (fetch.max_bytes as usize)
                        .min(FETCH_BYTES_MAX)
                        .min(FRAME_BYTES_MAX - 64 * 1024);
                    // The response is held in memory until written: budget for it.
                    let extra = (max_bytes / BYTE_PERMIT_UNIT) as u32;
                    let Ok(resp_permit) = Arc::clone(&bytes_budget).acquire_many_owned(extra).await
                    else {
                        break 'conn;
                    };
                    let mut permits = permits;
                    permits.push(resp_permit);
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    tokio::spawn(async move {
                        let response = fetch_long_poll(&shared, fetch, max_bytes).await;
                        let _ = tx
                            .send(Outgoing {
                                bytes: encode_response(cid, response),
                                _permits: permits,
                            })
                            .await;
                    });
                }
                Request::Subscribe(sub) => {
                    let response = subscribe(&shared, &tx, &mut subs, sub);
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, response),
                            _permits: permits,
                        })
                        .await;
                }
                Request::Credit(credit) => {
                    let response = match subs.get(&credit.subscription_id) {
                        Some(s) => {
                            s.cursor
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .grant(credit.messages, credit.bytes);
                            s.credit.notify_one();
                            Response::ok(ResponseBody::CreditGranted)
                        }
                        None => no_subscription(frame.op, credit.subscription_id),
                    };
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, response),
                            _permits: permits,
                        })
                        .await;
                }
                Request::Unsubscribe(u) => {
                    let response = match subs.remove(&u.subscription_id) {
                        Some(s) => {
                            s.task.abort();
                            Response::ok(ResponseBody::Unsubscribed)
                        }
                        None => no_subscription(frame.op, u.subscription_id),
                    };
                    let _ = tx
                        .send(Outgoing {
                            bytes: encode_response(cid, response),
                            _permits: permits,
                        })
                        .await;
                }
                other => {
                    let (broker, tx) = (Arc::clone(&shared.broker), tx.clone());
                    let op = frame.op;
                    tokio::spawn(async move {
                        let response =
                            tokio::task::spawn_blocking(move || dispatch(&broker, other))
                                .await
                                .unwrap_or_else(|e| {
                                    Err(BrokerError::new(ErrorCode::Internal, e.to_string()))
                                });
                        let response =
                            response.unwrap_or_else(|e| error_response(op, wire_error(e)));
                        let _ = tx
                            .send(Outgoing {
                                bytes: encode_response(cid, response),
                                _permits: permits,
                            })
                            .await;
                    });
                }
            }
        }
        // Refuse an oversized frame as soon as its length prefix arrives.
        if let Err(e) = p::peek_frame_size(&buf) {
            tracing::info!(%peer, "closing connection: {e}");
            let _ = tx
                .send(Outgoing {
                    bytes: encode_response(0, error_response(0, e)),
                    _permits: vec![],
                })
                .await;
            break 'conn;
        }
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shutdown.changed() => break 'conn,
            _ = tokio::time::sleep_until(handshake_deadline), if !greeted => {
                tracing::info!(%peer, "closing connection: no handshake within {HANDSHAKE_TIMEOUT_MS} ms");
                break 'conn;
            }
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, "read failed: {e}");
                break;
            }
        }
    }
    for (_, s) in subs.drain() {
        s.task.abort();
    }
    // Let in-flight requests finish and their answers go out.
    let _ = tokio::time::timeout(
        Duration::from_millis(crate::SHUTDOWN_GRACE_MS),
        requests.acquire_many(CONNECTION_IN_FLIGHT_MAX as u32),
    )
    .await;
    drop(tx);
    let _ = writer.await;
}

fn no_subscription(op: u16, id: u32) -> Response {
    error_response(
        op,
        WireError::new(
            ErrorCode::UnknownSubscription,
            format!("no subscription {id} on this connection"),
        ),
    )
}

fn subscribe(
    shared: &Arc<Shared>,
    tx: &Outbox,
    subs: &mut HashMap<u32, Subscription>,
    sub: p::Subscribe,
) -> Response {
    let op = p::Op::Subscribe.as_u16();
    if subs.contains_key(&sub.subscription_id) {
        return error_response(
            op,
            WireError::new(
                ErrorCode::InvalidRequest,
                format!("subscription id {} is already in use", sub.subscription_id),
            ),
        );
    }
    if sub.group.is_some() {
        return error_response(
            op,
            WireError::new(
                ErrorCode::InvalidRequest,
                "push subscriptions with a group are not supported yet; use a group consumer",
            ),
        );
    }
    let start = match sub.start {
        p::SubscribeStart::Earliest => PushStart::Earliest,
        p::SubscribeStart::Latest => PushStart::Latest,
        p::SubscribeStart::Offset(o) => PushStart::Offset(o.min(i64::MAX as u64) as i64),
    };
    let cursor = Broker::parse_patterns(&sub.topics).and_then(|patterns| {
        PushCursor::new(
            &shared.broker,
            patterns,
            start,
            sub.credit_messages,
            sub.credit_bytes,
        )
    });
    let cursor = match cursor {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => return error_response(op, wire_error(e)),
    };
    let credit = Arc::new(Notify::new());
    let task = tokio::spawn(push_loop(
        Arc::clone(shared),
        tx.clone(),
        sub.subscription_id,
        Arc::clone(&cursor),
        Arc::clone(&credit),
    ));
    subs.insert(
        sub.subscription_id,
        Subscription {
            cursor,
            credit,
            task,
        },
    );
    Response::ok(ResponseBody::Subscribed {
        subscription_id: sub.subscription_id,
    })
}

/// Sends batches to a push subscriber as they appear, within its credit.
async fn push_loop(
    shared: Arc<Shared>,
    tx: Outbox,
    id: u32,
    cursor: Arc<Mutex<PushCursor>>,
    credit: Arc<Notify>,
) {
    loop {
        let notifies: Vec<Arc<Notify>> = {
            let c = cursor.lock().unwrap_or_else(|p| p.into_inner());
            c.partitions()
                .map(|(t, p)| shared.notifier.partition(t, *p))
                .collect()
        };
        let mut next = None;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(PUSH_RECHECK_MS);
        let mut all = notifies;
        all.push(Arc::clone(&credit));
        wait_any(&all, Some(&shared.notifier.topics), deadline, || {
            let result = tokio::task::block_in_place(|| {
                cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next(&shared.broker)
            });
            let ready = !matches!(result, Ok(None));
            next = Some(result);
            ready
        })
        .await;
        match next {
            Some(Ok(Some(d))) => {
                let push = p::Push::Deliver(p::Deliver {
                    topic: d.topic,
                    partition: d.partition,
                    batches: d.batches,
                });
                let mut buf = BytesMut::new();
                if push.encode(id, &mut buf).is_err() {
                    continue;
                }
                if tx
                    .send(Outgoing {
                        bytes: buf.freeze(),
                        _permits: vec![],
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(e)) => {
                let mut buf = BytesMut::new();
                if p::Push::SubscriptionClosed(wire_error(e))
                    .encode(id, &mut buf)
                    .is_ok()
                {
                    let _ = tx
                        .send(Outgoing {
                            bytes: buf.freeze(),
                            _permits: vec![],
                        })
                        .await;
                }
                return;
            }
            _ => {}
        }
    }
}

/// Reads every asked partition; if nothing is there, waits for appends up to
/// `max_wait_ms` and reads again.
async fn fetch_long_poll(shared: &Shared, fetch: p::Fetch, max_bytes: usize) -> Response {
    let wait_ms = (fetch.max_wait_ms as u64).min(FETCH_WAIT_MS_MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let notifies: Vec<Arc<Notify>> = fetch
        .partitions
        .iter()
        .map(|fp| shared.notifier.partition(&fp.topic, fp.partition))
        .collect();
    loop {
        let mut result = None;
        let mut shutdown = shared.shutdown.clone();
        let stopping = *shutdown.borrow_and_update();
        let waited = async {
            wait_any(&notifies, None, deadline, || {
                let r = tokio::task::block_in_place(|| {
                    read_partitions(&shared.broker, &fetch, max_bytes)
                });
                let has_data = r
                    .partitions
                    .iter()
                    .any(|p| !p.batches.is_empty() || p.error.is_some());
                result = Some(r);
                has_data || stopping || tokio::time::Instant::now() >= deadline
            })
            .await
        };
        tokio::select! {
            _ = waited => {}
            _ = shutdown.changed() => {}
        }
        let Some(r) = result else { continue };
        let done = r
            .partitions
            .iter()
            .any(|p| !p.batches.is_empty() || p.error.is_some())
            || tokio::time::Instant::now() >= deadline
            || *shared.shutdown.borrow();
        if done {
            return Response::ok(ResponseBody::Fetched(r));
        }
    }
}

fn read_partitions(broker: &Broker, fetch: &p::Fetch, max_bytes: usize) -> p::Fetched {
    let mut budget = max_bytes;
    let mut out = Vec::with_capacity(fetch.partitions.len());
    for fp in &fetch.partitions {
        let mut entry = p::FetchedPartition {
            topic: fp.topic.clone(),
            partition: fp.partition,
            error: None,
            start_offset: 0,
            end_offset: 0,
            batches: Bytes::new(),
        };
        if let Ok((start, end)) = broker.offsets(&fp.topic, fp.partition) {
            entry.start_offset = start.max(0) as u64;
            entry.end_offset = end.max(0) as u64;
        }
        let want = (fp.max_bytes as usize).min(budget);
        let read = convert::offset_from_wire(fp.offset).and_then(|o| {
            if want == 0 {
                Ok(None)
            } else {
                broker.fetch(&fp.topic, fp.partition, o, want).map(Some)
            }
        });
        match read {
            Ok(Some(r)) => {
                // A first batch may exceed `want`; never exceed the whole budget.
                if r.bytes.len() <= budget {
                    budget -= r.bytes.len();
                    entry.batches = r.bytes;
                }
                entry.start_offset = r.start_offset.max(0) as u64;
                entry.end_offset = r.end_offset.max(0) as u64;
            }
            Ok(None) => {}
            Err(e) => entry.error = Some(e.code.into()),
        }
        out.push(entry);
    }
    p::Fetched { partitions: out }
}

/// The requests that are plain broker calls (run on a blocking thread).
fn dispatch(broker: &Broker, request: Request) -> Result<Response, BrokerError> {
    let now = now_ms();
    let body = match request {
        Request::CreateTopic(c) => {
            let config =
                spool_broker::TopicConfig::default().apply(&convert::patch_from_wire(&c.config)?);
            broker.create_topic(&c.name, c.partitions, config, now)?;
            ResponseBody::TopicCreated { name: c.name }
        }
        Request::DeleteTopic(d) => {
            broker.delete_topic(&d.name, now)?;
            ResponseBody::TopicDeleted
        }
        Request::ListTopics(l) => ResponseBody::Topics(
            broker
                .list_topics(l.pattern.as_deref())?
                .into_iter()
                .map(|(name, partitions)| p::TopicSummary { name, partitions })
                .collect(),
        ),
        Request::DescribeTopic(d) => {
            let desc = broker.describe_topic(&d.name)?;
            ResponseBody::TopicDescription(p::TopicDescription {
                name: desc.name,
                config: convert::config_to_wire(&desc.config),
                partitions: desc
                    .partitions
                    .into_iter()
                    .map(|pi| p::PartitionInfo {
                        partition: pi.partition,
                        start_offset: pi.start_offset.max(0) as u64,
                        end_offset: pi.end_offset.max(0) as u64,
                        messages: pi.messages,
                        bytes: pi.bytes,
                    })
                    .collect(),
            })
        }
        Request::AlterTopic(a) => {
            broker.alter_topic(&a.name, &convert::patch_from_wire(&a.config)?, now)?;
            ResponseBody::TopicAltered
        }
        Request::JoinGroup(j) => {
            let start = match j.start {
                p::GroupStart::Earliest => StartFrom::Earliest,
                p::GroupStart::Latest => StartFrom::Latest,
            };
            let a = broker.join_group(
                &j.group,
                j.member_id.as_deref(),
                "client",
                &j.topics,
                j.session_timeout_ms as u64,
                start,
                now,
            )?;
            ResponseBody::Joined(p::Joined {
                member_id: a.member_id.clone(),
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::Heartbeat(h) => {
            let a = broker.heartbeat(&h.group, &h.member_id, h.generation, now)?;
            ResponseBody::HeartbeatOk(p::HeartbeatOk {
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::LeaveGroup(l) => {
            broker.leave_group(&l.group, &l.member_id)?;
            ResponseBody::LeftGroup
        }
        Request::CommitOffsets(c) => {
            let offsets = c
                .offsets
                .iter()
                .map(|po| {
                    Ok((
                        po.topic.clone(),
                        po.partition,
                        convert::offset_from_wire(po.offset)?,
                    ))
                })
                .collect::<Result<Vec<_>, BrokerError>>()?;
            broker.commit(&c.group, &c.member_id, &offsets, now)?;
            ResponseBody::OffsetsCommitted
        }
        Request::FetchOffsets(f) => {
            let tps: Vec<(String, u32)> = f
                .partitions
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect();
            let committed = broker.committed(&f.group, &tps);
            ResponseBody::Offsets(
                tps.into_iter()
                    .zip(committed)
                    .map(|((topic, partition), o)| p::CommittedOffset {
                        topic,
                        partition,
                        offset: o.map(|o| o.max(0) as u64),
                    })
                    .collect(),
            )
        }
        Request::Ping => ResponseBody::Pong,
        other => {
            return Err(BrokerError::new(
                ErrorCode::UnknownRequestType,
                format!("{:?} is not handled here", other.op()),
            ));
        }
    };
    Ok(Response::ok(body))
}
