//! Administration: topics, subscriptions and tokens.

use super::Ops;
use crate::auth::{Caller, Need, TokenSummary};
use crate::cluster::ClusterView;
use spool_broker::subscription::{SubscriptionPatch, SubscriptionSpec};
use spool_broker::{BrokerError, TopicConfig, TopicConfigPatch, TopicDescription};
use spool_types::ErrorCode;
use std::sync::atomic::Ordering::Relaxed;

/// What kind of subscription to create.
pub enum SubscriptionKind {
    /// A consumer group: it comes into being when a member first joins.
    Stream,
    /// A work queue with its settings.
    Queue(SubscriptionSpec),
}

/// A queue subscription's current load, as listed.
#[derive(Debug, Default, Clone, Copy)]
pub struct SubscriptionLoad {
    pub leased: u64,
    pub outstanding: u64,
    pub lag: u64,
    pub redeliveries: u64,
    pub dead_letters: u64,
}

impl Ops {
    /// Creates a topic. On a cluster node it is a replicated topic, each
    /// partition on `replicas` nodes (default
    /// [`REPLICAS_DEFAULT`](crate::cluster::REPLICAS_DEFAULT), or every node
    /// of a smaller cluster); a single-node server takes only 1.
    pub async fn create_topic(
        &self,
        caller: &Caller,
        name: String,
        partitions: u32,
        replicas: Option<u32>,
        config: TopicConfig,
    ) -> Result<(), BrokerError> {
        caller.check(Need::Admin)?;
        if let Some(cluster) = &self.cluster {
            spool_types::TopicName::new(&name)
                .map_err(|e| BrokerError::invalid(format!("topic name {name:?}: {e}")))?;
            return cluster
                .create_topic(&name, partitions, replicas, &config)
                .await;
        }
        if replicas.is_some_and(|r| r != 1) {
            return Err(BrokerError::new(
                ErrorCode::InvalidConfig,
                "this server is not a cluster node: a topic has 1 replica here                  (start the server with --peers to replicate)",
            ));
        }
        self.on_broker(move |b, now| b.create_topic(&name, partitions, config, now))
            .await
    }

    /// A producer id for an idempotent producer; a single-node server has
    /// none to give (`INVALID_REQUEST`).
    pub async fn init_producer_id(&self) -> Result<u64, BrokerError> {
        match &self.cluster {
            Some(cluster) => cluster.producer_id().await,
            None => Err(BrokerError::invalid(
                "this server is not a cluster node: producer ids are handed out by a \
                 cluster (duplicates are suppressed here with spool-msg-id)",
            )),
        }
    }

    /// This node's view of the cluster; `None` on a single-node server.
    /// Any caller may ask (clients route by it, as Kafka's do by
    /// Metadata): it names nodes and partitions, never data.
    pub fn cluster_view(&self) -> Option<ClusterView> {
        self.cluster.as_ref().map(|c| c.view())
    }

    pub async fn delete_topic(&self, caller: &Caller, name: String) -> Result<(), BrokerError> {
        caller.check(Need::Admin)?;
        self.on_broker(move |b, now| b.delete_topic(&name, now))
            .await
    }

    /// Changes a topic's settings; answers the topic as it now is.
    pub async fn alter_topic(
        &self,
        caller: &Caller,
        name: String,
        patch: TopicConfigPatch,
    ) -> Result<TopicDescription, BrokerError> {
        caller.check(Need::Admin)?;
        self.on_broker(move |b, now| {
            b.alter_topic(&name, &patch, now)?;
            b.describe_topic(&name)
        })
        .await
    }

    /// Topic names and partition counts the caller may see.
    pub fn list_topics(
        &self,
        caller: &Caller,
        pattern: Option<&str>,
    ) -> Result<Vec<(String, u32)>, BrokerError> {
        caller.check(Need::Any)?;
        Ok(self
            .broker
            .list_topics(pattern)?
            .into_iter()
            .filter(|(name, _)| caller.may(Need::ProduceOrConsume(name)))
            .collect())
    }

    /// A topic's settings and partitions. On a cluster node, the offsets
    /// of a partition it holds no replica of are asked of a node that
    /// holds one (its `bytes` stay 0: nothing of it is stored here).
    pub async fn describe_topic(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<TopicDescription, BrokerError> {
        caller.check(Need::ProduceOrConsume(name))?;
        let mut description = self.broker.describe_topic(name)?;
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(description);
        };
        let elsewhere: Vec<&mut spool_broker::PartitionInfo> = description
            .partitions
            .iter_mut()
            .filter(|p| self.read_elsewhere(name, p.partition))
            .collect();
        let asked = elsewhere
            .iter()
            .map(|p| cluster.read_remote(name, p.partition, 0, 0, 0));
        let answers = futures::future::join_all(asked).await;
        for (info, answer) in elsewhere.into_iter().zip(answers) {
            match answer {
                Ok(read) => {
                    info.start_offset = read.start_offset;
                    info.end_offset = read.end_offset;
                    info.messages = (read.end_offset - read.start_offset).max(0) as u64;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(description)
    }

    /// Creates a subscription. Creating a queue that exists with the same
    /// settings is not an error, so set-up scripts can simply re-run.
    pub async fn create_subscription(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
        kind: SubscriptionKind,
    ) -> Result<(), BrokerError> {
        caller.check(Need::Admin)?;
        self.broker.topic(&topic)?;
        let spec = match kind {
            SubscriptionKind::Stream => return check_stream_subscription_name(&name),
            SubscriptionKind::Queue(spec) => spec,
        };
        if let Some(url) = &spec.push_endpoint {
            self.check_push_endpoint(url)?;
        }
        self.on_broker(
            move |b, now| match b.create_subscription(spec.clone(), now) {
                Err(e)
                    if e.code == ErrorCode::GroupExists
                        && b.subscription(&spec.topic, &spec.name)
                            .is_ok_and(|q| q.spec() == spec) =>
                {
                    Ok(())
                }
                other => other,
            },
        )
        .await
    }

    /// Changes a queue subscription's settings, checked as at creation (a
    /// new push endpoint against the outbound allow-list too); answers the
    /// subscription as it now is.
    pub async fn alter_subscription(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
        patch: SubscriptionPatch,
    ) -> Result<(SubscriptionSpec, SubscriptionLoad), BrokerError> {
        caller.check(Need::Admin)?;
        if let Some(Some(url)) = &patch.push_endpoint {
            self.check_push_endpoint(url)?;
        }
        let spec = self
            .on_broker(move |b, now| b.alter_subscription(&topic, &name, &patch, now))
            .await?;
        let load = self.subscription_load(&spec.topic, &spec.name);
        Ok((spec, load))
    }

    fn check_push_endpoint(&self, url: &str) -> Result<(), BrokerError> {
        self.allow
            .check(url)
            .map_err(|e| BrokerError::invalid(format!("push_endpoint: {e}")))
    }

    pub async fn delete_subscription(
        &self,
        caller: &Caller,
        topic: String,
        name: String,
    ) -> Result<(), BrokerError> {
        caller.check(Need::Admin)?;
        self.on_broker(move |b, now| b.delete_subscription(&topic, &name, now))
            .await
    }

    /// The queue subscriptions the caller may see (of one topic, or all),
    /// with their load.
    pub fn list_subscriptions(
        &self,
        caller: &Caller,
        topic: Option<&str>,
    ) -> Result<Vec<(SubscriptionSpec, SubscriptionLoad)>, BrokerError> {
        match topic {
            Some(t) => {
                caller.check(Need::Consume(t))?;
                self.broker.topic(t)?;
            }
            None => caller.check(Need::Any)?,
        }
        Ok(self
            .broker
            .list_subscriptions(topic)
            .into_iter()
            .filter(|spec| caller.may(Need::Consume(&spec.topic)))
            .map(|spec| {
                // Deleted since it was listed: report it empty.
                let load = self.subscription_load(&spec.topic, &spec.name);
                (spec, load)
            })
            .collect())
    }

    fn subscription_load(&self, topic: &str, name: &str) -> SubscriptionLoad {
        let Ok(q) = self.broker.subscription(topic, name) else {
            return SubscriptionLoad::default();
        };
        let (outstanding, leased) = q.counts();
        SubscriptionLoad {
            leased: leased as u64,
            outstanding: outstanding as u64,
            lag: self.broker.subscription_lag(&q),
            redeliveries: q.redeliveries.load(Relaxed),
            dead_letters: q.dead_letters.load(Relaxed),
        }
    }

    /// Creates a token; answers its secret (shown this once).
    pub fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        produce: &[String],
        consume: &[String],
        admin: bool,
    ) -> Result<String, BrokerError> {
        caller.check(Need::Admin)?;
        self.auth
            .create(name, produce, consume, admin, crate::now_ms())
    }

    pub fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenSummary>, BrokerError> {
        caller.check(Need::Admin)?;
        Ok(self.auth.list())
    }

    pub fn revoke_token(&self, caller: &Caller, name: &str) -> Result<(), BrokerError> {
        caller.check(Need::Admin)?;
        self.auth.revoke(name)
    }
}

/// A stream subscription is a consumer group, created by its first join;
/// creating one only checks that its name could be joined.
fn check_stream_subscription_name(name: &str) -> Result<(), BrokerError> {
    spool_types::check_group_name(name)
        .map_err(|e| BrokerError::invalid(format!("subscription name {e}")))
}
