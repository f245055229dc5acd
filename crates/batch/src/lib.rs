//! Kafka RecordBatch v2: encode, validate and iterate record batches. No I/O.
