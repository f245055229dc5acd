//! The life of a request record, as every layer names it.

use std::fmt;

/// A request record's status: `pending` → `running` (leased to a worker)
/// → `succeeded` | `failed`; a retried failure goes back to `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum RequestStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RequestStatus {
    /// Every status, in the order of a record's life.
    pub const ALL: [RequestStatus; 4] = [
        RequestStatus::Pending,
        RequestStatus::Running,
        RequestStatus::Succeeded,
        RequestStatus::Failed,
    ];

    /// Succeeded or failed: the record will not change status again.
    pub fn is_final(self) -> bool {
        matches!(self, RequestStatus::Succeeded | RequestStatus::Failed)
    }

    /// The name records and APIs use (`pending`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Running => "running",
            RequestStatus::Succeeded => "succeeded",
            RequestStatus::Failed => "failed",
        }
    }

    /// The status a name stands for, if any.
    pub fn parse(name: &str) -> Option<RequestStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The status of a record as JSON (its `status` field), if it has a
    /// known one.
    #[cfg(feature = "serde")]
    pub fn of(record: &serde_json::Value) -> Option<RequestStatus> {
        Self::parse(record.get("status")?.as_str()?)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The queue subscription request workers take work from.
pub const WORKERS_SUBSCRIPTION: &str = "workers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RequestStatus::parse("done"), None);
    }
}
