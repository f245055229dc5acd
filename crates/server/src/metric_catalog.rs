//! What `/metrics` says about each metric (its `# HELP` line), and the
//! counters that exist at zero from the start: a counter that appears
//! only with its first event cannot be told apart from one that is not
//! exported, and `rate()` over it misses that first event. The table of
//! names, labels and meanings is `docs/metrics.md`; keep them together.

use crate::admission::{Listener, Refusal};
use crate::connection::CloseReason;
use metrics::{describe_counter, describe_gauge, describe_histogram};

/// Every metric's description, for the `# HELP` lines. Called once, when
/// the recorder is installed.
pub(crate) fn describe() {
    describe_storage();
    describe_consumers();
    describe_connections();
    describe_requests();
    describe_cluster();
}

/// A cluster node's partition replicas (`cluster/observe.rs`); absent on
/// a single node.
fn describe_cluster() {
    describe_gauge!(
        "spool_cluster_partition_leader",
        "The node leading a partition hosted here, as this replica knows it (0: none known)."
    );
    describe_gauge!(
        "spool_cluster_partition_term",
        "The Raft term of a partition hosted here."
    );
    describe_gauge!(
        "spool_cluster_follower_lag_entries",
        "On a partition's leader: the log entries a follower does not hold yet (0 on other nodes)."
    );
    describe_gauge!(
        "spool_cluster_under_replicated_partitions",
        "Partitions this node leads with fewer replicas in sync than placed."
    );
    describe_counter!(
        "spool_cluster_leader_changes_total",
        "Leader changes of a partition hosted here, as this replica saw them."
    );
}

fn describe_storage() {
    describe_gauge!(
        "spool_topic_messages",
        "Retained messages of a topic (its depth), over all partitions."
    );
    describe_gauge!(
        "spool_topic_bytes",
        "Retained batch bytes of a topic, over all partitions."
    );
    describe_gauge!(
        "spool_partition_messages",
        "Retained messages of one partition."
    );
    describe_gauge!("spool_partition_bytes", "Retained bytes of one partition.");
    describe_gauge!(
        "spool_topic_warn_depth",
        "A topic's warn_depth setting (only topics that set one)."
    );
    describe_gauge!(
        "spool_topic_over_warn_depth",
        "1 while a topic holds more messages than its warn_depth, else 0."
    );
    describe_gauge!(
        "spool_partition_start_offset",
        "A partition's log start offset (low-water mark)."
    );
    describe_gauge!(
        "spool_partition_end_offset",
        "A partition's log end offset: the next offset to be written."
    );
    describe_counter!(
        "spool_messages_published_total",
        "Messages acknowledged to producers."
    );
    describe_counter!(
        "spool_queue_full_rejections_total",
        "Produces refused with QUEUE_FULL."
    );
    describe_histogram!(
        "spool_fsync_duration_seconds",
        "Each fdatasync on a log's append path, in seconds."
    );
}

fn describe_consumers() {
    describe_gauge!(
        "spool_group_lag_messages",
        "End offset minus committed offset of a consumer group, per partition."
    );
    describe_gauge!(
        "spool_group_committed_offset",
        "A consumer group's committed offset, per partition."
    );
    describe_gauge!(
        "spool_queue_lag_messages",
        "A queue subscription's backlog: from its oldest message not done to the end."
    );
    describe_gauge!(
        "spool_queue_outstanding_messages",
        "Messages of a queue subscription admitted from the log and not done."
    );
    describe_gauge!(
        "spool_queue_leases_in_flight",
        "Messages of a queue subscription leased to workers now."
    );
    describe_counter!(
        "spool_queue_redeliveries_total",
        "Deliveries beyond a message's first, since the server started."
    );
    describe_counter!(
        "spool_queue_dead_letters_total",
        "Messages dead-lettered, since the server started."
    );
    describe_counter!(
        "spool_push_deliveries_total",
        "HTTP push-endpoint deliveries, by result."
    );
}

fn describe_connections() {
    describe_gauge!("spool_connections", "Connections open now, per listener.");
    describe_counter!(
        "spool_connections_accepted_total",
        "Connections admitted, per listener."
    );
    describe_counter!(
        "spool_connections_refused_total",
        "Connections refused at a connection limit, per listener and limit."
    );
    describe_counter!(
        "spool_connections_closed_total",
        "Connections the server closed because of what the client did, by reason."
    );
    describe_counter!(
        "spool_connections_shed_total",
        "Connections reset unserved because the server was out of file descriptors."
    );
    describe_counter!(
        "spool_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out, per listener."
    );
    describe_counter!(
        "spool_rate_limited_total",
        "Requests refused with RATE_LIMITED, per token."
    );
}

fn describe_requests() {
    describe_histogram!(
        "spool_request_duration_seconds",
        "Time from reading a request to writing its answer, in seconds."
    );
    describe_gauge!("spool_requests", "Request records by state.");
    describe_counter!(
        "spool_callbacks_total",
        "Request callback attempts, by how they ended."
    );
}

/// Registers at zero the counters whose labels are known in advance (and
/// the open-connections gauge), so they are exported before their first
/// event. Never resets one that has counted (an increment by zero).
pub(crate) fn register_zero_counters() {
    for listener in Listener::ALL {
        let kind = listener.label();
        for refusal in Refusal::ALL {
            metrics::counter!(
                "spool_connections_refused_total",
                "listener" => kind,
                "reason" => refusal.label()
            )
            .increment(0);
        }
        metrics::counter!("spool_connections_accepted_total", "listener" => kind).increment(0);
        metrics::counter!("spool_connections_shed_total", "listener" => kind).increment(0);
        metrics::counter!("spool_tls_handshake_failures_total", "listener" => kind).increment(0);
        // A gauge too: no connection yet is 0 open, not "unknown".
        metrics::gauge!("spool_connections", "listener" => kind).increment(0.0);
    }
    for reason in CloseReason::ALL {
        metrics::counter!("spool_connections_closed_total", "reason" => reason.label())
            .increment(0);
    }
}
