//! Spool's broker: topics, partitions, consumer groups as state machines over the log. No network.
