//! The MuopDB scenario as MuopDB itself runs it: 1,000 tokio tasks on a 2-worker runtime each
//! append one 561-byte record with FullSync. slotlog awaits `Log::append_async`; a blocking WAL
//! (b4 write groups) is called the way a tokio service calls one, through `spawn_blocking`
//! (tokio's blocking pool, up to 512 threads). Timed from the first spawn until the last task
//! finished; "harness only" spawns and joins the same tasks around a no-op.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, Durability, Wal};

const TASKS: usize = 1000;
const RECORD: usize = 561;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

/// Spawns `TASKS` tasks made by `task` on a fresh runtime and times them from the first spawn
/// until the last one finished.
fn time_tasks<F>(task: impl Fn() -> F) -> Duration
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = runtime();
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS).map(|_| tokio::spawn(task())).collect();
        for t in tasks {
            t.await.expect("task");
        }
        start.elapsed()
    })
}

/// slotlog: each task awaits `append_async`.
pub fn slotlog(log: &Arc<slotlog::Log>) -> Duration {
    let rec: Arc<[u8]> = common::record_bytes(RECORD, 1).into();
    time_tasks(|| {
        let (log, rec) = (log.clone(), rec.clone());
        async move {
            log.append_async(&rec, Durability::FullSync)
                .await
                .expect("append_async");
        }
    })
}

/// A blocking WAL called from tasks through `spawn_blocking`.
pub fn blocking(wal: &Arc<dyn Wal>) -> Duration {
    let rec: Arc<[u8]> = common::record_bytes(RECORD, 1).into();
    time_tasks(|| {
        let (wal, rec) = (wal.clone(), rec.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                wal.append(&rec, Durability::FullSync).expect("append")
            })
            .await
            .expect("blocking task");
        }
    })
}

/// The same tasks around a no-op: what spawning and joining 1,000 tasks costs.
pub fn harness() -> Duration {
    time_tasks(|| async { std::hint::black_box(()) })
}

/// FullSync appends/s and CPU by `tasks` tokio tasks on 2 workers, each appending `size`-byte
/// records with `append_async` in a loop for `dur`: the task counterpart of a thread sweep point.
pub fn sustained(
    log: &Arc<slotlog::Log>,
    tasks: usize,
    size: usize,
    dur: Duration,
) -> common::Point {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    // The tasks start appending as they are spawned: the clock and the CPU count start first,
    // and stop once every task has returned, so every counted append is inside the window.
    let cpu0 = common::cpu_seconds();
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, stop, count) = (log.clone(), stop.clone(), count.clone());
            let rec = common::record_bytes(size, t as u64 + 1);
            rt.spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    log.append_async(&rec, Durability::FullSync)
                        .await
                        .expect("append_async");
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    // The benchmark's timer, not synchronisation: the point lasts `dur`.
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for h in handles {
            h.await.expect("task");
        }
    });
    common::Point {
        appends: count.load(Ordering::Relaxed),
        wall: start.elapsed().as_secs_f64(),
        cpu: common::cpu_seconds() - cpu0,
        lat_ns: Vec::new(),
    }
}
