//! The process's open-file limit, and what the server needs of it: a
//! descriptor per open log file, per connection, and a few of its own.
//! Out of them the server cannot create a topic, accept a connection or
//! load the CA roots its callbacks need, so it raises the limit at start
//! and warns when the data directory and `max_connections` will not fit.

use std::fmt;

/// Descriptors the server needs besides its logs and connections: stdio,
/// the listeners and their reserve descriptors, the event loop, the
/// request store, files written atomically (tokens, secrets, snapshots),
/// outbound callbacks and pushes, and the CA roots read while the HTTP
/// client is built.
pub const DESCRIPTORS_RESERVED: u64 = 64;

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: the (often 1,024)
/// soft default is far below what a server with many partitions and
/// connections needs, and only the hard limit is the administrator's word.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let (before, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(OpenFileLimit { before, now })
}

/// What a server needs of the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorNeeds {
    /// Held by the logs of the data directory (their active segments).
    pub log_files: u64,
    /// Sealed segments' files open while read: at most
    /// [`spool_log::SEALED_FILES_OPEN_MAX`].
    pub sealed_files: u64,
    /// One per connection, up to `max_connections`.
    pub connections: u64,
    /// [`DESCRIPTORS_RESERVED`].
    pub reserved: u64,
}

impl DescriptorNeeds {
    pub fn total(&self) -> u64 {
        self.log_files + self.sealed_files + self.connections + self.reserved
    }
}

impl fmt::Display for DescriptorNeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} descriptors: {} for the data directory's log files, {} for reading sealed \
             segments, {} for connections (max_connections), {} for the server itself",
            self.total(),
            self.log_files,
            self.sealed_files,
            self.connections,
            self.reserved
        )
    }
}
