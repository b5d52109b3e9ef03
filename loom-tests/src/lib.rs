//! Harness for the loom models of slotlog's slot protocol (the models are in `tests/`).
//!
//! The models drive the real `slotlog::protocol::LogBuffer`, built with
//! `RUSTFLAGS="--cfg slotlog_loom"` so that its atomics, mutexes, park events and slot bytes are
//! loom's. Files are replaced by [`MemSink`], which checks at every write and sync that no byte
//! is written twice and that nothing is synced before it is written, and remembers who wrote
//! what so that the models can assert on it. `run.sh` runs the suite.

#[cfg(not(slotlog_loom))]
compile_error!(
    "build the loom models with RUSTFLAGS=\"--cfg slotlog_loom\" (see loom-tests/run.sh)"
);

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use slotlog::protocol::{BufferConfig, Level, LogBuffer, Sink};

/// Marks padding bytes in [`MemSink`]'s log (record bytes in the models are all below 0x80).
pub const PAD: u8 = 0xEE;

/// One `Sink::write` call.
#[derive(Clone, Debug)]
pub struct Write {
    /// Log address of the first byte.
    pub lsn: u64,
    /// Bytes written.
    pub len: u64,
    /// Name of the loom thread that wrote (`"main"` for the model's main thread).
    pub by: String,
}

/// Everything the sink has seen.
#[derive(Default, Debug)]
pub struct SinkLog {
    /// Byte `i` is the byte at log address `start + i`, once written.
    pub bytes: Vec<Option<u8>>,
    /// Every write, in the order they happened.
    pub writes: Vec<Write>,
    /// Every sync `(from, to)`, in order.
    pub syncs: Vec<(u64, u64)>,
    /// The unused rests of lane chunks `(lsn, bytes)`: their bytes arrive with their slot's
    /// write and are recorded as padding.
    pub chunk_pads: Vec<(u64, u64)>,
}

impl SinkLog {
    /// True if every byte in `start..end` has been written (or is padding).
    pub fn covered(&self, end: u64) -> bool {
        (0..end as usize).all(|i| self.bytes.get(i).is_some_and(|b| b.is_some()))
    }

    /// The highest address a sync has covered.
    pub fn synced(&self) -> u64 {
        self.syncs.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// The in-memory sink: a log of bytes that may each be written once.
///
/// Its state is behind a *std* mutex on purpose: the sink is instrumentation, not part of the
/// protocol, and a loom mutex here would add happens-before edges between the threads that
/// write slots, which could hide a missing Acquire/Release in the protocol itself. (Loom runs
/// its threads one at a time on one OS thread, and nothing inside the sink yields to loom, so
/// the std lock never blocks.)
pub struct MemSink {
    header_len: usize,
    /// Segment size, or `None` for one endless segment.
    segment: Option<u64>,
    log: std::sync::Mutex<SinkLog>,
}

impl MemSink {
    /// A sink with `header_len` header bytes per frame (0 or 1) and no segments.
    pub fn new(header_len: usize) -> Self {
        assert!(header_len <= 1);
        MemSink {
            header_len,
            segment: None,
            log: Default::default(),
        }
    }

    /// A sink whose log is cut into segments of `size` bytes (for the padding model).
    pub fn with_segments(header_len: usize, size: u64) -> Self {
        MemSink {
            segment: Some(size),
            ..MemSink::new(header_len)
        }
    }

    /// The recorded state.
    pub fn log(&self) -> std::sync::MutexGuard<'_, SinkLog> {
        self.log.lock().unwrap()
    }

    /// The header byte of a frame at `lsn` (when `header_len` is 1).
    pub fn header_byte(lsn: u64) -> u8 {
        0x80 | (lsn as u8 & 0x3f)
    }

    fn mark(&self, log: &mut SinkLog, lsn: u64, bytes: impl Iterator<Item = u8>, what: &str) {
        for (i, b) in bytes.enumerate() {
            let at = lsn as usize + i;
            if log.bytes.len() <= at {
                log.bytes.resize(at + 1, None);
            }
            assert!(
                log.bytes[at].is_none(),
                "{what} at {lsn}: byte {at} written twice (earlier writes: {:?})",
                log.writes
            );
            log.bytes[at] = Some(b);
        }
    }
}

fn thread_name() -> String {
    loom::thread::current().name().unwrap_or("main").to_string()
}

impl Sink for MemSink {
    fn header_len(&self) -> usize {
        self.header_len
    }

    fn record_header(&self, lsn: u64, _data: &[u8]) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0] = MemSink::header_byte(lsn);
        h
    }

    fn pad_header(&self, lsn: u64, total: u64) -> Option<[u8; 16]> {
        let mut log = self.log();
        if self.segment.is_none() {
            // No segments, so no segment-end padding: this is the rest of a lane chunk, whose
            // bytes come with its slot's write. No header: the model's padding is a bare hole.
            log.chunk_pads.push((lsn, total));
            return None;
        }
        // Segment-end padding: the protocol asks for a header only when it writes the padding,
        // so this is where the padding counts as written.
        self.mark(
            &mut log,
            lsn,
            std::iter::repeat_n(PAD, total as usize),
            "padding",
        );
        None
    }

    fn segment_end(&self, lsn: u64) -> u64 {
        match self.segment {
            Some(size) => (lsn / size + 1) * size,
            None => u64::MAX,
        }
    }

    fn write(&self, lsn: u64, parts: &[&[u8]]) -> slotlog::Result<()> {
        let mut log = self.log();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(len > 0, "empty write at {lsn}");
        if let Some(size) = self.segment {
            assert_eq!(
                lsn / size,
                (lsn + len as u64 - 1) / size,
                "write at {lsn} crosses a segment end"
            );
        }
        let pads = log.chunk_pads.clone();
        let in_pad = |at: u64| pads.iter().any(|&(p, n)| p <= at && at < p + n);
        self.mark(
            &mut log,
            lsn,
            parts
                .iter()
                .flat_map(|p| p.iter().copied())
                .enumerate()
                .map(|(i, b)| if in_pad(lsn + i as u64) { PAD } else { b }),
            "write",
        );
        log.writes.push(Write {
            lsn,
            len: len as u64,
            by: thread_name(),
        });
        Ok(())
    }

    fn sync(&self, from: u64, to: u64) -> slotlog::Result<()> {
        let mut log = self.log();
        assert!(from < to, "empty or backwards sync {from}..{to}");
        assert_eq!(
            from,
            log.synced(),
            "sync {from}..{to} does not continue the previous one"
        );
        assert!(
            log.covered(to),
            "sync {from}..{to} covers unwritten bytes: {:?}",
            log.bytes
        );
        log.syncs.push((from, to));
        Ok(())
    }
}

/// The buffer under test.
pub type Buf = LogBuffer<MemSink>;

/// A buffer over a fresh [`MemSink`], starting at address 0, without lanes. Call inside the
/// model.
pub fn buffer(sink: MemSink, slot_size: usize, slot_pool: usize) -> Arc<Buf> {
    buffer_with_lanes(sink, slot_size, slot_pool, 0, 0)
}

/// [`buffer`] with `lanes` lanes of `lane_chunk`-byte chunks. In model builds an appender
/// claims its lane after every direct NoSync join, not only after contention, so that the
/// models reach the lane protocol in few steps. The sink must have no segments (see
/// `MemSink::pad_header`).
pub fn buffer_with_lanes(
    sink: MemSink,
    slot_size: usize,
    slot_pool: usize,
    lanes: usize,
    lane_chunk: usize,
) -> Arc<Buf> {
    assert!(
        lanes == 0 || sink.segment.is_none(),
        "lanes need a sink without segments"
    );
    Arc::new(LogBuffer::new(
        sink,
        BufferConfig {
            slot_size,
            slot_pool,
            lanes,
            lane_chunk,
            max_unsynced: None,
        },
        0,
    ))
}

/// A record appended by a model: where it went and what it holds.
#[derive(Clone, Debug)]
pub struct Rec {
    pub lsn: u64,
    pub data: Vec<u8>,
}

/// Appends `data` and checks what `level` promises once the append returns.
pub fn append(buf: &Buf, data: &[u8], level: Option<Level>) -> Rec {
    let lsn = buf.append(data, level).expect("append failed");
    let end = lsn + (buf.sink().header_len() + data.len()) as u64;
    match level {
        None => {}
        Some(Level::Written) => {
            let w = buf.written();
            assert!(
                w >= end,
                "WriteOnly append at {lsn} returned with written = {w} < {end}"
            );
            assert!(
                buf.sink().log().covered(end),
                "WriteOnly append at {lsn} returned before its bytes were written"
            );
        }
        Some(Level::Durable) => {
            let d = buf.durable();
            assert!(
                d >= end,
                "FullSync append at {lsn} returned with durable = {d} < {end}"
            );
            let synced = buf.sink().log().synced();
            assert!(
                synced >= end,
                "FullSync append at {lsn} returned, but the sink synced only to {synced}"
            );
        }
    }
    Rec {
        lsn,
        data: data.to_vec(),
    }
}

/// Checks the frontiers against the sink right now: the written frontier never passes a byte
/// the sink has not received, the durable one never passes a synced address, and durable <=
/// written. Models call it from the main thread while the others run.
pub fn observe(buf: &Buf) {
    let d = buf.durable();
    let w = buf.written();
    assert!(d <= w, "durable {d} > written {w}");
    let log = buf.sink().log();
    assert!(
        log.covered(w),
        "written frontier {w} passes an unwritten byte: {:?}",
        log.bytes
    );
    assert!(
        log.synced() >= d,
        "durable frontier {d} passes the last sync {:?}",
        log.syncs
    );
}

/// The active slot's sequence number, from `debug_dump` (= the number of slots and extents
/// closed so far).
pub fn active_seq(buf: &Buf) -> u64 {
    let dump = buf.debug_dump();
    let field = dump
        .split_whitespace()
        .find_map(|f| f.strip_prefix("active="))
        .expect("active= in debug_dump");
    field.parse().expect("active seq")
}

/// After all threads joined: flushes, then checks that the written frontier is exactly `end`
/// and that the sink holds every byte below it exactly once (exactly-once is checked at each
/// write), each record's frame at its address, and nothing else.
pub fn check_final(buf: &Buf, recs: &[Rec], end: u64) {
    buf.flush().expect("final flush");
    observe(buf);
    assert_eq!(
        buf.written(),
        end,
        "written frontier after the final flush\n{}",
        buf.debug_dump()
    );
    let h = buf.sink().header_len() as u64;
    let log = buf.sink().log();
    assert_eq!(
        log.bytes.len() as u64,
        end,
        "sink holds bytes past the end: {:?}",
        log.bytes
    );
    assert!(
        log.covered(end),
        "bytes missing below {end}: {:?} writes {:?}",
        log.bytes,
        log.writes
    );
    let mut frames: Vec<(u64, u64)> = Vec::new();
    for r in recs {
        let at = r.lsn as usize;
        if h == 1 {
            assert_eq!(
                log.bytes[at],
                Some(MemSink::header_byte(r.lsn)),
                "header of the record at {}",
                r.lsn
            );
        }
        let got: Vec<u8> = log.bytes[at + h as usize..at + h as usize + r.data.len()]
            .iter()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(got, r.data, "record at {}: sink {:?}", r.lsn, log.bytes);
        frames.push((r.lsn, r.lsn + h + r.data.len() as u64));
    }
    frames.sort();
    for w in frames.windows(2) {
        assert!(w[0].1 <= w[1].0, "records overlap: {frames:?}");
    }
    // Every byte that is not a record frame is padding.
    let mut at = 0;
    for (s, e) in frames {
        assert!(
            (at..s).all(|i| log.bytes[i as usize] == Some(PAD)),
            "hole before {s}: {:?}",
            log.bytes
        );
        at = e;
    }
    assert!(
        (at..end).all(|i| log.bytes[i as usize] == Some(PAD)),
        "junk after the last record"
    );
    // One write per slot: a slot's bytes go out in one write, so no record is split.
    for r in recs {
        let n = log
            .writes
            .iter()
            .filter(|w| w.lsn <= r.lsn && r.lsn < w.lsn + w.len)
            .count();
        assert_eq!(n, 1, "record at {} is in {n} writes", r.lsn);
    }
}

/// Spawns a named loom thread.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawn")
}

/// Runs `f` under loom, exhaustively within `preemptions` preemptions (overridable with
/// `LOOM_MAX_PREEMPTIONS`), and prints how many executions it explored and how long it took.
/// Returns the number of executions.
pub fn model(name: &str, preemptions: usize, f: impl Fn() + Sync + Send + 'static) -> usize {
    let mut builder = loom::model::Builder::new();
    assert!(
        builder.max_permutations.is_none() && builder.max_duration.is_none(),
        "LOOM_MAX_PERMUTATIONS / LOOM_MAX_DURATION would make the model non-exhaustive"
    );
    let bound = *builder.preemption_bound.get_or_insert(preemptions);
    // Several models exceed loom's default of 1000 branches per execution.
    builder.max_branches = builder.max_branches.max(20_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    // As `loom::model` does: `LOOM_LOG=trace LOOM_LOCATION=1` prints every step of every execution
    // (run one model, and read the last execution before the failure).
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOOM_LOG"))
        .with_test_writer()
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        builder.check(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            f();
        })
    });
    let runs = runs.load(Ordering::Relaxed);
    eprintln!(
        "loom model {name}: preemption bound {bound}, {runs} executions, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    runs
}
