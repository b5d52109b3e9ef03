//! `cargo bench`: append throughput of slotlog and the four in-process baselines (see
//! `benches/common/mod.rs`) over threads x record sizes x durability levels.
//!
//! One criterion iteration is one append; the iterations of a sample are split over the
//! threads, which are spawned and parked at a start gate before the clock starts, so the reported
//! elements/s is appends per second across all threads (bytes/s = elements/s x record size).
//! Points with more threads than cores are labelled `oversubscribed`.
//!
//! Environment:
//! - `SLOTLOG_BENCH_QUICK=1`: threads {1, 2, 8, 64} x sizes {128 B, 1 KiB}, fewer samples.
//! - `SLOTLOG_BENCH_SYSTEMS=slotlog,b4`: only systems whose name contains one of these.
//! - `SLOTLOG_BENCH_DIR`: scratch directory (default `target/bench-data`; must be a real disk).
//!
//! The full comparison with crates.io WALs, latency percentiles and charts is
//! `benches/run-report.sh` (it writes `docs/performance.md`).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "common/mod.rs"]
mod common;

use common::{level_name, Durability, Wal, LEVELS};

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("SLOTLOG_BENCH_QUICK").is_some();
    let threads: &[usize] = if quick {
        &[1, 2, 8, 64]
    } else {
        &[1, 2, 4, 8, 16, 32, 64, 128]
    };
    let sizes: &[usize] = if quick {
        &[128, 1024]
    } else {
        &[64, 128, 1024, 16 << 10]
    };
    let filter: Option<Vec<String>> = std::env::var("SLOTLOG_BENCH_SYSTEMS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let root =
        common::bench_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).join("criterion");
    std::fs::create_dir_all(&root).expect("bench dir");
    let slotlog: Arc<dyn Wal> = Arc::new(
        common::Slotlog::open(&root.join("slotlog"), Durability::FullSync).expect("open slotlog"),
    );
    let mut systems = vec![slotlog];
    systems.extend(common::baselines(&root).expect("open baselines"));
    systems.retain(|s| {
        filter
            .as_ref()
            .map_or(true, |f| f.iter().any(|x| s.name().contains(x.as_str())))
    });
    let cores = common::cores();

    for &level in &LEVELS {
        for &size in sizes {
            let mut g = c.benchmark_group(format!("append/{}/{}B", level_name(level), size));
            g.throughput(Throughput::Elements(1));
            g.sample_size(10);
            g.warm_up_time(Duration::from_millis(if quick { 200 } else { 500 }));
            g.measurement_time(Duration::from_millis(if quick { 1000 } else { 2000 }));
            for wal in &systems {
                for &t in threads {
                    let label = if t > cores {
                        format!("{t}thr-oversubscribed")
                    } else {
                        format!("{t}thr")
                    };
                    g.bench_with_input(BenchmarkId::new(wal.name(), label), &t, |b, &t| {
                        b.iter_custom(|iters| {
                            // At least one append per thread; scale back to `iters`.
                            let n = iters.max(t as u64);
                            common::run_count(wal, t, size, level, n)
                                .mul_f64(iters as f64 / n as f64)
                        })
                    });
                    wal.reset();
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
