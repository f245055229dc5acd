//! The Spool binary protocol codec: frames, requests, responses. No I/O.
