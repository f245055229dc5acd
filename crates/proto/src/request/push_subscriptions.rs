//! Push subscriptions to topics and the credit that paces them (ops 40–42).

use spool_types::limits::SUBSCRIPTION_TOPICS_MAX;

use crate::common::SubscribeStart;

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Subscribe {
        /// Chosen by the client, unique on the connection; pushes carry it.
        pub subscription_id: u32 => u32("subscribe.subscription_id"),
        /// Topic names or wildcard patterns.
        pub topics: Vec<String> => string_array("subscribe.topics", SUBSCRIPTION_TOPICS_MAX),
        /// Consumer group whose committed offsets to start from, if any.
        pub group: Option<String> => opt_string("subscribe.group"),
        pub start: SubscribeStart => codec,
        /// Initial message credit.
        pub credit_messages: u32 => u32("subscribe.credit_messages"),
        /// Initial byte credit.
        pub credit_bytes: u32 => u32("subscribe.credit_bytes"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Credit {
        pub subscription_id: u32 => u32("credit.subscription_id"),
        /// Added to the subscription's message credit.
        pub messages: u32 => u32("credit.messages"),
        /// Added to the subscription's byte credit.
        pub bytes: u32 => u32("credit.bytes"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Unsubscribe {
        pub subscription_id: u32 => u32("unsubscribe.subscription_id"),
    }
}
