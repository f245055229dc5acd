//! Topic administration (ops 10–14).

use crate::common::TopicConfig;

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CreateTopic {
        pub name: String => string("create_topic.name"),
        pub partitions: u32 => u32("create_topic.partitions"),
        pub config: TopicConfig => codec,
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DeleteTopic {
        pub name: String => string("delete_topic.name"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ListTopics {
        /// A topic pattern (`orders.*`); `None` lists every topic.
        pub pattern: Option<String> => opt_string("list_topics.pattern"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DescribeTopic {
        pub name: String => string("describe_topic.name"),
    }
}

wire_struct! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AlterTopic {
        pub name: String => string("alter_topic.name"),
        /// Only the present fields change.
        pub config: TopicConfig => codec,
    }
}
