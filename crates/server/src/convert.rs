//! Conversions between wire types (`spool-proto`) and broker types. The
//! broker never sees wire types; this module is the only bridge.

use spool_broker as b;
use spool_broker::BrokerError;
use spool_proto as p;
use spool_types::ErrorCode;

pub fn wire_error(e: BrokerError) -> p::WireError {
    let w = p::WireError::new(e.code, e.message);
    match e.retry_after_ms {
        Some(ms) => w.with_retry_after_ms(ms),
        None => w,
    }
}

fn durability_to_broker(d: p::Durability) -> b::TopicDurability {
    match d {
        p::Durability::Always => b::TopicDurability::Always,
        p::Durability::Interval { interval_ms } => b::TopicDurability::Interval { interval_ms },
        p::Durability::Never => b::TopicDurability::Never,
    }
}

fn durability_to_wire(d: b::TopicDurability) -> p::Durability {
    match d {
        b::TopicDurability::Always => p::Durability::Always,
        b::TopicDurability::Interval { interval_ms } => p::Durability::Interval { interval_ms },
        b::TopicDurability::Never => p::Durability::Never,
    }
}

pub fn patch_from_wire(c: &p::TopicConfig) -> Result<b::TopicConfigPatch, BrokerError> {
    let mut dedup_window_ms = None;
    let mut warn_depth = None;
    for ext in &c.extensions {
        let as_u64 = || -> Result<u64, BrokerError> {
            let bytes: [u8; 8] = ext.value.as_ref().try_into().map_err(|_| {
                BrokerError::new(
                    ErrorCode::InvalidConfig,
                    format!("topic setting with tag {} must be 8 bytes", ext.tag),
                )
            })?;
            Ok(u64::from_be_bytes(bytes))
        };
        match ext.tag {
            p::CONFIG_TAG_DEDUP_WINDOW_MS => dedup_window_ms = Some(as_u64()?),
            p::CONFIG_TAG_WARN_DEPTH => warn_depth = Some(as_u64()?),
            p::CONFIG_TAG_REPLICAS => {
                return Err(BrokerError::new(
                    ErrorCode::InvalidConfig,
                    "a topic's replica count is chosen when it is created and cannot be altered",
                ))
            }
            tag => {
                return Err(BrokerError::new(
                    ErrorCode::InvalidConfig,
                    format!("topic setting with tag {tag} is not known to this server"),
                ))
            }
        }
    }
    Ok(b::TopicConfigPatch {
        max_messages: c.max_messages,
        max_bytes: c.max_bytes,
        on_full: c.on_full.map(|o| match o {
            p::OnFull::Reject => b::OnFull::Reject,
            p::OnFull::DropOldest => b::OnFull::DropOldest,
        }),
        retention: c.retention.map(|r| match r {
            p::Retention::Limits => b::Retention::Limits,
            p::Retention::WorkQueue => b::Retention::WorkQueue,
        }),
        retention_bytes: c.retention_bytes,
        retention_ms: c.retention_ms,
        durability: c.durability.map(durability_to_broker),
        segment_bytes: c.segment_bytes,
        dedup_window_ms,
        warn_depth,
    })
}

/// CreateTopic's settings without the `replicas` extension, and its value.
pub fn take_replicas(c: &p::TopicConfig) -> Result<(p::TopicConfig, Option<u32>), BrokerError> {
    let mut rest = c.clone();
    let mut replicas = None;
    rest.extensions.retain(|ext| {
        if ext.tag != p::CONFIG_TAG_REPLICAS {
            return true;
        }
        replicas = Some(ext.value.clone());
        false
    });
    let replicas = match replicas {
        None => None,
        Some(value) => {
            let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| {
                BrokerError::new(
                    ErrorCode::InvalidConfig,
                    "the replica count must be 8 bytes",
                )
            })?;
            let count = u64::from_be_bytes(bytes);
            let count = u32::try_from(count)
                .ok()
                .filter(|c| *c >= 1)
                .ok_or_else(|| {
                    BrokerError::new(
                        ErrorCode::InvalidConfig,
                        format!(
                            "a topic needs at least 1 replica and at most a few; {count} asked"
                        ),
                    )
                })?;
            Some(count)
        }
    };
    Ok((rest, replicas))
}

/// A node's view of the cluster, on the wire.
pub fn cluster_to_wire(view: crate::cluster::ClusterView) -> p::ClusterStatus {
    p::ClusterStatus {
        node_id: view.node_id,
        meta_leader: view.meta_leader,
        meta_in_sync: view.meta_in_sync,
        nodes: view
            .nodes
            .into_iter()
            .map(|n| p::ClusterNode {
                id: n.id,
                client_addr: n.client_addr,
                http_addr: n.http_addr,
                cluster_addr: n.cluster_addr,
                alive: Some(u32::from(n.alive)),
            })
            .collect(),
        partitions: view
            .partitions
            .into_iter()
            .map(|v| p::ClusterPartition {
                topic: v.topic,
                partition: v.partition,
                replicas: v.replicas,
                hosted: v.hosted,
                leader: v.leader,
                term: v.term,
                in_sync: v.in_sync,
                committed: v.committed,
            })
            .collect(),
    }
}

pub fn config_to_wire(c: &b::TopicConfig) -> p::TopicConfig {
    p::TopicConfig {
        max_messages: Some(c.max_messages.unwrap_or(0)),
        max_bytes: Some(c.max_bytes.unwrap_or(0)),
        on_full: Some(match c.on_full {
            b::OnFull::Reject => p::OnFull::Reject,
            b::OnFull::DropOldest => p::OnFull::DropOldest,
        }),
        retention: Some(match c.retention {
            b::Retention::Limits => p::Retention::Limits,
            b::Retention::WorkQueue => p::Retention::WorkQueue,
        }),
        retention_bytes: Some(c.retention_bytes.unwrap_or(0)),
        retention_ms: Some(c.retention_ms.unwrap_or(0)),
        durability: Some(durability_to_wire(c.durability)),
        segment_bytes: Some(c.segment_bytes),
        extensions: vec![
            p::ConfigExtension {
                tag: p::CONFIG_TAG_DEDUP_WINDOW_MS,
                value: bytes::Bytes::copy_from_slice(&c.dedup_window_ms.to_be_bytes()),
            },
            p::ConfigExtension {
                tag: p::CONFIG_TAG_WARN_DEPTH,
                value: bytes::Bytes::copy_from_slice(&c.warn_depth.unwrap_or(0).to_be_bytes()),
            },
        ],
    }
}

pub fn routing(r: &p::Routing) -> b::Routing {
    match r {
        p::Routing::Partition(n) => b::Routing::Partition(*n),
        p::Routing::Key(k) => b::Routing::Key(k.to_vec()),
        p::Routing::Spread => b::Routing::Spread,
    }
}

pub fn assignment(a: b::Assignment) -> Vec<p::PartitionOffset> {
    a.partitions
        .into_iter()
        .map(|(topic, partition, offset)| p::PartitionOffset {
            topic,
            partition,
            offset: offset.max(0) as u64,
        })
        .collect()
}

/// Offsets on the wire are u64; the log uses i64 internally.
pub fn offset_from_wire(o: u64) -> Result<i64, BrokerError> {
    i64::try_from(o).map_err(|_| BrokerError::invalid(format!("offset {o} is out of range")))
}

/// A consumer group as DESCRIBE_GROUP and LIST_GROUPS send it.
pub fn group_description(g: b::GroupInfo) -> p::GroupDescription {
    let tp = |(topic, partition)| p::TopicPartition { topic, partition };
    p::GroupDescription {
        group: g.group,
        generation: g.generation,
        members: g
            .members
            .into_iter()
            .map(|(member_id, held)| p::GroupMember {
                member_id,
                assignment: held.into_iter().map(tp).collect(),
            })
            .collect(),
        partitions: g
            .partitions
            .into_iter()
            .map(|l| p::GroupPartition {
                topic: l.topic,
                partition: l.partition,
                committed: l.committed.max(0) as u64,
                end_offset: l.end_offset.max(0) as u64,
                lag: l.lag,
            })
            .collect(),
    }
}

/// A RESET_OFFSETS target as the broker takes it.
pub fn offset_reset(to: p::OffsetTarget) -> Result<b::OffsetReset, BrokerError> {
    Ok(match to {
        p::OffsetTarget::Earliest => b::OffsetReset::Earliest,
        p::OffsetTarget::Latest => b::OffsetReset::Latest,
        p::OffsetTarget::Offset(o) => b::OffsetReset::Offset(offset_from_wire(o)?),
        p::OffsetTarget::Timestamp(ms) => b::OffsetReset::Timestamp(ms),
    })
}

/// Ack timeout for a CreateSubscription that leaves it at 0: the broker's
/// default, so clients need not hard-code it.
pub const ACK_TIMEOUT_MS_DEFAULT: u64 = 30_000;

fn backoff_spec(backoff: p::Backoff) -> b::subscription::BackoffSpec {
    match backoff {
        p::Backoff::Fixed { delay_ms } => b::subscription::BackoffSpec::Fixed { delay_ms },
        p::Backoff::Exponential { initial_ms, max_ms } => {
            b::subscription::BackoffSpec::Exponential { initial_ms, max_ms }
        }
    }
}

/// AlterSubscription as the broker takes it. An ack timeout of 0 is passed
/// on, to be refused (`INVALID_CONFIG`) as the broker refuses it: here it
/// cannot mean "the default", as it does at creation.
pub fn subscription_patch(a: p::AlterSubscription) -> b::subscription::SubscriptionPatch {
    b::subscription::SubscriptionPatch {
        ack_timeout_ms: a.ack_timeout_ms.map(u64::from),
        max_deliveries: a.max_deliveries,
        dead_letter_topic: a.dead_letter_topic.into_option(),
        backoff: a.backoff.map(backoff_spec),
        push_endpoint: a.push_endpoint.into_option(),
        push_max_in_flight: a.max_in_flight,
    }
}

pub fn subscription_spec(c: &p::CreateSubscription) -> b::subscription::SubscriptionSpec {
    let defaults = b::subscription::SubscriptionSpec::new(&c.topic, &c.name);
    b::subscription::SubscriptionSpec {
        ack_timeout_ms: match c.ack_timeout_ms {
            0 => ACK_TIMEOUT_MS_DEFAULT,
            ms => u64::from(ms),
        },
        max_deliveries: c.max_deliveries,
        dead_letter_topic: c.dead_letter_topic.clone(),
        backoff: backoff_spec(c.backoff),
        mode: match c.mode {
            p::DeliveryMode::AtLeastOnce => b::subscription::ModeSpec::AtLeastOnce,
            p::DeliveryMode::AtMostOnce => b::subscription::ModeSpec::AtMostOnce,
        },
        ordered: c.ordered,
        push_endpoint: c.push.as_ref().and_then(|p| p.endpoint.clone()),
        push_max_in_flight: match c.push.as_ref().map_or(0, |p| p.max_in_flight) {
            0 => defaults.push_max_in_flight,
            n => n,
        },
        ..defaults
    }
}

pub fn subscription_info(
    spec: b::subscription::SubscriptionSpec,
    load: crate::ops::SubscriptionLoad,
) -> p::SubscriptionInfo {
    p::SubscriptionInfo {
        topic: spec.topic,
        name: spec.name,
        // The broker caps ack timeouts at 12 hours, far below u32::MAX ms.
        ack_timeout_ms: u32::try_from(spec.ack_timeout_ms).unwrap_or(u32::MAX),
        max_deliveries: spec.max_deliveries,
        dead_letter_topic: spec.dead_letter_topic,
        backoff: match spec.backoff {
            b::subscription::BackoffSpec::Fixed { delay_ms } => p::Backoff::Fixed { delay_ms },
            b::subscription::BackoffSpec::Exponential { initial_ms, max_ms } => {
                p::Backoff::Exponential { initial_ms, max_ms }
            }
        },
        mode: match spec.mode {
            b::subscription::ModeSpec::AtLeastOnce => p::DeliveryMode::AtLeastOnce,
            b::subscription::ModeSpec::AtMostOnce => p::DeliveryMode::AtMostOnce,
        },
        ordered: spec.ordered,
        leased: load.leased,
        outstanding: load.outstanding,
        lag: load.lag,
        redeliveries: load.redeliveries,
        dead_letters: load.dead_letters,
        push: Some(p::SubscriptionPush {
            endpoint: spec.push_endpoint,
            max_in_flight: spec.push_max_in_flight,
        }),
    }
}

pub fn leased_message(m: b::subscription::LeasedMessage) -> p::LeasedMessage {
    p::LeasedMessage {
        receipt: m.receipt,
        partition: m.partition,
        offset: m.offset.max(0) as u64,
        timestamp_ms: m.timestamp_ms,
        deliveries: m.deliveries,
        lease_deadline_ms: m.lease_deadline_ms,
        key: m.key,
        value: m.value,
        headers: m.headers,
    }
}

/// One code per receipt, in order: `None` where the broker succeeded.
pub fn receipt_codes<T>(results: &[Result<T, BrokerError>]) -> Vec<Option<p::WireCode>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code.into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ext(tag: u16, value: &[u8]) -> p::TopicConfig {
        p::TopicConfig {
            extensions: vec![p::ConfigExtension {
                tag,
                value: bytes::Bytes::copy_from_slice(value),
            }],
            ..p::TopicConfig::default()
        }
    }

    #[test]
    fn config_extensions_are_read_or_refused_with_invalid_config() {
        let ok = patch_from_wire(&with_ext(
            p::CONFIG_TAG_DEDUP_WINDOW_MS,
            &500u64.to_be_bytes(),
        ))
        .unwrap();
        assert_eq!(ok.dedup_window_ms, Some(500));
        let ok = patch_from_wire(&with_ext(p::CONFIG_TAG_WARN_DEPTH, &7u64.to_be_bytes())).unwrap();
        assert_eq!(ok.warn_depth, Some(7));
        let short = patch_from_wire(&with_ext(p::CONFIG_TAG_WARN_DEPTH, &[1, 2])).unwrap_err();
        assert_eq!(short.code, ErrorCode::InvalidConfig);
        let unknown = patch_from_wire(&with_ext(99, &0u64.to_be_bytes())).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::InvalidConfig);
        // What a description sends back reads back the same.
        let round = patch_from_wire(&config_to_wire(&b::TopicConfig::default())).unwrap();
        assert_eq!(
            round.dedup_window_ms,
            Some(b::TopicConfig::default().dedup_window_ms)
        );
    }

    #[test]
    fn the_replica_count_is_taken_at_creation_and_refused_anywhere_else() {
        let three = with_ext(p::CONFIG_TAG_REPLICAS, &3u64.to_be_bytes());
        let (rest, replicas) = take_replicas(&three).unwrap();
        assert_eq!(replicas, Some(3));
        assert!(rest.extensions.is_empty(), "the rest is a plain config");
        assert_eq!(take_replicas(&p::TopicConfig::default()).unwrap().1, None);
        for bad in [&0u64.to_be_bytes()[..], &u64::MAX.to_be_bytes(), &[3]] {
            let e = take_replicas(&with_ext(p::CONFIG_TAG_REPLICAS, bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{bad:?}: {e}");
        }
        // Altering it: refused, not ignored.
        let e = patch_from_wire(&three).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.message.contains("cannot be altered"), "{e}");
    }
}
