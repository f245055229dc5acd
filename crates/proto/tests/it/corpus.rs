//! Keeps the fuzz seed corpus (`fuzz/corpus/decode_frame/`) in step with the
//! encoder: each committed seed must equal what the encoder writes today.
//! Run with `SPOOL_REGEN_CORPUS=1` to rewrite the seeds after a deliberate
//! wire change.

use crate::support;
use std::path::PathBuf;

#[test]
fn seed_corpus_matches_the_encoder() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode_frame");
    let regenerate = std::env::var_os("SPOOL_REGEN_CORPUS").is_some();
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, frame) in support::sample_frames() {
        let path = dir.join(format!("{name}.bin"));
        if regenerate {
            std::fs::write(&path, &frame).unwrap();
        } else {
            let seed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; run with SPOOL_REGEN_CORPUS=1", path.display())
            });
            assert_eq!(
                seed, frame,
                "{name} is stale; run with SPOOL_REGEN_CORPUS=1"
            );
        }
    }
}
