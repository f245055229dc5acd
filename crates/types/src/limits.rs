//! Every limit Spool enforces, in one place, each with the reason for its value.
//! Inputs are checked against these before anything is allocated or written;
//! breaking one yields a typed error, never a panic. The crates that enforce
//! a limit re-export it where callers used to find it (for example
//! `spool_broker::subscription::RECEIVE_MAX`); none defines its own.
//!
//! Not here: tuning constants of an implementation that no input can break
//! (buffer pools, write coalescing, benchmark settings). They sit beside the
//! code they tune.

/// Bytes in the fixed header of a stored record batch (Kafka RecordBatch v2),
/// from `baseOffset` through `recordCount`.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Largest record batch, header included, that the log accepts (8 MiB).
/// Bounds the memory one append pins and the size of one fetch response.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest encoded single record (1 MiB), like Kafka's default
/// `message.max.bytes`. Larger payloads belong in object storage.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// Most records in one batch. Keeps per-batch offset arithmetic within `i32`
/// and bounds decode work per append.
pub const BATCH_RECORDS_MAX: usize = 100_000;

/// Most headers on one record.
pub const RECORD_HEADERS_MAX: usize = 64;

/// Default segment size before the log rolls to a new segment (1 GiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Smallest configurable segment size; small values exist for tests.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// Largest configurable segment size. Index entries store positions as `u32`
/// and the file format keeps them below `i32::MAX` for Kafka parity.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Default distance in bytes between sparse offset-index entries.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// Largest frame on the binary protocol: one maximal batch plus headroom for
/// the request envelope (topic name, key, headers).
pub const FRAME_BYTES_MAX: usize = BATCH_BYTES_MAX + 64 * 1024;

/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;

/// Largest fetch response a consumer may ask for (64 MiB).
pub const FETCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest long-poll wait a fetch may ask for (5 minutes).
pub const FETCH_WAIT_MS_MAX: u64 = 300_000;

/// Most requests a single connection may have in flight before the server
/// stops reading from it (back pressure on that connection alone).
pub const CONNECTION_IN_FLIGHT_MAX: usize = 256;

/// Most bytes a single connection may have in flight: requests read and
/// answers (fetches reserve their `max_bytes`) not yet written. Room for a
/// few maximal frames; more only pins memory for clients that read slowly
/// (the server also drops a client whose writes stall for 10 s).
pub const CONNECTION_IN_FLIGHT_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Default cap on concurrent connections to one server.
pub const CONNECTIONS_MAX_DEFAULT: usize = 16_384;

/// Longest consumer-group or subscription name.
pub const GROUP_NAME_LEN_MAX: usize = 249;

/// Longest client or member identifier.
pub const CLIENT_ID_LEN_MAX: usize = 256;

/// Most topics and patterns one subscriber may name.
pub const SUBSCRIPTION_TOPICS_MAX: usize = 1024;

/// Most push subscriptions (SUBSCRIBE and SUBSCRIBE_QUEUE together) open on
/// one connection. Each holds a task, its cursor or credit and its wake-up
/// registrations, a few KiB even without credit: 20,000 on one connection
/// held 77 MB. A client that needs more opens another connection, which
/// the connection limit counts.
pub const CONNECTION_SUBSCRIPTIONS_MAX: usize = 1024;

// ---- Queues ----------------------------------------------------------------

/// Longest delay a message may ask for (30 days); later times are clamped.
pub const DELAY_MS_MAX: i64 = 30 * 24 * 3600 * 1000;

/// Longest lease an ack timeout or extension may ask for (12 hours).
pub const LEASE_MS_MAX: u64 = 12 * 3600 * 1000;

/// Most messages one receive may lease.
pub const RECEIVE_MAX: usize = 1_000;

/// Longest error text kept from a nack (4 KiB); longer texts are cut at a
/// character boundary. The text travels into the message's lease (and the
/// subscription's state log), its dead-letter copy and its `spool.errors`
/// event: a short limit keeps all of them small, whoever sent it. (A failed
/// request's record keeps a longer error: up to a quarter of
/// `RESULT_BYTES_MAX` characters.)
pub const ERROR_TEXT_BYTES_MAX: usize = 4 * 1024;

/// Largest `push_max_in_flight`.
pub const PUSH_IN_FLIGHT_MAX: u32 = 1_000;

// ---- Topics ----------------------------------------------------------------

/// Longest duplicate-suppression window (1 day).
pub const DEDUP_WINDOW_MS_MAX: u64 = 24 * 3600 * 1000;

// ---- Push ------------------------------------------------------------------

/// Largest single delivery.
pub const PUSH_DELIVERY_BYTES_MAX: usize = 1024 * 1024;

/// Most messages one queue push leases at a time, so one subscriber with
/// plenty of credit does not take a whole backlog away from the others.
pub const QUEUE_PUSH_BATCH_MAX: u32 = 100;

// ---- Requests --------------------------------------------------------------

/// Largest result or error stored on a record (1 MiB).
pub const RESULT_BYTES_MAX: usize = 1024 * 1024;

/// Most callbacks in flight at once.
pub const CALLBACKS_IN_FLIGHT_MAX: usize = 64;

/// Shortest callback secret accepted (bytes): it keys the HMAC-SHA256 that
/// signs callbacks and push deliveries, and a short key can be guessed
/// offline from one signed delivery. (A generated one has 64.)
pub const CALLBACK_SECRET_LEN_MIN: usize = 16;

// ---- HTTP ------------------------------------------------------------------

/// Largest body on the routes that carry messages or results (16 MiB): a
/// batch plus JSON overhead.
pub const HTTP_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest body on every other route (1 MiB): topic and subscription
/// settings, acks of a full receive's receipts, group offsets.
pub const HTTP_CONTROL_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Longest `wait_ms` a receive or status wait may ask for (5 minutes).
pub const HTTP_WAIT_MS_MAX: u64 = 300_000;

// ---- Tokens ----------------------------------------------------------------

/// Longest token name.
pub const TOKEN_NAME_LEN_MAX: usize = 64;

/// Most patterns in one permission list of a token.
pub const TOKEN_PATTERNS_MAX: usize = SUBSCRIPTION_TOPICS_MAX;

/// Peer addresses tracked for failures before stale ones are dropped.
pub const FAILURE_PEERS_MAX: usize = 10_000;

/// Tokens whose request rate is tracked before idle ones are forgotten.
pub const RATE_BUCKETS_MAX: usize = 10_000;

// Relations between limits, checked at compile time.
const _: () = assert!(FRAME_BYTES_MAX > BATCH_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX < BATCH_BYTES_MAX);
const _: () = assert!((BATCH_BYTES_MAX as u64) < SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MIN < SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(FETCH_BYTES_MAX >= BATCH_BYTES_MAX);
const _: () = assert!(CONNECTION_IN_FLIGHT_BYTES_MAX >= 3 * FRAME_BYTES_MAX);
const _: () = assert!(BATCH_RECORDS_MAX < i32::MAX as usize);
const _: () = assert!(ERROR_TEXT_BYTES_MAX <= RESULT_BYTES_MAX);

/// `text` cut to [`ERROR_TEXT_BYTES_MAX`] bytes at a character boundary.
pub fn cut_error_text(text: &str) -> &str {
    // (`str::floor_char_boundary` is newer than the workspace's MSRV.)
    let end = (0..=ERROR_TEXT_BYTES_MAX.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(cut_error_text("short"), "short");
        let long = "é".repeat(ERROR_TEXT_BYTES_MAX); // two bytes each
        let cut = cut_error_text(&long);
        assert_eq!(cut.len(), ERROR_TEXT_BYTES_MAX);
        let odd = format!("x{long}");
        let cut = cut_error_text(&odd);
        assert_eq!(
            cut.len(),
            ERROR_TEXT_BYTES_MAX - 1,
            "never half a character"
        );
    }
}
