//! Folio probe: how the size of the writes that first fill a file's page cache changes the
//! cost of later writes into it (docs/performance-analysis.md, "Folio size").
//!
//! The page cache sizes a new folio by the write that creates it, and ext4 walks every block
//! buffer of a folio in each write into it and each writeback of it. This probe zero-fills one
//! 64 MiB file per fill-write size, fdatasyncs it, then appends records at sequential offsets
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

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILE_BYTES: u64 = 64 << 20;
const ROUND: Duration = Duration::from_millis(400);

/// CPU seconds of this thread (user + system).
fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and keeps no pointer to it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// A new file of `FILE_BYTES` zeros written `fill` bytes at a time, fdatasynced.
fn zero_filled(path: &Path, fill: usize) -> std::io::Result<File> {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; fill];
    let mut at = 0;
    while at < FILE_BYTES {
        let n = (FILE_BYTES - at).min(fill as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    Ok(file)
}

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
    let dir = std::env::var_os("SLOTLOG_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data"),
        PathBuf::from,
    );
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
        let files = fills
            .iter()
            .map(|&fill| zero_filled(&dir.join(format!("fill-{fill}")), fill))
            .collect::<std::io::Result<Vec<_>>>()?;
        let data = vec![7u8; record];
        let mut offsets = vec![0u64; files.len()];
        let mut rates = vec![Vec::new(); files.len()];
        let mut cpus = vec![Vec::new(); files.len()];
        for _ in 0..rounds {
            for (i, file) in files.iter().enumerate() {
                let (start, cpu0) = (Instant::now(), thread_cpu());
                let mut n = 0u64;
                while start.elapsed() < ROUND {
                    if offsets[i] + record as u64 > FILE_BYTES {
                        offsets[i] = 0;
                    }
                    file.write_all_at(&data, offsets[i])?;
                    if sync {
                        file.sync_data()?;
                    }
                    offsets[i] += record as u64;
                    n += 1;
                }
                rates[i].push(n as f64 / start.elapsed().as_secs_f64());
                cpus[i].push((thread_cpu() - cpu0) / n as f64 * 1e6);
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
    for fill in &fills {
        let _ = std::fs::remove_file(dir.join(format!("fill-{fill}")));
    }
    Ok(())
}
