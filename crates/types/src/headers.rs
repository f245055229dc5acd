//! Record header names Spool gives a meaning to, in one place and one
//! spelling. Producers set some (message IDs, delivery times), the server
//! sets others (request IDs, dead-letter provenance); clients read them all.
//! Names are lower case and begin `spool-`; headers beginning `spool-dlq-`
//! are the server's own and are dropped when a message is redriven.

/// A producer's message ID: within the topic's dedup window a second
/// message with the same ID is not stored again (its first copy's place is
/// answered).
pub const MESSAGE_ID_HEADER: &str = "spool-msg-id";
/// When a queue message may first be delivered: milliseconds since the Unix
/// epoch, ASCII decimal.
pub const DELIVER_AT_HEADER: &str = "spool-deliver-at";
/// The request record a request queue's message belongs to (its ID).
pub const REQUEST_ID_HEADER: &str = "spool-request-id";
/// Set to `application/json` when a request's payload is JSON.
pub const CONTENT_TYPE_HEADER: &str = "spool-content-type";

/// Every header name beginning this belongs to Spool. Clients may set only
/// the ones in [`CLIENT_SET_HEADERS`]; a produced record with any other is
/// refused (`RESERVED_HEADER`): a forged `spool-request-id` would take over
/// another client's request record, a forged `spool-dlq-…` would pass for a
/// dead letter.
pub const RESERVED_HEADER_PREFIX: &str = "spool-";

/// The `spool-` headers a producer may set.
pub const CLIENT_SET_HEADERS: &[&str] = &[MESSAGE_ID_HEADER, DELIVER_AT_HEADER];

/// Whether only the server may set a header of this name (compared without
/// regard to case, so `Spool-Request-Id` is refused too).
pub fn is_server_only(name: &str) -> bool {
    let reserved = name
        .get(..RESERVED_HEADER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_HEADER_PREFIX));
    reserved && !CLIENT_SET_HEADERS.contains(&name)
}

/// The prefix of the headers a dead-lettered copy carries.
pub const DLQ_HEADER_PREFIX: &str = "spool-dlq-";
/// The topic a dead letter came from.
pub const DLQ_TOPIC_HEADER: &str = "spool-dlq-topic";
/// The queue subscription that gave up on it.
pub const DLQ_SUBSCRIPTION_HEADER: &str = "spool-dlq-subscription";
/// Its partition in the original topic.
pub const DLQ_PARTITION_HEADER: &str = "spool-dlq-partition";
/// Its offset in that partition.
pub const DLQ_OFFSET_HEADER: &str = "spool-dlq-offset";
/// How many times it was delivered.
pub const DLQ_DELIVERIES_HEADER: &str = "spool-dlq-deliveries";
/// The last error a worker gave when it nacked it.
pub const DLQ_ERROR_HEADER: &str = "spool-dlq-error";

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_server_sets_spool_headers_but_two() {
        assert!(!super::is_server_only(super::MESSAGE_ID_HEADER));
        assert!(!super::is_server_only(super::DELIVER_AT_HEADER));
        assert!(!super::is_server_only("trace-id"));
        assert!(!super::is_server_only("spool"));
        assert!(super::is_server_only(super::REQUEST_ID_HEADER));
        assert!(super::is_server_only(super::DLQ_ERROR_HEADER));
        assert!(super::is_server_only("Spool-Request-Id"));
        assert!(
            super::is_server_only("SPOOL-MSG-ID"),
            "only the exact names are the client's"
        );
        assert!(
            !super::is_server_only("é"),
            "no panic on a short multi-byte name"
        );
    }

    use super::*;

    #[test]
    fn dead_letter_headers_share_the_prefix_redrive_drops() {
        for h in [
            DLQ_TOPIC_HEADER,
            DLQ_SUBSCRIPTION_HEADER,
            DLQ_PARTITION_HEADER,
            DLQ_OFFSET_HEADER,
            DLQ_DELIVERIES_HEADER,
            DLQ_ERROR_HEADER,
        ] {
            assert!(h.starts_with(DLQ_HEADER_PREFIX), "{h}");
        }
    }
}
