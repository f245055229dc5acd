//! The disk's sequential write bandwidth, for the target "durable publish
//! of 1 KiB ≥ 50 % of it": a new file written with 1 MiB `write`s and one
//! `fdatasync` at the end, timed to the end of that sync (what `dd bs=1M
//! conv=fdatasync` reports).

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub fn measure(dir: &Path, mib: usize) -> anyhow::Result<Value> {
    let path = dir.join("spool-compare-disk.tmp");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let bytes = (mib as f64) * (1 << 20) as f64;
    Ok(json!({
        "workload": "disk",
        "bytes": bytes as u64,
        "seconds": crate::common::round(elapsed, 4),
        "mb_per_s": crate::common::round(bytes / elapsed / 1e6, 1),
    }))
}
