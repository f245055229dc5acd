//! Asynchronous requests and their records (ops 60–63).

use bytes::Bytes;

wire_struct! {
    /// Hands in an asynchronous request: its payload goes on the request
    /// queue `queue` (created on first use, with a `workers` queue
    /// subscription) and a record tracks it. Answered at once with the
    /// request's ID.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SubmitRequest {
        pub queue: String => string("submit_request.queue"),
        /// The bytes a worker receives, unchanged.
        pub payload: Bytes => bytes("submit_request.payload"),
        /// The payload is JSON text (workers see `spool-content-type:
        /// application/json`).
        pub json: bool => bool("submit_request.json"),
        /// Where the final record is POSTed, if anywhere.
        pub callback_url: Option<String> => opt_string("submit_request.callback_url"),
    }
}

wire_struct! {
    /// Reads a request record, optionally waiting for it to finish.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GetRequest {
        pub id: String => string("get_request.id"),
        /// 0 answers at once; otherwise the answer waits until the record
        /// is final or this long has passed.
        pub wait_ms: u32 => u32("get_request.wait_ms"),
    }
}

wire_struct! {
    /// A worker finished a request: its result is stored and its message
    /// acknowledged.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CompleteRequest {
        pub id: String => string("complete_request.id"),
        /// The result as JSON text. A `text` field (u32 length), since
        /// results may be far larger than a `string`'s 64 KiB.
        pub result_json: String => text("complete_request.result_json"),
    }
}

wire_struct! {
    /// A worker failed a request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FailRequest {
        pub id: String => string("fail_request.id"),
        /// Why; a `text` field like [`CompleteRequest::result_json`].
        pub error: String => text("fail_request.error"),
        /// Try again (with the queue's backoff, up to its max deliveries)
        /// rather than fail for good.
        pub retry: bool => bool("fail_request.retry"),
    }
}
