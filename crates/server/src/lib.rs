//! Spool's network front ends: the binary protocol over TCP.
