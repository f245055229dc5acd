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
