//! Producing a record batch and fetching stored ones (ops 20–21).

use bytes::Bytes;

use crate::common::Routing;
use crate::ARRAY_LEN_MAX;

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Produce {
        pub topic: String => string("produce.topic"),
        pub routing: Routing => codec,
        /// One Kafka RecordBatch v2, opaque here (validated by the server);
        /// a slice of the received frame, and, encoded into parts, not
        /// copied into the frame.
        pub batch: Bytes => shared_bytes("produce.batch"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Fetch {
        /// How long to wait for data if none is available (long poll).
        pub max_wait_ms: u32 => u32("fetch.max_wait_ms"),
        /// Cap on the whole response's batch bytes.
        pub max_bytes: u32 => u32("fetch.max_bytes"),
        pub partitions: Vec<FetchPartition> => array("fetch.partitions", ARRAY_LEN_MAX),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FetchPartition {
        pub topic: String => string("fetch.partitions.topic"),
        pub partition: u32 => u32("fetch.partitions.partition"),
        /// First offset wanted.
        pub offset: u64 => u64("fetch.partitions.offset"),
        /// Cap on this partition's batch bytes.
        pub max_bytes: u32 => u32("fetch.partitions.max_bytes"),
    }
}
