//! CLUSTER_STATUS's answer (op 80): a cluster node's view of its cluster.

use crate::ARRAY_LEN_MAX;

wire_struct! {
    /// A node as the answering node knows it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClusterNode {
        pub id: u64 => u64("cluster_node.id"),
        /// Its binary protocol listener; empty until it announced itself.
        pub client_addr: String => string("cluster_node.client_addr"),
        pub http_addr: Option<String> => opt_string("cluster_node.http_addr"),
        pub cluster_addr: String => string("cluster_node.cluster_addr"),
        /// Whether the answering node heard from it lately: 1 yes, 0 no,
        /// absent when it cannot tell (only the metadata leader can).
        pub alive: Option<u32> => opt("cluster_node.alive"),
    }
}

wire_struct! {
    /// A partition of a replicated topic as the answering node knows it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClusterPartition {
        pub topic: String => string("cluster_partition.topic"),
        pub partition: u32 => u32("cluster_partition.partition"),
        /// Its replicas; the first is the preferred leader.
        pub replicas: Vec<u64> => array("cluster_partition.replicas", ARRAY_LEN_MAX),
        /// Whether the answering node holds a replica: only then are the
        /// fields below known.
        pub hosted: bool => bool("cluster_partition.hosted"),
        pub leader: Option<u64> => opt_u64("cluster_partition.leader"),
        pub term: u64 => u64("cluster_partition.term"),
        /// Replicas that acknowledged the leader lately; only the leader
        /// knows (empty elsewhere).
        pub in_sync: Vec<u64> => array("cluster_partition.in_sync", ARRAY_LEN_MAX),
        /// The entries committed (`committed` is the last one's index).
        pub committed: Option<u64> => opt_u64("cluster_partition.committed"),
    }
}

wire_struct! {
    /// CLUSTER_STATUS: the answering node's view. Clients ask every node
    /// and believe each partition's leader about that partition.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClusterStatus {
        pub node_id: u64 => u64("cluster_status.node_id"),
        pub meta_leader: Option<u64> => opt_u64("cluster_status.meta_leader"),
        pub nodes: Vec<ClusterNode> => array("cluster_status.nodes", ARRAY_LEN_MAX),
        pub partitions: Vec<ClusterPartition> =>
            array("cluster_status.partitions", ARRAY_LEN_MAX),
        /// The metadata group's in-sync voters, as `in_sync` of a
        /// partition; only its leader knows (empty elsewhere).
        pub meta_in_sync: Vec<u64> => array("cluster_status.meta_in_sync", ARRAY_LEN_MAX),
    }
}
