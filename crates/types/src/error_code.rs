//! The stable error-code table shared by the binary protocol, the HTTP API and
//! the CLI. Codes are grouped in ranges by area so a reader can tell the area
//! from the number.

/// A stable, numbered error code. The numeric value is what crosses the wire;
/// the name (`QUEUE_FULL`, …) is what people and scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    // 1xx: the request itself.
    /// The request is well framed but its contents make no sense.
    InvalidRequest = 100,
    /// The frame could not be decoded.
    MalformedFrame = 101,
    /// The frame's length prefix exceeds the maximum frame size.
    FrameTooLarge = 102,
    /// The client speaks a protocol version the server does not.
    UnsupportedVersion = 103,
    /// The request type is unknown to this server.
    UnknownRequestType = 104,
    /// The connection has too many requests in flight, or push subscriptions open.
    TooManyInFlight = 105,
    /// The first frame on a connection was not a handshake, or a second one came.
    HandshakeRequired = 106,

    // 2xx: who is asking.
    /// No valid credentials were presented.
    Unauthenticated = 200,
    /// The credentials are valid but lack the needed permission.
    Forbidden = 201,

    // 3xx: topics and partitions.
    /// No topic has this name.
    UnknownTopic = 300,
    /// A topic with this name already exists.
    TopicExists = 301,
    /// The topic name breaks the naming rules.
    InvalidTopicName = 302,
    /// The topic has no partition with this number.
    UnknownPartition = 303,
    /// Names beginning `spool.` are reserved for system topics.
    ReservedTopicName = 304,
    /// A topic setting is out of range or inconsistent.
    InvalidConfig = 305,

    // 4xx: producing.
    /// A single message exceeds the maximum message size.
    MessageTooLarge = 400,
    /// A batch exceeds the maximum batch size or record count.
    BatchTooLarge = 401,
    /// The topic is at its `max_messages`/`max_bytes` limit with policy `reject`.
    QueueFull = 402,
    /// A record batch failed validation (CRC, lengths, record structure).
    CorruptBatch = 403,
    /// The batch uses a feature the server does not support (compression, …).
    UnsupportedBatch = 404,
    /// A record carries a `spool-` header only the server sets.
    ReservedHeader = 405,
    /// In a cluster: an idempotent producer's batch whose sequence numbers
    /// the partition stored before, and which is not one of the producer's
    /// last batches (a batch sent again much later, or two producers with
    /// one id). Not stored.
    OutOfOrderSequence = 406,

    // 5xx: consuming.
    /// The requested offset is before the log start or after its end.
    OffsetOutOfRange = 500,
    /// No consumer group or subscription has this name.
    UnknownGroup = 501,
    /// The member is not (or no longer) part of its group.
    UnknownMember = 502,
    /// The partition is not assigned to this member.
    NotAssigned = 503,
    /// The group already exists with different settings.
    GroupExists = 504,
    /// No subscription has this name.
    UnknownSubscription = 505,
    /// No lease has this receipt.
    UnknownReceipt = 506,
    /// The lease behind this receipt has expired.
    LeaseExpired = 507,
    /// The group still has members; it can be deleted once they left.
    GroupNotEmpty = 508,

    // 6xx: request records.
    /// No request record has this ID.
    UnknownRequest = 600,
    /// The request record has already reached a final state.
    RequestFinished = 601,

    // 9xx: the server.
    /// The disk is full; nothing was written.
    StorageFull = 900,
    /// The storage layer failed to read or write.
    StorageError = 901,
    /// Stored data failed its checksum; it is never served.
    CorruptData = 902,
    /// The server is shutting down and takes no new work.
    ShuttingDown = 903,
    /// The operation did not finish within its deadline.
    Timeout = 904,
    /// The server is at its connection limit.
    TooManyConnections = 905,
    /// The caller exceeded its request rate.
    RateLimited = 906,
    /// In a cluster: this node does not lead the partition (or the
    /// cluster's metadata) asked about; the message names the leader's
    /// address when one is known. Send there, or retry shortly.
    NotLeader = 907,
    /// An unexpected internal error; the server log has details.
    Internal = 999,
}

impl ErrorCode {
    /// Every code, in numeric order. The code-table test checks this list.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownRequestType,
        ErrorCode::TooManyInFlight,
        ErrorCode::HandshakeRequired,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::UnknownTopic,
        ErrorCode::TopicExists,
        ErrorCode::InvalidTopicName,
        ErrorCode::UnknownPartition,
        ErrorCode::ReservedTopicName,
        ErrorCode::InvalidConfig,
        ErrorCode::MessageTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::QueueFull,
        ErrorCode::CorruptBatch,
        ErrorCode::UnsupportedBatch,
        ErrorCode::ReservedHeader,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::UnknownGroup,
        ErrorCode::UnknownMember,
        ErrorCode::NotAssigned,
        ErrorCode::GroupExists,
        ErrorCode::UnknownSubscription,
        ErrorCode::UnknownReceipt,
        ErrorCode::LeaseExpired,
        ErrorCode::GroupNotEmpty,
        ErrorCode::UnknownRequest,
        ErrorCode::RequestFinished,
        ErrorCode::StorageFull,
        ErrorCode::StorageError,
        ErrorCode::CorruptData,
        ErrorCode::ShuttingDown,
        ErrorCode::Timeout,
        ErrorCode::TooManyConnections,
        ErrorCode::RateLimited,
        ErrorCode::NotLeader,
        ErrorCode::Internal,
    ];

    /// The numeric value that crosses the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number, or `None` for a number this build does not know.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == value)
    }

    /// The stable upper-snake-case name, e.g. `QUEUE_FULL`.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "INVALID_REQUEST",
            MalformedFrame => "MALFORMED_FRAME",
            FrameTooLarge => "FRAME_TOO_LARGE",
            UnsupportedVersion => "UNSUPPORTED_VERSION",
            UnknownRequestType => "UNKNOWN_REQUEST_TYPE",
            TooManyInFlight => "TOO_MANY_IN_FLIGHT",
            HandshakeRequired => "HANDSHAKE_REQUIRED",
            Unauthenticated => "UNAUTHENTICATED",
            Forbidden => "FORBIDDEN",
            UnknownTopic => "UNKNOWN_TOPIC",
            TopicExists => "TOPIC_EXISTS",
            InvalidTopicName => "INVALID_TOPIC_NAME",
            UnknownPartition => "UNKNOWN_PARTITION",
            ReservedTopicName => "RESERVED_TOPIC_NAME",
            InvalidConfig => "INVALID_CONFIG",
            MessageTooLarge => "MESSAGE_TOO_LARGE",
            BatchTooLarge => "BATCH_TOO_LARGE",
            QueueFull => "QUEUE_FULL",
            CorruptBatch => "CORRUPT_BATCH",
            UnsupportedBatch => "UNSUPPORTED_BATCH",
            ReservedHeader => "RESERVED_HEADER",
            OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE",
            OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            UnknownGroup => "UNKNOWN_GROUP",
            UnknownMember => "UNKNOWN_MEMBER",
            NotAssigned => "NOT_ASSIGNED",
            GroupExists => "GROUP_EXISTS",
            UnknownSubscription => "UNKNOWN_SUBSCRIPTION",
            UnknownReceipt => "UNKNOWN_RECEIPT",
            LeaseExpired => "LEASE_EXPIRED",
            GroupNotEmpty => "GROUP_NOT_EMPTY",
            UnknownRequest => "UNKNOWN_REQUEST",
            RequestFinished => "REQUEST_FINISHED",
            StorageFull => "STORAGE_FULL",
            StorageError => "STORAGE_ERROR",
            CorruptData => "CORRUPT_DATA",
            ShuttingDown => "SHUTTING_DOWN",
            Timeout => "TIMEOUT",
            TooManyConnections => "TOO_MANY_CONNECTIONS",
            RateLimited => "RATE_LIMITED",
            NotLeader => "NOT_LEADER",
            Internal => "INTERNAL",
        }
    }

    /// The code for a name such as `QUEUE_FULL`.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::QueueFull
                | ErrorCode::StorageFull
                | ErrorCode::Timeout
                | ErrorCode::TooManyInFlight
                | ErrorCode::TooManyConnections
                | ErrorCode::RateLimited
                | ErrorCode::ShuttingDown
                | ErrorCode::NotLeader
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_sorted_unique_and_round_trip() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        let mut previous = 0u16;
        for &code in ErrorCode::ALL {
            assert!(code.as_u16() > previous, "{code} out of order");
            previous = code.as_u16();
            assert!(
                numbers.insert(code.as_u16()),
                "duplicate number {}",
                code.as_u16()
            );
            assert!(names.insert(code.name()), "duplicate name {}", code.name());
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
            assert!(code
                .name()
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(4242), None);
    }

    /// The numbers are a published contract; this pins the ones external
    /// checks and other-language clients rely on.
    #[test]
    fn published_numbers_never_change() {
        assert_eq!(ErrorCode::InvalidRequest.as_u16(), 100);
        assert_eq!(ErrorCode::UnknownTopic.as_u16(), 300);
        assert_eq!(ErrorCode::MessageTooLarge.as_u16(), 400);
        assert_eq!(ErrorCode::QueueFull.as_u16(), 402);
        assert_eq!(ErrorCode::StorageFull.as_u16(), 900);
        assert_eq!(ErrorCode::Internal.as_u16(), 999);
    }
}
