//! The binary protocol's requests as calls of the operations layer: decode
//! the wire types into broker types, call [`Ops`], encode the answer. What
//! an operation is allowed, checks and waits for is decided there.

use super::{error_response, FRAME_BYTES_MAX, LEASED_MESSAGE_BYTES_MAX, MESSAGES_ROOM};
use crate::auth::{Caller, Need};
use crate::callbacks::public_json;
use crate::convert::{self, wire_error};
use crate::ops::{self, FetchPartition, Ops, Submission, SubscriptionKind};
use spool_broker::{BrokerError, StartFrom, TopicConfig};
use spool_proto::{self as p, Request, Response, ResponseBody};
use spool_types::limits::FETCH_BYTES_MAX;
use spool_types::ErrorCode;

/// Leased messages as this protocol sends them.
pub(super) const WIRE_LEASES: ops::Shape<p::LeasedMessage> = ops::Shape {
    convert: convert::leased_message,
    size: p::LeasedMessage::encoded_len,
};

/// The room one Messages or QueueDeliver frame has for leased messages.
pub(super) const FRAME_ROOM: ops::ReceiveRoom = ops::ReceiveRoom {
    bytes: MESSAGES_ROOM,
    message_bytes_max: LEASED_MESSAGE_BYTES_MAX,
};

/// What is checked before a request takes any of the connection's budget:
/// a revoked token is refused whatever it asks, every request but a
/// subscription's flow control is charged to the token's rate limit, and
/// push subscriptions (served by this front end alone) are authorised
/// here. Everything else is authorised by the operation it calls.
pub(super) fn admit(ops: &Ops, caller: &Caller, request: &Request) -> Result<(), BrokerError> {
    if matches!(caller, Caller::Open) {
        return Ok(());
    }
    caller.check(Need::Any)?;
    if !matches!(request, Request::Credit(_) | Request::Unsubscribe(_)) {
        ops.auth.charge(caller)?;
    }
    match request {
        Request::Subscribe(s) => {
            for t in &s.topics {
                caller.check(Need::Consume(t))?;
            }
            Ok(())
        }
        Request::SubscribeQueue(s) => caller.check(Need::Consume(&s.topic)),
        _ => Ok(()),
    }
}

/// The most a fetch answer may hold: what the client asked, within the
/// server's fetch limit and one frame.
pub(super) fn fetch_bytes_max(fetch: &p::Fetch) -> usize {
    (fetch.max_bytes as usize)
        .min(FETCH_BYTES_MAX)
        .min(FRAME_BYTES_MAX - 64 * 1024)
}

/// A Fetch: a long poll over its partitions.
pub(super) async fn fetch(ops: &Ops, caller: &Caller, fetch: p::Fetch) -> Response {
    let max_bytes = fetch_bytes_max(&fetch);
    let partitions = fetch
        .partitions
        .into_iter()
        .map(|fp| {
            Ok(FetchPartition {
                offset: convert::offset_from_wire(fp.offset)?,
                topic: fp.topic,
                partition: fp.partition,
                max_bytes: fp.max_bytes as usize,
            })
        })
        .collect::<Result<Vec<_>, BrokerError>>();
    let fetched = match partitions {
        Ok(partitions) => {
            ops.fetch(caller, partitions, max_bytes, u64::from(fetch.max_wait_ms))
                .await
        }
        Err(e) => Err(e),
    };
    match fetched {
        Ok(f) => Response::ok(ResponseBody::Fetched(p::Fetched {
            partitions: f
                .partitions
                .into_iter()
                .map(|fp| p::FetchedPartition {
                    topic: fp.topic,
                    partition: fp.partition,
                    error: fp.error.map(|e| e.code.into()),
                    start_offset: fp.start_offset.max(0) as u64,
                    end_offset: fp.end_offset.max(0) as u64,
                    batches: fp.batches,
                })
                .collect(),
        })),
        Err(e) => error_response(p::Op::Fetch.as_u16(), wire_error(e)),
    }
}

/// A Receive: a long poll for leases, within one frame.
pub(super) async fn receive(ops: &Ops, caller: &Caller, r: p::Receive) -> Response {
    let leased = ops
        .receive(
            caller,
            &r.topic,
            &r.name,
            r.max as usize,
            u64::from(r.wait_ms),
            FRAME_ROOM,
            &WIRE_LEASES,
        )
        .await;
    match leased {
        Ok(messages) => Response::ok(ResponseBody::Messages(messages)),
        Err(e) => error_response(p::Op::Receive.as_u16(), wire_error(e)),
    }
}

/// A GetRequest: the record, now or once it is final.
pub(super) async fn get_request(ops: &Ops, caller: &Caller, g: p::GetRequest) -> Response {
    match ops.get_request(caller, &g.id, u64::from(g.wait_ms)).await {
        Ok(record) => Response::ok(ResponseBody::RequestRecord {
            json: public_json(&record).to_string(),
        }),
        Err(e) => error_response(p::Op::GetRequest.as_u16(), wire_error(e)),
    }
}

/// Answers a started Ack once it is as durable as the topic promises.
pub(super) async fn ack(
    ops: &Ops,
    started: Result<spool_broker::PendingAck, BrokerError>,
) -> Response {
    let finished = match started {
        Ok(pending) => ops.finish_ack(pending).await,
        Err(e) => Err(e),
    };
    match finished {
        Ok(results) => Response::ok(ResponseBody::Acked(convert::receipt_codes(&results))),
        Err(e) => error_response(p::Op::Ack.as_u16(), wire_error(e)),
    }
}

/// Every other request: one operation each.
pub(super) async fn dispatch(
    ops: &Ops,
    client_id: &str,
    caller: &Caller,
    request: Request,
) -> Result<Response, BrokerError> {
    let body = match request {
        Request::CreateTopic(c) => {
            let (wire_config, replicas) = convert::take_replicas(&c.config)?;
            let config = TopicConfig::default().apply(&convert::patch_from_wire(&wire_config)?);
            ops.create_topic(caller, c.name.clone(), c.partitions, replicas, config)
                .await?;
            ResponseBody::TopicCreated { name: c.name }
        }
        Request::DeleteTopic(d) => {
            ops.delete_topic(caller, d.name).await?;
            ResponseBody::TopicDeleted
        }
        Request::ListTopics(l) => ResponseBody::Topics(
            ops.list_topics(caller, l.pattern.as_deref())?
                .into_iter()
                .map(|(name, partitions)| p::TopicSummary { name, partitions })
                .collect(),
        ),
        Request::DescribeTopic(d) => {
            ResponseBody::TopicDescription(describe(ops.describe_topic(caller, &d.name).await?))
        }
        Request::AlterTopic(a) => {
            let patch = convert::patch_from_wire(&a.config)?;
            ops.alter_topic(caller, a.name, patch).await?;
            ResponseBody::TopicAltered
        }
        r @ (Request::JoinGroup(_)
        | Request::Heartbeat(_)
        | Request::LeaveGroup(_)
        | Request::CommitOffsets(_)
        | Request::FetchOffsets(_)) => group_request(ops, client_id, caller, r).await?,
        r @ (Request::ListGroups
        | Request::DescribeGroup(_)
        | Request::ResetOffsets(_)
        | Request::DeleteGroup(_)) => group_admin(ops, caller, r).await?,
        Request::CreateSubscription(c) => {
            let kind = match c.kind {
                p::SubscriptionKind::Stream => SubscriptionKind::Stream,
                p::SubscriptionKind::Queue => {
                    SubscriptionKind::Queue(convert::subscription_spec(&c))
                }
            };
            ops.create_subscription(caller, c.topic, c.name, kind)
                .await?;
            ResponseBody::SubscriptionCreated
        }
        Request::AlterSubscription(a) => {
            let (topic, name) = (a.topic.clone(), a.name.clone());
            let patch = convert::subscription_patch(a);
            ops.alter_subscription(caller, topic, name, patch).await?;
            ResponseBody::SubscriptionAltered
        }
        Request::DeleteSubscription(d) => {
            ops.delete_subscription(caller, d.topic, d.name).await?;
            ResponseBody::SubscriptionDeleted
        }
        Request::ListSubscriptions(l) => ResponseBody::Subscriptions(
            ops.list_subscriptions(caller, l.topic.as_deref())?
                .into_iter()
                .map(|(spec, load)| convert::subscription_info(spec, load))
                .collect(),
        ),
        Request::Nack(n) => {
            let receipts = n.receipts;
            let results = ops
                .nack(
                    caller,
                    n.topic,
                    n.name,
                    receipts,
                    u64::from(n.delay_ms),
                    n.error,
                )
                .await?;
            ResponseBody::Nacked(convert::receipt_codes(&results))
        }
        Request::ExtendLease(x) => {
            let results = ops
                .extend(caller, x.topic, x.name, x.receipts, u64::from(x.extend_ms))
                .await?;
            ResponseBody::LeasesExtended(convert::receipt_codes(&results))
        }
        Request::Redrive(r) => ResponseBody::Redriven {
            count: ops.redrive(caller, r.topic, r.name).await?,
        },
        Request::SubmitRequest(s) => {
            let submission = Submission {
                queue: s.queue,
                payload: s.payload.to_vec(),
                json: s.json,
                callback_url: s.callback_url,
            };
            let record = ops.submit_request(caller, submission).await?;
            ResponseBody::RequestAccepted { id: record.id }
        }
        Request::CompleteRequest(c) => {
            let result: serde_json::Value = serde_json::from_str(&c.result_json)
                .map_err(|e| BrokerError::invalid(format!("result_json is not JSON: {e}")))?;
            let record = ops.complete_request(caller, c.id, result).await?;
            ResponseBody::RequestCompleted {
                json: public_json(&record).to_string(),
            }
        }
        Request::FailRequest(f) => {
            let record = ops.fail_request(caller, f.id, f.error, f.retry).await?;
            ResponseBody::RequestFailed {
                json: public_json(&record).to_string(),
            }
        }
        Request::CreateToken(c) => {
            let token = ops.create_token(caller, &c.name, &c.produce, &c.consume, c.admin)?;
            ResponseBody::TokenCreated(p::TokenCreated {
                name: c.name,
                token,
            })
        }
        Request::ListTokens => ResponseBody::Tokens(
            ops.list_tokens(caller)?
                .into_iter()
                .map(|t| p::TokenInfo {
                    name: t.name,
                    produce: t.produce,
                    consume: t.consume,
                    admin: t.admin,
                    created_ms: t.created_ms,
                })
                .collect(),
        ),
        Request::RevokeToken(r) => {
            ops.revoke_token(caller, &r.name)?;
            ResponseBody::TokenRevoked
        }
        Request::InitProducerId => ResponseBody::ProducerId {
            producer_id: ops.init_producer_id().await?,
        },
        Request::ClusterStatus => match ops.cluster_view() {
            Some(view) => ResponseBody::ClusterStatus(convert::cluster_to_wire(view)),
            None => {
                return Err(BrokerError::new(
                    ErrorCode::InvalidRequest,
                    "this server is not a cluster node (it was started without --peers)",
                ))
            }
        },
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

fn describe(d: spool_broker::TopicDescription) -> p::TopicDescription {
    p::TopicDescription {
        name: d.name,
        config: convert::config_to_wire(&d.config),
        partitions: d
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
    }
}

/// The consumer-group administration requests of [`dispatch`].
async fn group_admin(
    ops: &Ops,
    caller: &Caller,
    request: Request,
) -> Result<ResponseBody, BrokerError> {
    Ok(match request {
        Request::ListGroups => ResponseBody::Groups(
            ops.list_groups(caller)?
                .into_iter()
                .map(convert::group_description)
                .collect(),
        ),
        Request::DescribeGroup(d) => ResponseBody::GroupDescription(convert::group_description(
            ops.describe_group(caller, &d.group)?,
        )),
        Request::ResetOffsets(r) => {
            let to = convert::offset_reset(r.to)?;
            let topic = r.topic.clone();
            let offsets = ops
                .reset_group_offsets(caller, r.group, r.topic, to)
                .await?;
            ResponseBody::OffsetsReset(
                offsets
                    .into_iter()
                    .map(|(partition, offset)| p::PartitionOffset {
                        topic: topic.clone(),
                        partition,
                        offset: offset.max(0) as u64,
                    })
                    .collect(),
            )
        }
        Request::DeleteGroup(d) => {
            ops.delete_group(caller, d.group).await?;
            ResponseBody::GroupDeleted
        }
        other => {
            return Err(BrokerError::new(
                ErrorCode::UnknownRequestType,
                format!("{:?} is not a group administration request", other.op()),
            ));
        }
    })
}

/// The consumer-group requests of [`dispatch`].
async fn group_request(
    ops: &Ops,
    client_id: &str,
    caller: &Caller,
    request: Request,
) -> Result<ResponseBody, BrokerError> {
    Ok(match request {
        Request::JoinGroup(j) => {
            let start = match j.start {
                p::GroupStart::Earliest => StartFrom::Earliest,
                p::GroupStart::Latest => StartFrom::Latest,
            };
            let a = ops
                .join_group(
                    caller,
                    j.group,
                    j.member_id,
                    client_id.to_owned(),
                    j.topics,
                    u64::from(j.session_timeout_ms),
                    start,
                )
                .await?;
            ResponseBody::Joined(p::Joined {
                member_id: a.member_id.clone(),
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::Heartbeat(h) => {
            let a = ops
                .heartbeat(caller, h.group, h.member_id, h.generation)
                .await?;
            ResponseBody::HeartbeatOk(p::HeartbeatOk {
                generation: a.generation,
                assignment: convert::assignment(a),
            })
        }
        Request::LeaveGroup(l) => {
            ops.leave_group(caller, l.group, l.member_id).await?;
            ResponseBody::LeftGroup
        }
        Request::CommitOffsets(c) => {
            let offsets = c
                .offsets
                .into_iter()
                .map(|po| {
                    Ok((
                        po.topic,
                        po.partition,
                        convert::offset_from_wire(po.offset)?,
                    ))
                })
                .collect::<Result<Vec<_>, BrokerError>>()?;
            ops.commit(caller, c.group, c.member_id, offsets).await?;
            ResponseBody::OffsetsCommitted
        }
        Request::FetchOffsets(f) => {
            let tps: Vec<(String, u32)> = f
                .partitions
                .into_iter()
                .map(|tp| (tp.topic, tp.partition))
                .collect();
            let committed = ops.committed(caller, &f.group, &tps)?;
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
        other => {
            return Err(BrokerError::new(
                ErrorCode::UnknownRequestType,
                format!("{:?} is not a consumer-group request", other.op()),
            ));
        }
    })
}
