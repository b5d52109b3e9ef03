//! The slot protocol alone, without files: NoSync appends from T threads into a `LogBuffer`
//! whose sink discards every write (but still builds frame headers with a CRC of the record),
//! so that join, copy, release, close and rotation are measured apart from the page cache.
//! Alternates the thread counts and lane counts given (0 = no lanes), round by round, and
//! prints the median appends/s of each. To compare two commits, build it at both and run the
//! binaries alternately.
//!
//! ```text
//! cargo run --release --example protocol_load -- THREADS,... SIZE [ROUNDS] [MS] [LANES,...]
//! cargo run --release --example protocol_load -- 1,2,64 128 5 500 0,2
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use slotlog::protocol::{BufferConfig, LogBuffer, Sink};

const HEADER: usize = 16;

/// Discards writes; frames get a header with the record's CRC, like the real sink.
struct NullSink;

impl Sink for NullSink {
    fn header_len(&self) -> usize {
        HEADER
    }
    fn record_header(&self, lsn: u64, data: &[u8]) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..8].copy_from_slice(&lsn.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        h
    }
    fn pad_header(&self, lsn: u64, total: u64) -> Option<[u8; HEADER]> {
        let mut h = [0u8; HEADER];
        h[..8].copy_from_slice(&lsn.to_le_bytes());
        h[8..12].copy_from_slice(&(total as u32 | 1 << 31).to_le_bytes());
        Some(h)
    }
    fn segment_end(&self, lsn: u64) -> u64 {
        // One endless segment.
        lsn.max(1) << 1 | u64::MAX >> 1
    }
    fn write(&self, _lsn: u64, _parts: &[&[u8]]) -> slotlog::Result<()> {
        Ok(())
    }
    fn sync(&self, _from: u64, _to: u64) -> slotlog::Result<()> {
        Ok(())
    }
}

/// Voluntary and involuntary context switches of this process so far.
fn context_switches() -> (i64, i64) {
    // SAFETY: getrusage fills the zeroed struct we pass; no other memory is touched.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    (ru.ru_nvcsw, ru.ru_nivcsw)
}

fn round(threads: usize, size: usize, ms: u64, lanes: usize) -> f64 {
    let buf = Arc::new(LogBuffer::new(
        NullSink,
        BufferConfig {
            slot_size: 1 << 20, // the default of `Options::slot_size`
            slot_pool: 4,
            lanes,
            lane_chunk: 8 << 10,
            max_unsynced: None,
        },
        0,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (buf, stop, start) = (buf.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                let data = vec![7u8; size];
                let mut n = 0u64;
                start.wait();
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    buf.append(&data, None).expect("append");
                    n += 1;
                }
                (n, t0, Instant::now())
            })
        })
        .collect();
    let (v0, i0) = context_switches();
    start.wait();
    std::thread::sleep(Duration::from_millis(ms));
    stop.store(true, Ordering::Relaxed);
    let runs: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    // The workers' own clocks: this thread may run late among them after the release.
    let n: u64 = runs.iter().map(|r| r.0).sum();
    let t0 = runs.iter().map(|r| r.1).min().unwrap();
    let t1 = runs.iter().map(|r| r.2).max().unwrap();
    let rate = n as f64 / (t1 - t0).as_secs_f64();
    let (v1, i1) = context_switches();
    let s = buf.stats();
    let per = |x: u64| x as f64 / n.max(1) as f64;
    println!(
        "    per append: join retries {:.4}, parks {:.5}, pool waits {:.5}; per slot: {:.1} appends; \
         lane chunks {}, pad {:.1}% ; context switches {} voluntary, {} involuntary",
        per(s.cas_retries),
        per(s.parks),
        per(s.pool_waits),
        n as f64 / s.slots_closed.max(1) as f64,
        s.lane_chunks,
        100.0 * s.lane_pad_bytes as f64 / s.bytes.max(1) as f64,
        v1 - v0,
        i1 - i0
    );
    rate
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.into());
    let threads: Vec<usize> = arg(0, "1,2")
        .split(',')
        .map(|t| t.parse().expect("THREADS"))
        .collect();
    let size: usize = arg(1, "128").parse().expect("SIZE");
    let rounds: usize = arg(2, "5").parse().expect("ROUNDS");
    let ms: u64 = arg(3, "1000").parse().expect("MS");
    let lanes: Vec<usize> = arg(4, "0")
        .split(',')
        .map(|l| l.parse().expect("LANES"))
        .collect();
    let points: Vec<(usize, usize)> = threads
        .iter()
        .flat_map(|&t| lanes.iter().map(move |&l| (t, l)))
        .collect();
    let mut results = vec![Vec::new(); points.len()];
    for r in 0..rounds {
        for (i, &(t, l)) in points.iter().enumerate() {
            let rate = round(t, size, ms, l);
            println!(
                "round {r}: {t:3} threads, {l:2} lanes: {:8.2} M appends/s",
                rate / 1e6
            );
            results[i].push(rate);
        }
    }
    for (i, &(t, l)) in points.iter().enumerate() {
        let v = &mut results[i];
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{t:3} threads, {l:2} lanes: median {:8.2} M appends/s ({size} B, {rounds} rounds of {ms} ms)",
            v[v.len() / 2] / 1e6
        );
    }
}
