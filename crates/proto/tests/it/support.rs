//! Shared by the integration tests: proptest strategies for every message
//! and a fixed set of sample frames (also the fuzz seed corpus).

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use spool_proto::*;
use spool_types::ErrorCode;

pub fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including multi-byte characters, so UTF-8 lengths differ
    // from character counts.
    ".{0,12}"
}

pub fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

pub fn topic_config() -> impl Strategy<Value = TopicConfig> {
    let durability = prop_oneof![
        Just(Durability::Always),
        any::<u32>().prop_map(|interval_ms| Durability::Interval { interval_ms }),
        Just(Durability::Never),
    ];
    let extension = (any::<u16>(), bytes()).prop_map(|(tag, value)| ConfigExtension { tag, value });
    (
        (
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(prop_oneof![Just(OnFull::Reject), Just(OnFull::DropOldest)]),
            option::of(prop_oneof![
                Just(Retention::Limits),
                Just(Retention::WorkQueue)
            ]),
        ),
        (
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(durability),
            option::of(any::<u64>()),
            vec(extension, 0..3),
        ),
    )
        .prop_map(
            |(
                (max_messages, max_bytes, on_full, retention),
                (retention_bytes, retention_ms, durability, segment_bytes, extensions),
            )| TopicConfig {
                max_messages,
                max_bytes,
                on_full,
                retention,
                retention_bytes,
                retention_ms,
                durability,
                segment_bytes,
                extensions,
            },
        )
}

pub fn partition_offset() -> impl Strategy<Value = PartitionOffset> {
    (text(), any::<u32>(), any::<u64>()).prop_map(|(topic, partition, offset)| PartitionOffset {
        topic,
        partition,
        offset,
    })
}

pub fn wire_code() -> impl Strategy<Value = WireCode> {
    prop_oneof![
        proptest::sample::select(ErrorCode::ALL).prop_map(WireCode::from),
        // Codes a newer server might send.
        (1u16..).prop_map(|raw| WireCode::new(raw).expect("non-zero")),
    ]
}

pub fn wire_error() -> impl Strategy<Value = WireError> {
    (wire_code(), text(), option::of(1u32..)).prop_map(|(code, message, retry_after_ms)| {
        WireError {
            code,
            message,
            retry_after_ms,
        }
    })
}

pub fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
    option::of(bytes())
}

pub fn backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        any::<u64>().prop_map(|delay_ms| Backoff::Fixed { delay_ms }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(initial_ms, max_ms)| Backoff::Exponential { initial_ms, max_ms }),
    ]
}

pub fn delivery_mode() -> impl Strategy<Value = DeliveryMode> {
    prop_oneof![
        Just(DeliveryMode::AtLeastOnce),
        Just(DeliveryMode::AtMostOnce)
    ]
}

pub fn leased_message() -> impl Strategy<Value = LeasedMessage> {
    (
        (
            text(),
            any::<u32>(),
            any::<u64>(),
            any::<i64>(),
            any::<u32>(),
            any::<i64>(),
        ),
        (opt_bytes(), opt_bytes(), vec((text(), opt_bytes()), 0..4)),
    )
        .prop_map(
            |(
                (receipt, partition, offset, timestamp_ms, deliveries, lease_deadline_ms),
                (key, value, headers),
            )| LeasedMessage {
                receipt,
                partition,
                offset,
                timestamp_ms,
                deliveries,
                lease_deadline_ms,
                key,
                value,
                headers,
            },
        )
}

pub fn receipt_results() -> impl Strategy<Value = Vec<Option<WireCode>>> {
    vec(option::of(wire_code()), 0..4)
}

pub fn setting_change() -> impl Strategy<Value = SettingChange> {
    prop_oneof![
        Just(SettingChange::Unchanged),
        Just(SettingChange::Removed),
        text().prop_map(SettingChange::Set),
    ]
}

fn alter_subscription() -> impl Strategy<Value = Request> {
    let u32_opt = || option::of(any::<u32>());
    (
        (text(), text(), u32_opt(), u32_opt()),
        (setting_change(), option::of(backoff())),
        (setting_change(), u32_opt()),
    )
        .prop_map(
            |(
                (topic, name, ack_timeout_ms, max_deliveries),
                (dead_letter_topic, backoff),
                (push_endpoint, max_in_flight),
            )| {
                Request::AlterSubscription(AlterSubscription {
                    topic,
                    name,
                    ack_timeout_ms,
                    max_deliveries,
                    dead_letter_topic,
                    backoff,
                    push_endpoint,
                    max_in_flight,
                })
            },
        )
}

fn queue_request() -> impl Strategy<Value = Request> {
    let kind = prop_oneof![
        Just(SubscriptionKind::Queue),
        Just(SubscriptionKind::Stream)
    ];
    prop_oneof![
        (
            (text(), text(), kind, any::<u32>(), any::<u32>()),
            (
                option::of(text()),
                backoff(),
                delivery_mode(),
                any::<bool>()
            ),
            subscription_push(),
        )
            .prop_map(
                |(
                    (topic, name, kind, ack_timeout_ms, max_deliveries),
                    (dead_letter_topic, backoff, mode, ordered),
                    push,
                )| {
                    Request::CreateSubscription(CreateSubscription {
                        topic,
                        name,
                        kind,
                        ack_timeout_ms,
                        max_deliveries,
                        dead_letter_topic,
                        backoff,
                        mode,
                        ordered,
                        // The current version always carries the push settings.
                        push: Some(push),
                    })
                }
            ),
        (text(), text()).prop_map(|(topic, name)| {
            Request::DeleteSubscription(DeleteSubscription { topic, name })
        }),
        option::of(text())
            .prop_map(|topic| Request::ListSubscriptions(ListSubscriptions { topic })),
        (text(), text(), any::<u32>(), any::<u32>()).prop_map(|(topic, name, max, wait_ms)| {
            Request::Receive(Receive {
                topic,
                name,
                max,
                wait_ms,
            })
        }),
        (text(), text(), vec(text(), 0..4)).prop_map(|(topic, name, receipts)| Request::Ack(Ack {
            topic,
            name,
            receipts
        })),
        (
            text(),
            text(),
            vec(text(), 0..4),
            any::<u32>(),
            option::of(text())
        )
            .prop_map(|(topic, name, receipts, delay_ms, error)| {
                Request::Nack(Nack {
                    topic,
                    name,
                    receipts,
                    delay_ms,
                    error,
                })
            }),
        (text(), text(), vec(text(), 0..4), any::<u32>()).prop_map(
            |(topic, name, receipts, extend_ms)| Request::ExtendLease(ExtendLease {
                topic,
                name,
                receipts,
                extend_ms
            })
        ),
        (text(), text()).prop_map(|(topic, name)| Request::Redrive(Redrive { topic, name })),
        alter_subscription(),
        (any::<u32>(), text(), text(), any::<u32>(), any::<u32>()).prop_map(
            |(subscription_id, topic, name, credit_messages, credit_bytes)| {
                Request::SubscribeQueue(SubscribeQueue {
                    subscription_id,
                    topic,
                    name,
                    credit_messages,
                    credit_bytes,
                })
            }
        ),
    ]
}

/// Longer than a `string` may be sometimes, so `text` fields are
/// exercised past the u16 limit.
pub fn long_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(),
        1 => (any::<char>(), 65_530usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n / c.len_utf8())),
    ]
}

fn request_record_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (text(), bytes(), any::<bool>(), option::of(text())).prop_map(
            |(queue, payload, json, callback_url)| Request::SubmitRequest(SubmitRequest {
                queue,
                payload,
                json,
                callback_url,
            })
        ),
        (text(), any::<u32>())
            .prop_map(|(id, wait_ms)| Request::GetRequest(GetRequest { id, wait_ms })),
        (text(), long_text()).prop_map(|(id, result_json)| {
            Request::CompleteRequest(CompleteRequest { id, result_json })
        }),
        (text(), long_text(), any::<bool>()).prop_map(|(id, error, retry)| {
            Request::FailRequest(FailRequest { id, error, retry })
        }),
    ]
}

fn token_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (text(), vec(text(), 0..4), vec(text(), 0..4), any::<bool>()).prop_map(
            |(name, produce, consume, admin)| Request::CreateToken(CreateToken {
                name,
                produce,
                consume,
                admin,
            })
        ),
        Just(Request::ListTokens),
        text().prop_map(|name| Request::RevokeToken(RevokeToken { name })),
    ]
}

fn group_admin_request() -> impl Strategy<Value = Request> {
    let to = prop_oneof![
        Just(OffsetTarget::Earliest),
        Just(OffsetTarget::Latest),
        any::<u64>().prop_map(OffsetTarget::Offset),
        any::<i64>().prop_map(OffsetTarget::Timestamp),
    ];
    prop_oneof![
        Just(Request::ListGroups),
        text().prop_map(|group| Request::DescribeGroup(DescribeGroup { group })),
        (text(), text(), to).prop_map(|(group, topic, to)| Request::ResetOffsets(ResetOffsets {
            group,
            topic,
            to
        })),
        text().prop_map(|group| Request::DeleteGroup(DeleteGroup { group })),
    ]
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        stream_request(),
        queue_request(),
        request_record_request(),
        token_request(),
        group_admin_request()
    ]
}

pub fn group_description() -> impl Strategy<Value = GroupDescription> {
    let tp =
        (text(), any::<u32>()).prop_map(|(topic, partition)| TopicPartition { topic, partition });
    let member = (text(), vec(tp, 0..3)).prop_map(|(member_id, assignment)| GroupMember {
        member_id,
        assignment,
    });
    let partition = (
        text(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(topic, partition, committed, end_offset, lag)| GroupPartition {
                topic,
                partition,
                committed,
                end_offset,
                lag,
            },
        );
    (
        text(),
        any::<u32>(),
        vec(member, 0..3),
        vec(partition, 0..3),
    )
        .prop_map(
            |(group, generation, members, partitions)| GroupDescription {
                group,
                generation,
                members,
                partitions,
            },
        )
}

fn group_admin_response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        vec(group_description(), 0..3).prop_map(ResponseBody::Groups),
        group_description().prop_map(ResponseBody::GroupDescription),
        vec(partition_offset(), 0..4).prop_map(ResponseBody::OffsetsReset),
        Just(ResponseBody::GroupDeleted),
    ]
}

fn stream_request() -> impl Strategy<Value = Request> {
    let routing = prop_oneof![
        any::<u32>().prop_map(Routing::Partition),
        bytes().prop_map(Routing::Key),
        Just(Routing::Spread),
    ];
    let fetch_partition = (text(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
        |(topic, partition, offset, max_bytes)| FetchPartition {
            topic,
            partition,
            offset,
            max_bytes,
        },
    );
    let group_start = prop_oneof![Just(GroupStart::Earliest), Just(GroupStart::Latest)];
    let subscribe_start = prop_oneof![
        Just(SubscribeStart::Earliest),
        Just(SubscribeStart::Latest),
        any::<u64>().prop_map(SubscribeStart::Offset),
    ];
    let topic_partition =
        (text(), any::<u32>()).prop_map(|(topic, partition)| TopicPartition { topic, partition });
    prop_oneof![
        (any::<u16>(), any::<u16>(), text(), option::of(text())).prop_map(
            |(min_version, max_version, client_id, token)| Request::Hello(Hello {
                min_version,
                max_version,
                client_id,
                token
            })
        ),
        (text(), any::<u32>(), topic_config()).prop_map(|(name, partitions, config)| {
            Request::CreateTopic(CreateTopic {
                name,
                partitions,
                config,
            })
        }),
        text().prop_map(|name| Request::DeleteTopic(DeleteTopic { name })),
        option::of(text()).prop_map(|pattern| Request::ListTopics(ListTopics { pattern })),
        text().prop_map(|name| Request::DescribeTopic(DescribeTopic { name })),
        (text(), topic_config())
            .prop_map(|(name, config)| Request::AlterTopic(AlterTopic { name, config })),
        (text(), routing, bytes()).prop_map(|(topic, routing, batch)| {
            Request::Produce(Produce {
                topic,
                routing,
                batch,
            })
        }),
        (any::<u32>(), any::<u32>(), vec(fetch_partition, 0..4)).prop_map(
            |(max_wait_ms, max_bytes, partitions)| Request::Fetch(Fetch {
                max_wait_ms,
                max_bytes,
                partitions
            })
        ),
        (
            text(),
            option::of(text()),
            vec(text(), 0..4),
            any::<u32>(),
            group_start
        )
            .prop_map(|(group, member_id, topics, session_timeout_ms, start)| {
                Request::JoinGroup(JoinGroup {
                    group,
                    member_id,
                    topics,
                    session_timeout_ms,
                    start,
                })
            }),
        (text(), text(), any::<u32>()).prop_map(|(group, member_id, generation)| {
            Request::Heartbeat(Heartbeat {
                group,
                member_id,
                generation,
            })
        }),
        (text(), text())
            .prop_map(|(group, member_id)| Request::LeaveGroup(LeaveGroup { group, member_id })),
        (text(), text(), any::<u32>(), vec(partition_offset(), 0..4)).prop_map(
            |(group, member_id, generation, offsets)| Request::CommitOffsets(CommitOffsets {
                group,
                member_id,
                generation,
                offsets
            })
        ),
        (text(), vec(topic_partition, 0..4)).prop_map(|(group, partitions)| {
            Request::FetchOffsets(FetchOffsets { group, partitions })
        }),
        (
            any::<u32>(),
            vec(text(), 0..4),
            option::of(text()),
            subscribe_start,
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(subscription_id, topics, group, start, credit_messages, credit_bytes)| {
                    Request::Subscribe(Subscribe {
                        subscription_id,
                        topics,
                        group,
                        start,
                        credit_messages,
                        credit_bytes,
                    })
                }
            ),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(subscription_id, messages, bytes)| {
                Request::Credit(Credit {
                    subscription_id,
                    messages,
                    bytes,
                })
            }
        ),
        any::<u32>()
            .prop_map(|subscription_id| Request::Unsubscribe(Unsubscribe { subscription_id })),
        Just(Request::Ping),
    ]
}

pub fn subscription_push() -> impl Strategy<Value = SubscriptionPush> {
    (option::of(text()), any::<u32>()).prop_map(|(endpoint, max_in_flight)| SubscriptionPush {
        endpoint,
        max_in_flight,
    })
}

fn queue_response_body() -> impl Strategy<Value = ResponseBody> {
    let info = (
        (
            text(),
            text(),
            any::<u32>(),
            any::<u32>(),
            option::of(text()),
        ),
        (
            backoff(),
            delivery_mode(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        subscription_push(),
    )
        .prop_map(
            |(
                (topic, name, ack_timeout_ms, max_deliveries, dead_letter_topic),
                (backoff, mode, ordered, leased, outstanding),
                (lag, redeliveries, dead_letters),
                push,
            )| SubscriptionInfo {
                topic,
                name,
                ack_timeout_ms,
                max_deliveries,
                dead_letter_topic,
                backoff,
                mode,
                ordered,
                leased,
                outstanding,
                lag,
                redeliveries,
                dead_letters,
                // The current version always carries the push settings.
                push: Some(push),
            },
        );
    prop_oneof![
        Just(ResponseBody::SubscriptionCreated),
        Just(ResponseBody::SubscriptionDeleted),
        Just(ResponseBody::SubscriptionAltered),
        vec(info, 0..4).prop_map(ResponseBody::Subscriptions),
        vec(leased_message(), 0..4).prop_map(ResponseBody::Messages),
        receipt_results().prop_map(ResponseBody::Acked),
        receipt_results().prop_map(ResponseBody::Nacked),
        receipt_results().prop_map(ResponseBody::LeasesExtended),
        any::<u64>().prop_map(|count| ResponseBody::Redriven { count }),
        any::<u32>().prop_map(|subscription_id| ResponseBody::QueueSubscribed { subscription_id }),
    ]
}

fn request_record_response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        text().prop_map(|id| ResponseBody::RequestAccepted { id }),
        long_text().prop_map(|json| ResponseBody::RequestRecord { json }),
        long_text().prop_map(|json| ResponseBody::RequestCompleted { json }),
        long_text().prop_map(|json| ResponseBody::RequestFailed { json }),
    ]
}

fn token_response_body() -> impl Strategy<Value = ResponseBody> {
    let info = (
        text(),
        vec(text(), 0..4),
        vec(text(), 0..4),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(name, produce, consume, admin, created_ms)| TokenInfo {
            name,
            produce,
            consume,
            admin,
            created_ms,
        });
    prop_oneof![
        (text(), text())
            .prop_map(|(name, token)| ResponseBody::TokenCreated(TokenCreated { name, token })),
        vec(info, 0..4).prop_map(ResponseBody::Tokens),
        Just(ResponseBody::TokenRevoked),
    ]
}

pub fn response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        stream_response_body(),
        queue_response_body(),
        request_record_response_body(),
        token_response_body(),
        group_admin_response_body()
    ]
}

fn stream_response_body() -> impl Strategy<Value = ResponseBody> {
    let summary =
        (text(), any::<u32>()).prop_map(|(name, partitions)| TopicSummary { name, partitions });
    let partition_info = (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(partition, start_offset, end_offset, messages, bytes)| PartitionInfo {
                partition,
                start_offset,
                end_offset,
                messages,
                bytes,
            },
        );
    let fetched_partition = (
        text(),
        any::<u32>(),
        option::of(wire_code()),
        any::<u64>(),
        any::<u64>(),
        bytes(),
    )
        .prop_map(
            |(topic, partition, error, start_offset, end_offset, batches)| FetchedPartition {
                topic,
                partition,
                error,
                start_offset,
                end_offset,
                batches,
            },
        );
    let committed = (text(), any::<u32>(), option::of(0..=i64::MAX as u64)).prop_map(
        |(topic, partition, offset)| CommittedOffset {
            topic,
            partition,
            offset,
        },
    );
    prop_oneof![
        (any::<u16>(), text(), any::<u32>()).prop_map(|(version, server_id, max_frame_bytes)| {
            ResponseBody::HelloOk(HelloOk {
                version,
                server_id,
                max_frame_bytes,
            })
        }),
        text().prop_map(|name| ResponseBody::TopicCreated { name }),
        Just(ResponseBody::TopicDeleted),
        vec(summary, 0..4).prop_map(ResponseBody::Topics),
        (text(), topic_config(), vec(partition_info, 0..4)).prop_map(
            |(name, config, partitions)| ResponseBody::TopicDescription(TopicDescription {
                name,
                config,
                partitions
            })
        ),
        Just(ResponseBody::TopicAltered),
        (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(partition, base_offset, last_offset)| ResponseBody::Produced(Produced {
                partition,
                base_offset,
                last_offset
            })
        ),
        vec(fetched_partition, 0..4)
            .prop_map(|partitions| ResponseBody::Fetched(Fetched { partitions })),
        (text(), any::<u32>(), vec(partition_offset(), 0..4)).prop_map(
            |(member_id, generation, assignment)| ResponseBody::Joined(Joined {
                member_id,
                generation,
                assignment
            })
        ),
        (any::<u32>(), vec(partition_offset(), 0..4)).prop_map(|(generation, assignment)| {
            ResponseBody::HeartbeatOk(HeartbeatOk {
                generation,
                assignment,
            })
        }),
        Just(ResponseBody::LeftGroup),
        Just(ResponseBody::OffsetsCommitted),
        vec(committed, 0..4).prop_map(ResponseBody::Offsets),
        any::<u32>().prop_map(|subscription_id| ResponseBody::Subscribed { subscription_id }),
        Just(ResponseBody::CreditGranted),
        Just(ResponseBody::Unsubscribed),
        Just(ResponseBody::Pong),
    ]
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        response_body().prop_map(Response::ok),
        // Errors decode for any op number, known or not.
        (any::<u16>(), wire_error()).prop_map(|(op, error)| Response::error(op, error)),
    ]
}

pub fn push() -> impl Strategy<Value = Push> {
    prop_oneof![
        (text(), any::<u32>(), bytes()).prop_map(|(topic, partition, batches)| {
            Push::Deliver(Deliver {
                topic,
                partition,
                batches,
            })
        }),
        wire_error().prop_map(Push::SubscriptionClosed),
        vec(leased_message(), 0..4)
            .prop_map(|messages| Push::QueueDeliver(QueueDeliver { messages })),
    ]
}

/// Fixed, realistic frames: one per message shape. Named for the corpus.
pub fn sample_frames() -> Vec<(&'static str, Bytes)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, encode: &dyn Fn(&mut BytesMut)| {
        let mut buf = BytesMut::new();
        encode(&mut buf);
        out.push((name, buf.freeze()));
    };
    let config = TopicConfig {
        max_messages: Some(1_000_000),
        max_bytes: Some(1 << 30),
        on_full: Some(OnFull::DropOldest),
        retention: Some(Retention::Limits),
        retention_bytes: None,
        retention_ms: Some(86_400_000),
        durability: Some(Durability::Interval { interval_ms: 50 }),
        segment_bytes: None,
        extensions: vec![],
    };
    let requests = [
        (
            "req_hello",
            Request::Hello(Hello {
                min_version: 1,
                max_version: 1,
                client_id: "fuzz-client".into(),
                token: Some("secret".into()),
            }),
        ),
        (
            "req_create_topic",
            Request::CreateTopic(CreateTopic {
                name: "orders".into(),
                partitions: 3,
                config: config.clone(),
            }),
        ),
        (
            "req_produce",
            Request::Produce(Produce {
                topic: "orders".into(),
                routing: Routing::Key(Bytes::from_static(b"customer-42")),
                batch: Bytes::from_static(&[0u8; 61]),
            }),
        ),
        (
            "req_fetch",
            Request::Fetch(Fetch {
                max_wait_ms: 500,
                max_bytes: 1 << 20,
                partitions: vec![FetchPartition {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 17,
                    max_bytes: 1 << 20,
                }],
            }),
        ),
        (
            "req_join_group",
            Request::JoinGroup(JoinGroup {
                group: "billing".into(),
                member_id: None,
                topics: vec!["orders.*".into()],
                session_timeout_ms: 10_000,
                start: GroupStart::Earliest,
            }),
        ),
        (
            "req_subscribe",
            Request::Subscribe(Subscribe {
                subscription_id: 7,
                topics: vec!["orders".into()],
                group: Some("billing".into()),
                start: SubscribeStart::Offset(100),
                credit_messages: 1000,
                credit_bytes: 1 << 20,
            }),
        ),
        ("req_ping", Request::Ping),
        (
            "req_create_subscription",
            Request::CreateSubscription(CreateSubscription {
                topic: "orders".into(),
                name: "billing".into(),
                kind: SubscriptionKind::Queue,
                ack_timeout_ms: 30_000,
                max_deliveries: 5,
                dead_letter_topic: Some("orders.dlq".into()),
                backoff: Backoff::Exponential {
                    initial_ms: 100,
                    max_ms: 60_000,
                },
                mode: DeliveryMode::AtLeastOnce,
                ordered: true,
                push: Some(SubscriptionPush {
                    endpoint: Some("http://127.0.0.1:8080/in".into()),
                    max_in_flight: 4,
                }),
            }),
        ),
        (
            "req_receive",
            Request::Receive(Receive {
                topic: "orders".into(),
                name: "billing".into(),
                max: 10,
                wait_ms: 5_000,
            }),
        ),
        (
            "req_nack",
            Request::Nack(Nack {
                topic: "orders".into(),
                name: "billing".into(),
                receipts: vec!["0-17-18c2a4f0000001".into()],
                delay_ms: 1_000,
                error: Some("payment gateway timed out".into()),
            }),
        ),
        (
            "req_subscribe_queue",
            Request::SubscribeQueue(SubscribeQueue {
                subscription_id: 8,
                topic: "orders".into(),
                name: "billing".into(),
                credit_messages: 100,
                credit_bytes: 1 << 20,
            }),
        ),
        (
            "req_submit_request",
            Request::SubmitRequest(SubmitRequest {
                queue: "thumbnails".into(),
                payload: Bytes::from_static(b"{\"image\":\"cat.png\"}"),
                json: true,
                callback_url: Some("http://127.0.0.1:8080/done".into()),
            }),
        ),
        (
            "req_get_request",
            Request::GetRequest(GetRequest {
                id: "01936b2e-7c3a-7d4e-9f00-2b1c5a6d7e8f".into(),
                wait_ms: 30_000,
            }),
        ),
        (
            "req_complete_request",
            Request::CompleteRequest(CompleteRequest {
                id: "01936b2e-7c3a-7d4e-9f00-2b1c5a6d7e8f".into(),
                result_json: "{\"thumbnail\":\"cat-64.png\"}".into(),
            }),
        ),
        (
            "req_fail_request",
            Request::FailRequest(FailRequest {
                id: "01936b2e-7c3a-7d4e-9f00-2b1c5a6d7e8f".into(),
                error: "convert: no such file".into(),
                retry: true,
            }),
        ),
        (
            "req_create_token",
            Request::CreateToken(CreateToken {
                name: "orders-producer".into(),
                produce: vec!["orders.*".into()],
                consume: vec![],
                admin: false,
            }),
        ),
        (
            "req_alter_subscription",
            Request::AlterSubscription(AlterSubscription {
                topic: "orders".into(),
                name: "billing".into(),
                ack_timeout_ms: Some(60_000),
                max_deliveries: Some(3),
                dead_letter_topic: SettingChange::Set("orders.dlq".into()),
                backoff: None,
                push_endpoint: SettingChange::Removed,
                max_in_flight: None,
            }),
        ),
    ];
    for (i, (name, request)) in requests.into_iter().enumerate() {
        add(name, &|buf| {
            request.encode(i as u32 + 1, buf).expect("encodes")
        });
    }
    let responses = [
        (
            "resp_topic_description",
            Response::ok(ResponseBody::TopicDescription(TopicDescription {
                name: "orders".into(),
                config,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    start_offset: 0,
                    end_offset: 10,
                    messages: 10,
                    bytes: 4096,
                }],
            })),
        ),
        (
            "resp_fetched",
            Response::ok(ResponseBody::Fetched(Fetched {
                partitions: vec![FetchedPartition {
                    topic: "orders".into(),
                    partition: 0,
                    error: None,
                    start_offset: 0,
                    end_offset: 18,
                    batches: Bytes::from_static(&[0u8; 61]),
                }],
            })),
        ),
        (
            "resp_error",
            Response::error(
                Op::Produce.as_u16(),
                WireError::new(ErrorCode::QueueFull, "topic orders is full")
                    .with_retry_after_ms(250),
            ),
        ),
    ];
    let message = LeasedMessage {
        receipt: "0-17-18c2a4f0000001".into(),
        partition: 0,
        offset: 17,
        timestamp_ms: 1_700_000_000_000,
        deliveries: 1,
        lease_deadline_ms: 1_700_000_030_000,
        key: Some(Bytes::from_static(b"customer-42")),
        value: Some(Bytes::from_static(b"{\"total\":12}")),
        headers: vec![
            ("spool-msg-id".into(), Some(Bytes::from_static(b"order-9"))),
            ("trace".into(), None),
        ],
    };
    let responses = responses.into_iter().chain([
        (
            "resp_tokens",
            Response::ok(ResponseBody::Tokens(vec![TokenInfo {
                name: "orders-producer".into(),
                produce: vec!["orders.*".into()],
                consume: vec!["orders.>".into(), "spool.errors".into()],
                admin: false,
                created_ms: 1_700_000_000_000,
            }])),
        ),
        (
            "resp_messages",
            Response::ok(ResponseBody::Messages(vec![message.clone()])),
        ),
        (
            "resp_acked",
            Response::ok(ResponseBody::Acked(vec![
                None,
                Some(ErrorCode::LeaseExpired.into()),
                Some(ErrorCode::UnknownReceipt.into()),
            ])),
        ),
        (
            "resp_request_accepted",
            Response::ok(ResponseBody::RequestAccepted {
                id: "01936b2e-7c3a-7d4e-9f00-2b1c5a6d7e8f".into(),
            }),
        ),
        (
            "resp_request_record",
            Response::ok(ResponseBody::RequestRecord {
                json: "{\"id\":\"01936b2e-7c3a-7d4e-9f00-2b1c5a6d7e8f\",\"status\":\"succeeded\",\"attempts\":1,\"result\":{\"thumbnail\":\"cat-64.png\"}}".into(),
            }),
        ),
        (
            "resp_subscriptions",
            Response::ok(ResponseBody::Subscriptions(vec![SubscriptionInfo {
                topic: "orders".into(),
                name: "billing".into(),
                ack_timeout_ms: 30_000,
                max_deliveries: 0,
                dead_letter_topic: None,
                backoff: Backoff::Fixed { delay_ms: 250 },
                mode: DeliveryMode::AtMostOnce,
                ordered: false,
                leased: 3,
                outstanding: 12,
                lag: 40,
                redeliveries: 2,
                dead_letters: 1,
                push: Some(SubscriptionPush {
                    endpoint: Some("http://127.0.0.1:8080/in".into()),
                    max_in_flight: 16,
                }),
            }])),
        ),
    ]);
    for (name, response) in responses {
        add(name, &|buf| response.encode(9, buf).expect("encodes"));
    }
    add("push_deliver", &|buf| {
        Push::Deliver(Deliver {
            topic: "orders".into(),
            partition: 1,
            batches: Bytes::from_static(&[0u8; 61]),
        })
        .encode(7, buf)
        .expect("encodes")
    });
    add("push_queue_deliver", &|buf| {
        Push::QueueDeliver(QueueDeliver {
            messages: vec![message.clone()],
        })
        .encode(8, buf)
        .expect("encodes")
    });
    out
}
