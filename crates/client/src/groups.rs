//! Consumer-group administration: [`Client::list_groups`] and
//! [`Client::describe_group`] (members, the partitions each holds,
//! committed offsets and lag), [`Client::reset_offsets`] and
//! [`Client::delete_group`], both only while the group has no members
//! (`GROUP_NOT_EMPTY`). Membership itself is [`crate::GroupConsumer`].

use crate::client::{unexpected, Client};
use crate::error::ClientError;
use spool_proto::{self as p, GroupDescription, OffsetTarget, Request, ResponseBody};

impl Client {
    /// The consumer groups this client may see, each described.
    pub async fn list_groups(&self) -> Result<Vec<GroupDescription>, ClientError> {
        match self.call(Request::ListGroups).await? {
            ResponseBody::Groups(groups) => Ok(groups),
            other => Err(unexpected(&other, p::Op::ListGroups)),
        }
    }

    /// One group's members, assignment, committed offsets and lag
    /// (`UNKNOWN_GROUP` if there is none).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let request = Request::DescribeGroup(p::DescribeGroup {
            group: group.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::GroupDescription(g) => Ok(g),
            other => Err(unexpected(&other, p::Op::DescribeGroup)),
        }
    }

    /// Sets `group`'s committed offsets on every partition of `topic`;
    /// answers the new offsets. Refused (`GROUP_NOT_EMPTY`) while the
    /// group has members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: OffsetTarget,
    ) -> Result<Vec<p::PartitionOffset>, ClientError> {
        let request = Request::ResetOffsets(p::ResetOffsets {
            group: group.to_owned(),
            topic: topic.to_owned(),
            to,
        });
        match self.call(request).await? {
            ResponseBody::OffsetsReset(offsets) => Ok(offsets),
            other => Err(unexpected(&other, p::Op::ResetOffsets)),
        }
    }

    /// Deletes a group without members, and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let request = Request::DeleteGroup(p::DeleteGroup {
            group: group.to_owned(),
        });
        match self.call(request).await? {
            ResponseBody::GroupDeleted => Ok(()),
            other => Err(unexpected(&other, p::Op::DeleteGroup)),
        }
    }
}
