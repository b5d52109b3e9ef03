//! A load probe for async waits: `TASKS` tokio tasks on a 2-worker runtime, each looping on
//! `Log::append_async` for one second per round, on a log kept at 256 MiB by a checkpointer
//! (`truncate_front` + `recycle_segments(4)`, as the benchmark adapter does for threads).
//! Prints appends/s per round with the log's write and park counters. The thread counterpart
//! is `examples/load`; to compare two commits, build this at both and alternate the binaries.
//!
//! ```text
//! cargo run --release --example task_load -- TASKS SIZE LEVEL     # LEVEL: write or full
//! cargo run --release --example task_load -- 2 4096 write
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotlog::{Durability, Log, Lsn, Options};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let tasks: usize = arg(0, "64").parse().expect("TASKS");
    let size: usize = arg(1, "512").parse().expect("SIZE");
    let level = match arg(2, "full").as_str() {
        "write" => Durability::WriteOnly,
        "full" => Durability::FullSync,
        other => panic!("LEVEL must be write or full, not {other}"),
    };
    let dir = tempfile::tempdir_in(std::env::var_os("SLOTLOG_BENCH_DIR").unwrap_or(".".into()))
        .expect("scratch directory");
    let log = Arc::new(Log::open(dir.path(), Options::default().recycle_segments(4)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // The benchmark's checkpoint interval, not synchronisation.
                std::thread::sleep(Duration::from_millis(20));
                let end = log.end_lsn().unwrap().as_u64();
                let _ = log.truncate_front(Lsn::from_u64(end.saturating_sub(256 << 20)));
            }
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for round in 0..3 {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let before = log.stats();
        // The tasks start appending as they are spawned, so the clock starts first; it stops
        // once every task has returned, so every counted append is inside the window.
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (log, done, count) = (log.clone(), done.clone(), count.clone());
                rt.spawn(async move {
                    let rec = vec![7u8; size];
                    while !done.load(Ordering::Relaxed) {
                        log.append_async(&rec, level).await.unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1)); // the round's length
        done.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
        let elapsed = start.elapsed();
        let after = log.stats();
        let n = count.load(Ordering::Relaxed);
        println!(
            "round {round}: {tasks} tasks, {level:?}, {size} B: {:.0} appends/s, {:.1} records per write, {} fdatasyncs, {} parks",
            n as f64 / elapsed.as_secs_f64(),
            n as f64 / (after.writes - before.writes).max(1) as f64,
            after.fdatasyncs - before.fdatasyncs,
            after.parks - before.parks
        );
    }
    stop.store(true, Ordering::Relaxed);
    checkpointer.join().unwrap();
}
