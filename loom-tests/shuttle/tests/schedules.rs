//! Randomized schedules (shuttle) over the real slot protocol, for what the exhaustive loom
//! models cannot reach: 8-16 threads, dozens of slot rotations through a 3-slot pool, segment
//! padding, unbuffered records, and waiters of every level parked across slots.
//!
//! Shuttle treats every atomic as SeqCst, so these tests check the protocol's logic (who
//! closes, who writes, the frontier hand-off, lost wake-ups, pool exhaustion), not its memory
//! orderings; the loom models own those.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use slotlog::protocol::{BufferConfig, Level, LogBuffer, Sink};

/// An in-memory sink: every write and the durable mark, with a tiny segment size so that the
/// slots hit segment ends often. Frames have no header: records carry their own identity.
#[derive(Default)]
struct MemSink {
    writes: Mutex<BTreeMap<u64, Vec<u8>>>,
    synced: Mutex<u64>,
    /// Every padding the protocol asked a header for `(lsn, bytes)`: segment ends (never
    /// written) and the rests of lane chunks (written with their slot).
    pads: Mutex<Vec<(u64, u64)>>,
    /// `max_unsynced`: no write may end more than this past the synced mark.
    bound: Option<u64>,
}

const SEGMENT: u64 = 40;

impl Sink for MemSink {
    fn header_len(&self) -> usize {
        0
    }
    fn record_header(&self, _lsn: u64, _data: &[u8]) -> [u8; 16] {
        [0; 16]
    }
    fn pad_header(&self, lsn: u64, total: u64) -> Option<[u8; 16]> {
        self.pads.lock().unwrap().push((lsn, total));
        None
    }
    fn segment_end(&self, lsn: u64) -> u64 {
        (lsn / SEGMENT + 1) * SEGMENT
    }
    fn write(&self, lsn: u64, parts: &[&[u8]]) -> slotlog::Result<()> {
        let bytes: Vec<u8> = parts.concat();
        assert!(
            lsn / SEGMENT == (lsn + bytes.len() as u64 - 1) / SEGMENT,
            "a write crosses a segment end at {lsn}"
        );
        let prev = self.writes.lock().unwrap().insert(lsn, bytes);
        assert!(prev.is_none(), "address {lsn} written twice");
        if let Some(bound) = self.bound {
            let synced = *self.synced.lock().unwrap();
            let end = lsn + parts.iter().map(|p| p.len() as u64).sum::<u64>();
            assert!(
                end <= synced + bound,
                "a write ends at {end}, more than {bound} past the synced {synced}"
            );
        }
        Ok(())
    }
    fn sync(&self, _from: u64, to: u64) -> slotlog::Result<()> {
        let mut s = self.synced.lock().unwrap();
        *s = (*s).max(to);
        Ok(())
    }
}

/// A record that names its thread and sequence number; `long` makes it unbuffered.
fn record(thread: usize, seq: usize, long: bool) -> Vec<u8> {
    let len = if long { 12 } else { 1 + (thread + seq) % 4 };
    (0..len)
        .map(|i| (thread * 16 + seq) as u8 ^ (i as u8).wrapping_mul(37))
        .collect()
}

fn level(thread: usize, seq: usize) -> Option<Level> {
    match (thread + 2 * seq) % 4 {
        0 | 3 => None,
        1 => Some(Level::Written),
        _ => Some(Level::Durable),
    }
}

/// `threads` appenders, each `per_thread` records of mixed durability; one thread in four also
/// calls `flush`/`sync`; then checks that every record is in the sink exactly once, at its
/// address, that writes do not overlap, that the frontiers cover everything, and that each
/// thread's records are in its order.
fn scenario(threads: usize, per_thread: usize, slot_size: usize) {
    scenario_with_tasks(threads, 0, per_thread, slot_size);
}

/// [`scenario`] with `tasks` async tasks appending next to the threads (place, then await the
/// frontier their level asks for), and the driver thread that does the tasks' work.
fn scenario_with_tasks(threads: usize, tasks: usize, per_thread: usize, slot_size: usize) {
    scenario_full(threads, tasks, per_thread, slot_size, 0);
}

/// `lanes` lanes with chunks of a quarter slot (records of frames up to a sixteenth of a slot
/// go through them; in model builds every thread claims its lane after a direct NoSync join).
fn scenario_full(threads: usize, tasks: usize, per_thread: usize, slot_size: usize, lanes: usize) {
    scenario_levels(threads, tasks, per_thread, slot_size, lanes, level, None);
}

/// [`scenario_full`] with the durability of each record chosen by `level`, and a bound on
/// unsynced bytes if `max_unsynced` is set (the sink checks every write against it; the driver
/// thread runs whenever there is a bound, as in `Log`).
fn scenario_levels(
    threads: usize,
    tasks: usize,
    per_thread: usize,
    slot_size: usize,
    lanes: usize,
    level: fn(usize, usize) -> Option<Level>,
    max_unsynced: Option<u64>,
) {
    let buf = Arc::new(LogBuffer::new(
        MemSink {
            bound: max_unsynced,
            ..MemSink::default()
        },
        BufferConfig {
            slot_size,
            slot_pool: 3,
            lanes,
            lane_chunk: slot_size / 4,
            max_unsynced,
        },
        0,
    ));
    let driver = (tasks > 0 || max_unsynced.is_some()).then(|| {
        let buf = buf.clone();
        shuttle::thread::spawn(move || buf.run_driver())
    });
    let task_handles: Vec<_> = (threads..threads + tasks)
        .map(|t| {
            let buf = buf.clone();
            shuttle::future::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let data = record(t, i, (t + i) % 7 == 6);
                    let (lsn, end) = buf.place_for_task(&data, level(t, i)).expect("place");
                    if let Some(l) = level(t, i) {
                        buf.wait_task(end, l).await.expect("task wait");
                        let frontier = match l {
                            Level::Written => buf.written(),
                            Level::Durable => buf.durable(),
                        };
                        assert!(frontier >= end, "task wait resolved at {frontier} < {end}");
                    }
                    mine.push((lsn, data));
                }
                mine
            })
        })
        .collect();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let buf = buf.clone();
            shuttle::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let data = record(t, i, (t + i) % 7 == 6);
                    let lsn = buf.append(&data, level(t, i)).expect("append");
                    match level(t, i) {
                        Some(Level::Written) => assert!(buf.written() >= lsn + data.len() as u64),
                        Some(Level::Durable) => assert!(buf.durable() >= lsn + data.len() as u64),
                        None => {}
                    }
                    if t % 4 == 3 && i % 2 == 1 {
                        if i % 4 == 1 { buf.flush() } else { buf.sync() }.expect("flush/sync");
                    }
                    mine.push((lsn, data));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = Vec::new();
    let task_results = task_handles
        .into_iter()
        .map(|h| shuttle::future::block_on(h).unwrap());
    for mine in handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .chain(task_results)
    {
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "a thread's records out of order"
        );
        all.extend(mine);
    }
    if let Some(d) = driver {
        buf.stop_driver();
        d.join().unwrap();
    }
    buf.sync().expect("final sync");
    let end = buf.reserved_end().unwrap();
    assert_eq!(buf.written(), end, "written frontier short of the end");
    assert_eq!(buf.durable(), end, "durable frontier short of the end");
    let writes = buf.sink().writes.lock().unwrap();
    let mut prev_end = 0;
    for (&at, bytes) in writes.iter() {
        assert!(at >= prev_end, "writes overlap at {at}");
        prev_end = at + bytes.len() as u64;
    }
    all.sort();
    for (lsn, data) in &all {
        let (&at, bytes) = writes
            .range(..=*lsn)
            .next_back()
            .expect("record not written");
        let off = (*lsn - at) as usize;
        assert_eq!(
            &bytes[off..off + data.len()],
            &data[..],
            "record at {lsn} damaged"
        );
    }
    LANE_CHUNKS.fetch_add(
        buf.stats().lane_chunks as usize,
        std::sync::atomic::Ordering::Relaxed,
    );
    // Every written byte belongs to exactly one record, or to a lane chunk's padding.
    let pads = buf.sink().pads.lock().unwrap();
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for (lsn, data) in &all {
        for a in *lsn..*lsn + data.len() as u64 {
            assert!(
                owner.insert(a, "record").is_none(),
                "records overlap at {a}"
            );
        }
    }
    for &(lsn, total) in pads.iter() {
        for a in lsn..lsn + total {
            assert!(owner.insert(a, "pad").is_none(), "padding overlaps at {a}");
        }
    }
    for (&at, bytes) in writes.iter() {
        for a in at..at + bytes.len() as u64 {
            assert!(
                owner.contains_key(&a),
                "byte {a} written, but neither record nor padding"
            );
        }
    }
    if lanes == 0 {
        let record_bytes: usize = all.iter().map(|(_, d)| d.len()).sum();
        let written_bytes: usize = writes.values().map(|b| b.len()).sum();
        assert_eq!(
            written_bytes, record_bytes,
            "bytes written other than the records"
        );
    }
}

/// Lane chunks finished over every schedule run so far (the lanes test fails if none was).
static LANE_CHUNKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn iters() -> usize {
    std::env::var("SLOTLOG_SHUTTLE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Runs `f` under shuttle's random and PCT schedulers, or replays one schedule from
/// `SLOTLOG_SHUTTLE_REPLAY="<name>=<schedule>"` or `SLOTLOG_SHUTTLE_REPLAY_FILE="<name>=<path>"`.
fn check(name: &str, f: impl Fn() + Send + Sync + 'static) {
    check_iters(name, iters(), f);
}

/// [`check`] with `iters` schedules per scheduler.
fn check_iters(name: &str, iters: usize, f: impl Fn() + Send + Sync + 'static) {
    if let Ok(spec) = std::env::var("SLOTLOG_SHUTTLE_REPLAY") {
        if let Some(schedule) = spec.strip_prefix(&format!("{name}=")) {
            shuttle::replay(f, schedule);
        }
        return;
    }
    // Long schedules (a livelock's runs to a million steps) do not fit in an environment
    // variable: save the printed string to a file instead.
    if let Ok(spec) = std::env::var("SLOTLOG_SHUTTLE_REPLAY_FILE") {
        if let Some(path) = spec.strip_prefix(&format!("{name}=")) {
            shuttle::replay_from_file(f, path);
        }
        return;
    }
    let f = Arc::new(f);
    let g = f.clone();
    shuttle::check_random(move || g(), iters);
    shuttle::check_pct(move || f(), iters, 3);
}

#[test]
fn eight_threads_mixed_durability() {
    check("eight_threads_mixed_durability", || scenario(8, 4, 12));
}

#[test]
fn sixteen_threads_many_rotations_tiny_pool() {
    check("sixteen_threads_many_rotations_tiny_pool", || {
        scenario(16, 3, 8)
    });
}

#[test]
fn waiters_across_slots_with_unbuffered_records() {
    check("waiters_across_slots_with_unbuffered_records", || {
        scenario(10, 6, 16)
    });
}

#[test]
fn lanes_beside_direct_joins_and_waiters() {
    // 32-byte slots, 8-byte chunks, 2-byte frames in lanes: chunks fill, get cut by closes and
    // by full slots, and sit beside WriteOnly/FullSync records, flush and sync.
    check("lanes_beside_direct_joins_and_waiters", || {
        scenario_full(8, 0, 6, 32, 2)
    });
    assert!(
        LANE_CHUNKS.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no record went through a lane"
    );
}

#[test]
fn one_lane_claims_race_full_closes() {
    // NoSync only and one lane shared by every thread: most slots close because they are full
    // (the lanes stay warm; one thread also flushes and syncs, and some records are unbuffered),
    // so appenders keep claiming the same lane at once; a claim whose join finds the slot
    // closed by another thread gives its chunk back before it waits for the rotation ("Lanes"
    // in docs/design.md), and appenders that find both chunks busy wait for a free one.
    // 40x the schedules (~24 s): a give-back without its wake-up of free-chunk waiters
    // deadlocked here in 5 of 5 runs at 40x, 2 of 3 at 10x, 0 of 3 at 1x.
    check_iters("one_lane_claims_race_full_closes", 40 * iters(), || {
        scenario_levels(6, 0, 8, 32, 1, |_, _| None, None)
    });
}

#[test]
fn writers_wait_for_fdatasyncs_under_a_bound_on_unsynced_bytes() {
    // 12-byte slots and 12-byte unbuffered records: the in-flight window is 3 × 2 frames = 72
    // bytes, the smallest bound allowed. Mostly NoSync records, from threads and tasks, so
    // that writers reach the bound and wait for the driver's or their own fdatasyncs.
    check(
        "writers_wait_for_fdatasyncs_under_a_bound_on_unsynced_bytes",
        || {
            scenario_levels(
                5,
                2,
                5,
                12,
                0,
                |t, s| {
                    if (t + s) % 5 == 4 {
                        Some(Level::Durable)
                    } else {
                        None
                    }
                },
                Some(72),
            )
        },
    );
}

#[test]
fn tasks_beside_threads_with_the_driver() {
    check("tasks_beside_threads_with_the_driver", || {
        scenario_with_tasks(4, 4, 4, 12)
    });
}
