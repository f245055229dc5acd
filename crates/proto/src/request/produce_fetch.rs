//! Producing a record batch and fetching stored ones (ops 20–21).

use bytes::Bytes;

use super::Body;
use crate::common::Routing;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Codec, Reader, Writer};
use crate::ARRAY_LEN_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    pub topic: String,
    pub routing: Routing,
    /// One Kafka RecordBatch v2, opaque here (validated by the server).
    pub batch: Bytes,
}

impl Body for Produce {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("produce.topic", &self.topic)?;
        self.routing.encode(w)?;
        w.shared_bytes("produce.batch", &self.batch)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Produce {
            topic: r.string("produce.topic")?,
            routing: Routing::decode(r)?,
            batch: r.bytes("produce.batch")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// How long to wait for data if none is available (long poll).
    pub max_wait_ms: u32,
    /// Cap on the whole response's batch bytes.
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

impl Body for Fetch {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.max_wait_ms);
        w.u32(self.max_bytes);
        w.array("fetch.partitions", &self.partitions, ARRAY_LEN_MAX)
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Fetch {
            max_wait_ms: r.u32("fetch.max_wait_ms")?,
            max_bytes: r.u32("fetch.max_bytes")?,
            partitions: r.array("fetch.partitions", ARRAY_LEN_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Cap on this partition's batch bytes.
    pub max_bytes: u32,
}

impl Codec for FetchPartition {
    const MIN_BYTES: usize = 2 + 4 + 8 + 4;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string("fetch.partitions.topic", &self.topic)?;
        w.u32(self.partition);
        w.u64(self.offset);
        w.u32(self.max_bytes);
        Ok(())
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchPartition {
            topic: r.string("fetch.partitions.topic")?,
            partition: r.u32("fetch.partitions.partition")?,
            offset: r.u64("fetch.partitions.offset")?,
            max_bytes: r.u32("fetch.partitions.max_bytes")?,
        })
    }
}
