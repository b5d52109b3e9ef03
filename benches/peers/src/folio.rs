//! Folio probe: how the size of the writes that first fill a file's page cache changes the
//! cost of later writes into it (docs/performance-analysis.md, "Folio size").
//!
//! The page cache sizes a new folio by the write that creates it, and ext4 walks every block
//! buffer of a folio in each write into it and each writeback of it. This probe zero-fills one
//! 64 MiB file per fill-write size (`PreFile`, as the benchmarks' baselines), syncs it, then appends records at sequential offsets
//! to each file in turn (rounds alternate between the files, so they share the machine's
//! noise) and prints the median appends/s and CPU µs per append of each.
//!
//! ```text
//! cd benches/peers
//! cargo run --release --bin folio -- [RECORDS] [FILLS] [sync|nosync] [ROUNDS]
//! cargo run --release --bin folio -- 528,16384,32768 4096,16384,65536,1048576 sync 8
//! ```
//!
//! `sync` fdatasyncs after every append (slotlog's FullSync at one thread); `nosync` only
//! writes into the page cache (the file wraps around, so it stays cached). The files go under
//! `SLOTLOG_BENCH_DIR` (default `target/bench-data` of the repository).

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../../common/mod.rs"]
mod common;

use common::PreFile;

const FILE_BYTES: u64 = 64 << 20;
const ROUND: Duration = Duration::from_millis(400);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(arg: Option<String>, default: &str) -> Vec<usize> {
    arg.unwrap_or_else(|| default.into())
        .split(',')
        .map(|s| s.parse().expect("a comma list of byte counts"))
        .collect()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records = list(args.next(), "528,16384,32768");
    let fills = list(args.next(), "4096,16384,65536,1048576");
    let sync = match args.next().as_deref() {
        None | Some("sync") => true,
        Some("nosync") => false,
        Some(other) => panic!("sync or nosync, not {other}"),
    };
    let rounds: usize = args.next().map_or(8, |r| r.parse().expect("ROUNDS"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = common::bench_dir(&repo);
    let dir = dir.join("folio");
    std::fs::create_dir_all(&dir)?;
    println!(
        "| record | {} |",
        fills
            .iter()
            .map(|f| format!("filled in {} KiB writes", f >> 10))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---:|{}", "---:|".repeat(fills.len()));
    for &record in &records {
        // A new file per row (`PreFile` makes each path anew once per process).
        let path = |fill: usize| dir.join(format!("record-{record}-fill-{fill}"));
        let files = fills
            .iter()
            .map(|&fill| PreFile::create(&path(fill), FILE_BYTES, fill))
            .collect::<std::io::Result<Vec<_>>>()?;
        let data = vec![7u8; record];
        let mut offsets = vec![0u64; files.len()];
        let mut rates = vec![Vec::new(); files.len()];
        let mut cpus = vec![Vec::new(); files.len()];
        for _ in 0..rounds {
            for (i, file) in files.iter().enumerate() {
                let (start, cpu0) = (Instant::now(), common::cpu_seconds());
                let mut n = 0u64;
                while start.elapsed() < ROUND {
                    // Wraps around at the end of the file.
                    file.write_at(offsets[i], &[&data])?;
                    if sync {
                        file.sync()?;
                    }
                    offsets[i] += record as u64;
                    n += 1;
                }
                rates[i].push(n as f64 / start.elapsed().as_secs_f64());
                cpus[i].push((common::cpu_seconds() - cpu0) / n as f64 * 1e6);
            }
        }
        let cells: Vec<String> = (0..files.len())
            .map(|i| {
                format!(
                    "{:.0}/s, {:.1} CPU-µs",
                    median(&mut rates[i]),
                    median(&mut cpus[i])
                )
            })
            .collect();
        println!("| {record} B | {} |", cells.join(" | "));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
