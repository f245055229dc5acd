//! Consumer-group administration: list, describe, reset offsets, delete.
//! Membership and commits are in `streams.rs`.
//!
//! Who may: an admin, or a caller who may consume every topic the group
//! has committed offsets on (resetting also needs the topic reset); a list
//! shows only the groups the caller may describe.

use super::{check_consume_all, Ops};
use crate::auth::{Caller, Need};
use spool_broker::{BrokerError, GroupInfo, OffsetReset};

impl Ops {
    /// Whether `caller` may administer `group`: an admin, or a consumer
    /// of every topic it has offsets on.
    fn check_group_admin(&self, caller: &Caller, group: &str) -> Result<(), BrokerError> {
        if caller.may(Need::Admin) {
            return Ok(());
        }
        caller.check(Need::ConsumeSomething)?;
        check_consume_all(
            caller,
            self.broker.group_topics(group).iter().map(String::as_str),
        )
    }

    /// The consumer groups the caller may describe, described.
    pub fn list_groups(&self, caller: &Caller) -> Result<Vec<GroupInfo>, BrokerError> {
        caller.check(Need::Any)?;
        Ok(self
            .broker
            .list_groups()
            .into_iter()
            .filter(|g| {
                caller.may(Need::Admin)
                    || g.partitions
                        .iter()
                        .all(|p| caller.may(Need::Consume(&p.topic)))
            })
            .collect())
    }

    /// One group's members, assignment, committed offsets and lag.
    pub fn describe_group(&self, caller: &Caller, group: &str) -> Result<GroupInfo, BrokerError> {
        self.check_group_admin(caller, group)?;
        self.broker.describe_group(group)
    }

    /// Sets a group's offsets on every partition of `topic`; refused
    /// (`GROUP_NOT_EMPTY`) while it has members. Answers the new offsets.
    pub async fn reset_group_offsets(
        &self,
        caller: &Caller,
        group: String,
        topic: String,
        to: OffsetReset,
    ) -> Result<Vec<(u32, i64)>, BrokerError> {
        self.check_group_admin(caller, &group)?;
        caller.check(Need::Consume(&topic))?;
        self.on_broker(move |b, now| b.reset_group_offsets(&group, &topic, to, now))
            .await
    }

    /// Deletes a consumer group that has no members, with its committed
    /// offsets.
    pub async fn delete_group(&self, caller: &Caller, group: String) -> Result<(), BrokerError> {
        self.check_group_admin(caller, &group)?;
        self.on_broker(move |b, now| b.delete_group(&group, now))
            .await
    }
}
