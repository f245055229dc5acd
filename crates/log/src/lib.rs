//! Spool's durable log: segmented, append-only, group-committed storage per partition.
