//! The disk's sequential write bandwidth, for the target "durable publish
//! of 1 KiB ≥ 50 % of it": a new file written with 1 MiB `write`s and one
//! `fdatasync` at the end, timed to the end of that sync (what `dd bs=1M
//! conv=fdatasync` reports).

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Three rounds of `mib` MiB; the median is the result.
pub fn measure(dir: &Path, mib: usize) -> anyhow::Result<Value> {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        rounds.push(round_once(dir, mib)?);
    }
    let mut sorted = rounds.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "workload": "disk",
        "bytes": mib << 20,
        "mb_per_s": crate::common::round(sorted[1], 1),
        "rounds_mb_per_s": rounds.iter().map(|r| crate::common::round(*r, 1)).collect::<Vec<_>>(),
    }))
}

/// MB/s of one round.
fn round_once(dir: &Path, mib: usize) -> anyhow::Result<f64> {
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
    Ok((mib << 20) as f64 / elapsed / 1e6)
}
