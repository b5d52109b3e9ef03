//! The main job: append from several threads at each durability level, then NoSync batches each
//! made durable by one `Log::wait`, then FullSync from 1,000 tokio tasks (`append_async`);
//! close, reopen, recover, verify every record, and print throughput.
//!
//! ```text
//! cargo run --release --example demo [-- THREADS]
//! ```
//!
//! It works in a fresh temporary directory on the same disk as the system temp directory (set
//! `TMPDIR` to move it), which it removes at the end.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use slotlog::{Durability, Log, Lsn, Options};

const RECORD: usize = 128;

/// A record that says who wrote it: thread, sequence number, and a filler derived from both.
fn record(thread: u32, seq: u32) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..4].copy_from_slice(&thread.to_le_bytes());
    r[4..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in r[8..].iter_mut().enumerate() {
        *b = (thread as usize * 31 + seq as usize * 7 + i) as u8;
    }
    r
}

/// `threads` threads each appending `per_thread` records at `level`; with `wait_every = n`,
/// `NoSync` records of which every n-th (and the last) is made durable by `Log::wait`.
fn run(
    log: &Arc<Log>,
    threads: u32,
    per_thread: u32,
    level: Durability,
    wait_every: Option<u32>,
) -> (Duration, Vec<Vec<Lsn>>) {
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, barrier) = (log.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let lsns = (0..per_thread)
                    .map(|i| {
                        let lsn = log.append(&record(t, i), level).expect("append");
                        if wait_every.is_some_and(|n| (i + 1) % n == 0 || i + 1 == per_thread) {
                            log.wait(lsn, Durability::FullSync).expect("wait");
                        }
                        lsn
                    })
                    .collect::<Vec<_>>();
                (start, Instant::now(), lsns)
            })
        })
        .collect();
    barrier.wait();
    // The threads read the clock themselves: this thread, which released them, may not run
    // again for a while on a small machine.
    let runs: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let start = runs.iter().map(|r| r.0).min().expect("a thread");
    let end = runs.iter().map(|r| r.1).max().expect("a thread");
    (end - start, runs.into_iter().map(|r| r.2).collect())
}

/// `tasks` tokio tasks on a 2-worker runtime, each appending `per_task` FullSync records with
/// `append_async`; task `k` writes `record(k % threads, i)`.
fn run_tasks(log: &Arc<Log>, tasks: u32, per_task: u32, threads: u32) -> (Duration, Vec<Vec<Lsn>>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|k| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut lsns = Vec::new();
                    for i in 0..per_task {
                        let r = record(k % threads, i);
                        lsns.push(
                            log.append_async(&r, Durability::FullSync)
                                .await
                                .expect("append"),
                        );
                    }
                    lsns
                })
            })
            .collect();
        let mut lsns = Vec::new();
        for h in handles {
            lsns.push(h.await.expect("task"));
        }
        (start.elapsed(), lsns)
    })
}

fn main() -> slotlog::Result<()> {
    let threads: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    println!(
        "slotlog demo: {threads} threads, {RECORD}-byte records, log in {}",
        path.display()
    );

    let log = Arc::new(Log::open(&path, Options::default())?);
    // (level, records per thread, a FullSync wait after every n-th NoSync record)
    const BATCH: u32 = 100;
    let plan = [
        (Durability::NoSync, 250_000, None),
        (Durability::WriteOnly, 25_000, None),
        (Durability::FullSync, 1_000, None),
        (Durability::NoSync, 20_000, Some(BATCH)),
    ];
    const TASKS: u32 = 1_000;
    const PER_TASK: u32 = 20;
    let mut written: Vec<(Lsn, u32, u32)> = Vec::new();
    let mut thread_base = 0;
    println!(
        "{:<28} {:>10} {:>14} {:>10} {:>16} {:>14}",
        "level", "appends", "appends/s", "MB/s", "records/write", "records/sync"
    );
    for (row, (level, per_thread, wait_every)) in plan
        .into_iter()
        .chain([(Durability::FullSync, PER_TASK, None)])
        .enumerate()
    {
        let tasks = row == plan.len();
        let before = log.stats();
        let (elapsed, lsns) = if tasks {
            run_tasks(&log, TASKS, per_thread, threads)
        } else {
            run(&log, threads, per_thread, level, wait_every)
        };
        let after = log.stats();
        for (t, l) in lsns.iter().enumerate() {
            for (i, lsn) in l.iter().enumerate() {
                written.push((*lsn, thread_base + t as u32, i as u32));
            }
        }
        // A multiple of `threads`, so that `id % threads` names the record's writer below.
        thread_base += (lsns.len() as u32).div_ceil(threads) * threads;
        let n: f64 = lsns.iter().map(|l| l.len() as f64).sum();
        let writes = (after.writes - before.writes).max(1) as f64;
        let syncs = after.fdatasyncs - before.fdatasyncs;
        println!(
            "{:<28} {:>10} {:>14.0} {:>10.1} {:>16.1} {:>14}",
            match (tasks, wait_every) {
                (true, _) => format!("{level:?} ({TASKS} tokio tasks)"),
                (false, Some(n)) => format!("{level:?}, wait(FullSync)/{n}"),
                (false, None) => format!("{level:?}"),
            },
            n as u64,
            n / elapsed.as_secs_f64(),
            n * RECORD as f64 / elapsed.as_secs_f64() / 1e6,
            n / writes,
            if syncs == 0 || (level != Durability::FullSync && wait_every.is_none()) {
                "-".to_string()
            } else {
                format!("{:.1}", n / syncs as f64)
            },
        );
    }
    let stats = log.stats();
    Arc::try_unwrap(log).expect("no other handles").close()?;

    // Reopen: recovery scans and verifies every frame.
    let start = Instant::now();
    let log = Log::open(&path, Options::default())?;
    let opened = start.elapsed();
    let start = Instant::now();
    written.sort();
    let mut count = 0usize;
    for (rec, expect) in log.iter(Lsn::ZERO)?.zip(&written) {
        let rec = rec?;
        let (lsn, t, i) = *expect;
        let t = t % threads;
        assert_eq!(rec.lsn(), lsn, "record order");
        assert_eq!(rec.data(), &record(t, i)[..], "record content at {lsn}");
        count += 1;
    }
    assert_eq!(count, written.len(), "every record is back");
    println!(
        "recovered {count} records: open {:.1} ms, read + verify {:.1} ms ({:.0} records/s); \
         CAS retries {}, parks {}, slots closed {}, segments created {}",
        opened.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3,
        count as f64 / start.elapsed().as_secs_f64(),
        stats.cas_retries,
        stats.parks,
        stats.slots_closed,
        stats.segments_created,
    );
    log.close()?;
    Ok(())
}
