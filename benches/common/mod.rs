//! Shared by the criterion bench (`benches/append.rs`) and the report runner
//! (`benches/peers`): the [`Wal`] trait every measured system implements, slotlog's adapter,
//! the four in-process baselines, and the multi-threaded drivers.
//!
//! Every system frames a record the way slotlog does (16-byte header `[lsn u64][len u32][crc32
//! u32]` + data), so the baselines do the same CPU work per byte. Baseline files are
//! pre-written with zeros (like slotlog's segments), so an fdatasync flushes data, not file-size
//! metadata.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
pub use slotlog::Durability;

/// One system under test. `append` returns once the record is as durable as `d` says (or the
/// closest the system can express, see [`Wal::supports`]).
pub trait Wal: Send + Sync {
    fn name(&self) -> String;
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()>;
    /// Whether the system has this level at all (the report leaves the others out).
    fn supports(&self, _d: Durability) -> bool {
        true
    }
    /// Called between points: make everything durable and free space if the system can.
    fn reset(&self) {}
    /// slotlog's own counters (`Log::stats`), for the report's protocol table; `None` for the
    /// other systems.
    fn stats(&self) -> Option<slotlog::Stats> {
        None
    }
}

/// A WAL that does nothing: run through the same driver it measures the harness itself (spawned
/// threads released together and joined), which for 1,000 threads on 2 cores is tens of
/// milliseconds.
pub struct NullWal;

impl Wal for NullWal {
    fn name(&self) -> String {
        "harness only (no-op append)".into()
    }
    fn append(&self, rec: &[u8], _d: Durability) -> io::Result<()> {
        std::hint::black_box(rec);
        Ok(())
    }
}

pub const LEVELS: [Durability; 3] = [
    Durability::NoSync,
    Durability::WriteOnly,
    Durability::FullSync,
];

pub fn level_name(d: Durability) -> &'static str {
    match d {
        Durability::NoSync => "NoSync",
        Durability::WriteOnly => "WriteOnly",
        Durability::FullSync => "FullSync",
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The frame header every system writes in front of a record.
pub fn frame_header(lsn: u64, rec: &[u8]) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&lsn.to_le_bytes());
    h[8..12].copy_from_slice(&(rec.len() as u32).to_le_bytes());
    h[12..].copy_from_slice(&crc32fast::hash(rec).to_le_bytes());
    h
}

/// Incompressible record contents, different per thread.
pub fn record_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ----- slotlog ---------------------------------------------------------------------------

/// slotlog with `Options::default()` and a 64 MiB segment (the default), the same for every
/// point, plus a checkpointer: like an engine that checkpoints, it drops the segments older
/// than the last [`CHECKPOINT_KEEP`] bytes, and slotlog keeps up to [`BASELINE_FILE`] bytes of
/// their files for reuse. The baselines wrap around a pre-written file of that size, so every
/// system overwrites pages it has written before instead of touching new memory (on this VM a
/// first touch of a page-cache page costs several times a rewrite of it; see
/// docs/performance.md).
pub struct Slotlog {
    pub log: Arc<slotlog::Log>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    checkpointer: Option<JoinHandle<()>>,
}

/// slotlog's segment file size in every benchmark (the default).
const SEGMENT_BYTES: u64 = 64 << 20;

/// Log addresses per segment file (`SEGMENT_HEADER_LEN` is 64 bytes, docs/format.md).
const SEGMENT_PAYLOAD: u64 = SEGMENT_BYTES - 64;

/// How often the bench's checkpointer looks at the log's size.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(5);

/// The bytes of log the bench's checkpointer keeps: one and a half segments, not a multiple of
/// a segment. The preparer wants the next file when the writer enters the last segment; a cut
/// at a segment boundary frees a file at that same moment and loses the race about half the
/// time (then the preparer makes a new sparse file, and the point writes into new pages: with
/// the cut at 256 MiB, 1–2 of the ~8 segments of a 512 MiB NoSync point were new, at up to
/// twice the CPU per append). Keeping 96 MiB frees each file half a segment before it is wanted.
/// (At 64 threads the cut also came late because `end_lsn` waited for rotations, up to 73 ms a
/// call, until 2026-12-07: docs/design.md, "Reading the end".)
const CHECKPOINT_KEEP: u64 = 96 << 20;

impl Slotlog {
    /// A log for points of `level`: a NoSync or WriteOnly log is warmed up with appends of its
    /// level ([`Slotlog::warm_up`]); a FullSync log is only settled ([`Slotlog::settle`]): its
    /// first segment is zero-filled by `open`, and the next one by the preparer before the
    /// first point. A log for points of every level (the criterion bench) is opened as FullSync.
    pub fn open(dir: &Path, level: Durability) -> io::Result<Slotlog> {
        Self::open_named(dir, level, "slotlog", |o| o)
    }

    /// [`Slotlog::open`] with changed options, under another name (for A/B runs in one
    /// process, e.g. `examples/load`'s `slotlog-nolanes`).
    pub fn open_named(
        dir: &Path,
        level: Durability,
        name: &str,
        change: impl FnOnce(slotlog::Options) -> slotlog::Options,
    ) -> io::Result<Slotlog> {
        let _ = std::fs::remove_dir_all(dir);
        let mut opts = slotlog::Options::default()
            .segment_size(SEGMENT_BYTES)
            .recycle_segments((BASELINE_FILE / SEGMENT_BYTES) as usize);
        // For experiments only (the report and the benches use the defaults):
        // SLOTLOG_BENCH_SLOT_KB / SLOTLOG_BENCH_POOL override the slot size and pool.
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        if let Some(kb) = env("SLOTLOG_BENCH_SLOT_KB") {
            opts = opts.slot_size(kb << 10);
        }
        if let Some(n) = env("SLOTLOG_BENCH_POOL") {
            opts = opts.slot_pool(n);
        }
        let opts = change(opts);
        let log = Arc::new(slotlog::Log::open(dir, opts).map_err(io::Error::other)?);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let checkpointer = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-checkpointer".into())
                .spawn(move || {
                    let mut stopped = stop.0.lock();
                    while !*stopped {
                        stop.1.wait_for(&mut stopped, CHECKPOINT_EVERY);
                        let Ok(end) = log.end_lsn() else { return };
                        if let Some(upto) = end.as_u64().checked_sub(CHECKPOINT_KEEP) {
                            let _ = log.truncate_front(slotlog::Lsn::from_u64(upto));
                        }
                    }
                })?
        };
        let s = Slotlog {
            log,
            name: name.into(),
            stop,
            checkpointer: Some(checkpointer),
        };
        match level {
            Durability::FullSync => s.settle()?,
            _ => s.warm_up(dir, level)?,
        }
        Ok(s)
    }

    /// For a log measured with fdatasyncs: one FullSync append, then wait until the preparer
    /// has zero-filled and installed the next segment, which the first write in the last
    /// segment asks for. Otherwise the first point pays for 64 MiB of zeros (a 1-thread
    /// FullSync point of 300 ms measured 3.5–4.2k/s at 100–120 CPU-µs per append, against
    /// 6–7k/s at ~60 µs once settled). The baselines' files are likewise written before their
    /// first point.
    fn settle(&self) -> io::Result<()> {
        let err = io::Error::other;
        let before = self.log.stats().segments_recycled;
        self.log
            .append(b"settle", Durability::FullSync)
            .map_err(err)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.stats().segments_recycled == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Brings the log to the state the baselines start in: its files allocated, written once
    /// and clean in the page cache. Appends one window plus a segment of 4 KiB records at
    /// `level` from one thread (the checkpointer recycles along the way), so the page cache
    /// holds the folios that appends of that level make ([`PreFile`] says why that matters:
    /// NoSync makes slot-sized writes, WriteOnly one write per append here), and stops just
    /// inside the next segment, a recycled file (stopping mid-segment would leave the rest of
    /// that segment a hole, slower to fdatasync into); keeps only that segment, then `syncfs`,
    /// not a log fdatasync, so the log still counts as one that never fdatasynced.
    ///
    /// Not for FullSync points: in alternating A/B runs of FullSync 512 B at 32 threads
    /// (`examples/load`), a log warmed with NoSync records ran at 42–47k appends/s against
    /// 59–75k/s unwarmed, with the same records per fdatasync and the same fdatasync count and
    /// mean latency (`perf trace`). The likely cause, found later: NoSync warming leaves 1 MiB
    /// folios, which make small write + fdatasync 8–15% slower (docs/performance-analysis.md,
    /// "Folio size"); warming with FullSync appends would take seconds.
    fn warm_up(&self, dir: &Path, level: Durability) -> io::Result<()> {
        let rec = record_bytes(4096, 99);
        let err = io::Error::other;
        let end = || self.log.end_lsn().map(|l| l.as_u64()).map_err(err);
        while end()? < BASELINE_FILE + SEGMENT_BYTES {
            self.log.append(&rec, level).map_err(err)?;
        }
        let segment = end()? / SEGMENT_PAYLOAD;
        while end()? / SEGMENT_PAYLOAD == segment {
            self.log.append(&rec, level).map_err(err)?;
        }
        self.log
            .truncate_front(self.log.end_lsn().map_err(err)?)
            .map_err(err)?;
        self.log.flush().map_err(err)?;
        sync_file_system(dir)
    }
}

impl Drop for Slotlog {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
    }
}

impl Wal for Slotlog {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        self.log
            .append(rec, d)
            .map(|_| ())
            .map_err(io::Error::other)
    }
    fn reset(&self) {
        let _ = self.log.sync();
        if let Ok(end) = self.log.end_lsn() {
            let _ = self.log.truncate_front(end);
        }
    }
    fn stats(&self) -> Option<slotlog::Stats> {
        Some(self.log.stats())
    }
}

/// `syncfs` on the file system holding `dir`: writes back everything dirty there and waits.
/// Between benchmark points, so that no point pays for the writeback of the one before it.
pub fn sync_file_system(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own and keep open for the call.
    if unsafe { libc::syncfs(std::os::unix::io::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The group commit's fdatasyncs between two snapshots of `Log::stats` taken `wall` seconds
/// apart: (mean µs per fdatasync, share of `wall` during which one was running; one runs at a
/// time). `None` if there was none.
pub fn fdatasync_time(a: &slotlog::Stats, b: &slotlog::Stats, wall: f64) -> Option<(f64, f64)> {
    let syncs = b.fdatasyncs - a.fdatasyncs;
    let secs = (b.fdatasync_nanos - a.fdatasync_nanos) as f64 * 1e-9;
    (syncs > 0).then(|| (secs / syncs as f64 * 1e6, secs / wall))
}

// ----- a pre-written file ------------------------------------------------------------------

/// A file pre-written with zeros up to `cap` bytes; writes wrap around at `cap`, so appends
/// overwrite allocated blocks and fdatasync flushes only data.
///
/// The zeros go in writes of `fill_write` bytes, because the page cache sizes a folio by the
/// write that creates it and the folio size changes what later writes cost (small appends into
/// 1 MiB folios: 8–15% slower write + fdatasync; 1 MiB writes into 16 KiB folios: ~35% slower
/// pwrite; docs/performance-analysis.md, "Folio size"). Each system gets the folios its own
/// writes would make: [`SMALL_WRITES_FILL`] like slotlog's zero-filled segments for the systems
/// that write per append or per group, the buffer's size for the mutex buffer. A file is made
/// anew the first time this process asks for it, so no folios from an earlier run remain.
pub struct PreFile {
    file: File,
    cap: u64,
}

/// The zero-fill write of slotlog's segments (`ZERO_FILL_WRITE` in `src/segment.rs`), used for
/// the files of the systems that write per append or per group, and for the calibrators.
pub const SMALL_WRITES_FILL: usize = 16 << 10;

/// The files [`PreFile::create`] has made in this process.
static PRE_WRITTEN: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

impl PreFile {
    pub fn create(path: &Path, cap: u64, fill_write: usize) -> io::Result<PreFile> {
        let first_time = {
            let mut made = PRE_WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
            let first = !made.iter().any(|p| p == path);
            if first {
                made.push(path.to_owned());
            }
            first
        };
        if first_time {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let have = file.metadata()?.len();
        if have < cap {
            let zeros = vec![0u8; fill_write];
            let mut at = have;
            while at < cap {
                let n = (cap - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
        }
        Ok(PreFile { file, cap })
    }

    /// Writes `parts` one after the other at log offset `off` (wrapped into the file).
    pub fn write_at(&self, off: u64, parts: &[&[u8]]) -> io::Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let mut pos = off % self.cap;
        if pos + len > self.cap {
            pos = 0;
        }
        for p in parts {
            self.file.write_all_at(p, pos)?;
            pos += p.len() as u64;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Size of each baseline's pre-written file.
pub const BASELINE_FILE: u64 = 256 << 20;

// ----- baseline 1: sync-on-write -------------------------------------------------------------

/// `Mutex<File>`: every append writes its frame under the lock, and a FullSync append
/// fdatasyncs under the lock too. NoSync behaves like WriteOnly (there is no buffer).
pub struct SyncOnWrite {
    file: PreFile,
    off: Mutex<u64>,
}

impl SyncOnWrite {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(SyncOnWrite {
            file: PreFile::create(path, BASELINE_FILE, SMALL_WRITES_FILL)?,
            off: Mutex::new(0),
        })
    }
}

impl Wal for SyncOnWrite {
    fn name(&self) -> String {
        "b1 sync-on-write".into()
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        let mut off = self.off.lock();
        let h = frame_header(*off, rec);
        self.file.write_at(*off, &[&h, rec])?;
        *off += 16 + rec.len() as u64;
        if d == Durability::FullSync {
            self.file.sync()?;
        }
        Ok(())
    }
}

// ----- baseline 2: mutex buffer --------------------------------------------------------------

/// `parking_lot::Mutex<Vec<u8>>` (LevelDB-like): frames are copied into one buffer under the
/// lock; the buffer is written when full. WriteOnly/FullSync appends write the buffer (and
/// fdatasync) under the lock before returning.
pub struct MutexBuffer {
    file: PreFile,
    state: Mutex<MbState>,
    /// Bytes buffered before a write.
    limit: usize,
}

struct MbState {
    buf: Vec<u8>,
    /// Log offset of `buf[0]`.
    off: u64,
}

pub const MUTEX_BUFFER_BYTES: usize = 256 << 10;

/// The mutex buffer's size: `MUTEX_BUFFER_BYTES`, or `SLOTLOG_BENCH_B2_KB` KiB for an A/B.
fn mutex_buffer_bytes() -> usize {
    std::env::var("SLOTLOG_BENCH_B2_KB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MUTEX_BUFFER_BYTES, |kb| kb << 10)
}

impl MutexBuffer {
    pub fn open(path: &Path) -> io::Result<Self> {
        let limit = mutex_buffer_bytes();
        Ok(MutexBuffer {
            file: PreFile::create(path, BASELINE_FILE, limit)?,
            state: Mutex::new(MbState {
                buf: Vec::with_capacity(2 * limit),
                off: 0,
            }),
            limit,
        })
    }
}

impl Wal for MutexBuffer {
    fn name(&self) -> String {
        "b2 mutex buffer".into()
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        let mut s = self.state.lock();
        let lsn = s.off + s.buf.len() as u64;
        s.buf.extend_from_slice(&frame_header(lsn, rec));
        s.buf.extend_from_slice(rec);
        if d != Durability::NoSync || s.buf.len() >= self.limit {
            self.file.write_at(s.off, &[&s.buf])?;
            s.off += s.buf.len() as u64;
            s.buf.clear();
            if d == Durability::FullSync {
                self.file.sync()?;
            }
        }
        Ok(())
    }
    fn reset(&self) {
        let mut s = self.state.lock();
        let _ = self.file.write_at(s.off, &[&s.buf]);
        s.off += s.buf.len() as u64;
        s.buf.clear();
    }
}

// ----- baseline 3: background sync -----------------------------------------------------------

/// Appends write their frame to the page cache under a mutex; a background thread fdatasyncs
/// every 100 ms and wakes the FullSync waiters whose records it covered.
pub struct BackgroundSync {
    shared: Arc<BgShared>,
    thread: Option<JoinHandle<()>>,
}

struct BgShared {
    file: PreFile,
    written: Mutex<u64>,
    durable: Mutex<u64>,
    synced: Condvar,
    stop: AtomicBool,
}

pub const BACKGROUND_SYNC_INTERVAL: Duration = Duration::from_millis(100);

impl BackgroundSync {
    pub fn open(path: &Path) -> io::Result<Self> {
        let shared = Arc::new(BgShared {
            file: PreFile::create(path, BASELINE_FILE, SMALL_WRITES_FILL)?,
            written: Mutex::new(0),
            durable: Mutex::new(0),
            synced: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(BACKGROUND_SYNC_INTERVAL);
                let target = *s.written.lock();
                if s.file.sync().is_ok() {
                    *s.durable.lock() = target;
                    s.synced.notify_all();
                }
            }
        });
        Ok(BackgroundSync {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Wal for BackgroundSync {
    fn name(&self) -> String {
        "b3 background sync".into()
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        let end = {
            let mut w = self.shared.written.lock();
            let h = frame_header(*w, rec);
            self.shared.file.write_at(*w, &[&h, rec])?;
            *w += 16 + rec.len() as u64;
            *w
        };
        if d == Durability::FullSync {
            let mut durable = self.shared.durable.lock();
            while *durable < end {
                self.shared.synced.wait(&mut durable);
            }
        }
        Ok(())
    }
}

// ----- baseline 4: leader/follower write groups ---------------------------------------------

/// Leader/follower write groups (RocksDB `JoinBatchGroup`, MuopDB write groups): appenders
/// add their frame to the open group; the first one becomes its leader, waits for the
/// previous group's I/O, then up to [`GROUP_TIMEOUT`] for more members (or until
/// [`GROUP_MAX`] joined), closes the group, writes it with one write (plus one fdatasync if a
/// member wants FullSync) and wakes the followers. NoSync appends only add to the group.
pub struct WriteGroups {
    file: PreFile,
    state: Mutex<WgState>,
    cv: Condvar,
}

struct WgState {
    buf: Vec<u8>,
    count: usize,
    want: Durability,
    /// Log offset of `buf[0]`.
    off: u64,
    /// Id of the open group.
    open: u64,
    leader: bool,
    io_busy: bool,
    /// Every group below this is written / durable.
    written: u64,
    durable: u64,
    failed: bool,
}

pub const GROUP_MAX: usize = 128;
pub const GROUP_MAX_BYTES: usize = 1 << 20;
pub const GROUP_TIMEOUT: Duration = Duration::from_micros(100);

impl WriteGroups {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(WriteGroups {
            file: PreFile::create(path, BASELINE_FILE, SMALL_WRITES_FILL)?,
            state: Mutex::new(WgState {
                buf: Vec::with_capacity(GROUP_MAX_BYTES),
                count: 0,
                want: Durability::NoSync,
                off: 0,
                open: 0,
                leader: false,
                io_busy: false,
                written: 0,
                durable: 0,
                failed: false,
            }),
            cv: Condvar::new(),
        })
    }

    fn lead(&self, s: &mut parking_lot::MutexGuard<'_, WgState>) -> io::Result<()> {
        let g = s.open;
        while s.io_busy {
            self.cv.wait(s);
        }
        let deadline = Instant::now() + GROUP_TIMEOUT;
        while s.count < GROUP_MAX && s.buf.len() < GROUP_MAX_BYTES {
            if self.cv.wait_until(s, deadline).timed_out() {
                break;
            }
        }
        let buf = std::mem::replace(&mut s.buf, Vec::with_capacity(GROUP_MAX_BYTES));
        let want = std::mem::replace(&mut s.want, Durability::NoSync);
        let off = s.off;
        s.off += buf.len() as u64;
        s.count = 0;
        s.open += 1;
        s.leader = false;
        s.io_busy = true;
        let res = parking_lot::MutexGuard::unlocked(s, || {
            self.file.write_at(off, &[&buf])?;
            if want == Durability::FullSync {
                self.file.sync()?;
            }
            Ok(())
        });
        s.io_busy = false;
        match res {
            Ok(()) => {
                s.written = g + 1;
                if want == Durability::FullSync {
                    s.durable = g + 1;
                }
            }
            Err(_) => s.failed = true,
        }
        self.cv.notify_all();
        res
    }
}

impl Wal for WriteGroups {
    fn name(&self) -> String {
        "b4 write groups".into()
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        let mut s = self.state.lock();
        let lsn = s.off + s.buf.len() as u64;
        s.buf.extend_from_slice(&frame_header(lsn, rec));
        s.buf.extend_from_slice(rec);
        s.count += 1;
        s.want = s.want.max(d);
        let g = s.open;
        let full = s.count >= GROUP_MAX || s.buf.len() >= GROUP_MAX_BYTES;
        if full && s.leader {
            self.cv.notify_all(); // the leader waiting for members can go
        }
        if d == Durability::NoSync && !full {
            return Ok(());
        }
        if !s.leader {
            s.leader = true;
            return self.lead(&mut s);
        }
        if d == Durability::NoSync {
            return Ok(());
        }
        loop {
            if s.failed {
                return Err(io::Error::other("write group failed"));
            }
            let done = if d == Durability::FullSync {
                s.durable > g
            } else {
                s.written > g
            };
            if done {
                return Ok(());
            }
            if !s.leader && s.open == g {
                // Defensive: nobody leads our still-open group, so lead it.
                s.leader = true;
                return self.lead(&mut s);
            }
            self.cv.wait(&mut s);
        }
    }
    fn reset(&self) {
        let mut s = self.state.lock();
        while s.io_busy || s.leader {
            self.cv.wait(&mut s);
        }
        if !s.buf.is_empty() {
            s.leader = true;
            let _ = self.lead(&mut s);
        }
    }
}

/// Opens the four baselines in `dir`.
pub fn baselines(dir: &Path) -> io::Result<Vec<Arc<dyn Wal>>> {
    std::fs::create_dir_all(dir)?;
    Ok(vec![
        Arc::new(SyncOnWrite::open(&dir.join("b1.dat"))?),
        Arc::new(MutexBuffer::open(&dir.join("b2.dat"))?),
        Arc::new(BackgroundSync::open(&dir.join("b3.dat"))?),
        Arc::new(WriteGroups::open(&dir.join("b4.dat"))?),
    ])
}

// ----- drivers -----------------------------------------------------------------------------

/// CPU seconds (user + system) of the whole process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Where the drivers' threads wait to be released together, and where the clock starts.
///
/// The clock must start before the release. A main thread that starts it after a
/// `Barrier::wait` returns may be preempted by the threads it just woke: on 2 cores with 64
/// appenders it started the clock milliseconds late, and a NoSync point of ~40 ms read up to
/// twice its rate (docs/performance-analysis.md, "The clock of a point").
///
/// The release itself is a `std::sync::Barrier`: its last arrival wakes every waiter at once
/// (a parking_lot condvar would hand the wake-up from one thread to the next, which for 1,000
/// threads is a far slower release).
struct StartGate {
    threads: usize,
    /// Threads that are at (or about to enter) the release barrier.
    arrived: Mutex<usize>,
    all_arrived: Condvar,
    release: std::sync::Barrier,
}

impl StartGate {
    fn new(threads: usize) -> StartGate {
        StartGate {
            threads,
            arrived: Mutex::new(0),
            all_arrived: Condvar::new(),
            release: std::sync::Barrier::new(threads + 1),
        }
    }

    /// A driven thread: parks until [`StartGate::open`].
    fn wait(&self) {
        *self.arrived.lock() += 1;
        self.all_arrived.notify_one();
        self.release.wait();
    }

    /// The driver: once all threads have arrived (outside the timed region), reads the
    /// process's CPU seconds and the clock, then releases them. Returns (start, CPU seconds).
    fn open(&self) -> (Instant, f64) {
        let mut arrived = self.arrived.lock();
        while *arrived < self.threads {
            self.all_arrived.wait(&mut arrived);
        }
        drop(arrived);
        let cpu = cpu_seconds();
        let start = Instant::now();
        self.release.wait();
        (start, cpu)
    }
}

/// What [`run_gated`] measured.
pub struct Gated<R> {
    /// The clock and the process's CPU seconds just before the release.
    pub start: Instant,
    pub cpu_at_start: f64,
    /// The latest of the threads' own clocks when their bodies returned.
    pub end: Instant,
    /// Each thread's result, in thread order.
    pub results: Vec<R>,
}

impl<R> Gated<R> {
    /// From the release until the last thread finished.
    pub fn wall(&self) -> Duration {
        self.end.duration_since(self.start)
    }
}

/// Runs `body(i)` for i in 0..threads, each on its own thread (256 KiB stack), spawned and
/// parked at a [`StartGate`] before the clock starts, then released together; `during` runs on
/// this thread after the release (e.g. to stop a timed point). Each thread reads the clock when
/// its body returns, so a driver that runs late among the threads it released cannot stretch
/// the measured time.
pub fn run_gated<R: Send>(
    threads: usize,
    body: impl Fn(usize) -> R + Sync,
    during: impl FnOnce(Instant),
) -> Gated<R> {
    let gate = StartGate::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (gate, body) = (&gate, &body);
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(s, move || {
                        gate.wait();
                        let r = body(i);
                        (r, Instant::now())
                    })
                    .expect("spawn")
            })
            .collect();
        let (start, cpu_at_start) = gate.open();
        during(start);
        let mut end = start;
        let mut results = Vec::with_capacity(threads);
        for h in handles {
            let (r, e) = h.join().expect("driven thread panicked");
            end = end.max(e);
            results.push(r);
        }
        Gated {
            start,
            cpu_at_start,
            end,
            results,
        }
    })
}

/// `total` appends of `size` bytes split over `threads` threads released at once; returns the
/// time from the release until the last thread finished. Threads are spawned before the clock
/// starts (for criterion's `iter_custom`).
pub fn run_count(
    wal: &Arc<dyn Wal>,
    threads: usize,
    size: usize,
    d: Durability,
    total: u64,
) -> Duration {
    let recs: Vec<Vec<u8>> = (0..threads)
        .map(|t| record_bytes(size, t as u64 + 1))
        .collect();
    run_gated(
        threads,
        |t| {
            let n = total / threads as u64 + u64::from((t as u64) < total % threads as u64);
            for _ in 0..n {
                wal.append(&recs[t], d).expect("append");
            }
        },
        |_| {},
    )
    .wall()
}

/// What one timed point measured.
#[derive(Clone, Debug, Default)]
pub struct Point {
    pub appends: u64,
    pub wall: f64,
    pub cpu: f64,
    /// Per-append latencies in nanoseconds, if asked for.
    pub lat_ns: Vec<u64>,
}

impl Point {
    pub fn rate(&self) -> f64 {
        self.appends as f64 / self.wall
    }
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu / self.appends as f64 * 1e6
    }
}

/// `threads` threads released together append `size`-byte records for about `dur` (or until
/// they wrote `max_bytes` together); counts appends across all threads.
pub fn run_timed(
    wal: &Arc<dyn Wal>,
    threads: usize,
    size: usize,
    d: Durability,
    dur: Duration,
    max_bytes: u64,
    latency: bool,
) -> Point {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let per_thread = (max_bytes / threads as u64 / size.max(1) as u64).max(1);
    let recs: Vec<Vec<u8>> = (0..threads)
        .map(|t| record_bytes(size, t as u64 + 1))
        .collect();
    let run = run_gated(
        threads,
        |t| {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while n < per_thread && !stop.load(Ordering::Relaxed) {
                if latency {
                    let t0 = Instant::now();
                    wal.append(&recs[t], d).expect("append");
                    if lat.len() < 4_000_000 {
                        lat.push(t0.elapsed().as_nanos() as u64);
                    }
                } else {
                    wal.append(&recs[t], d).expect("append");
                }
                n += 1;
            }
            done.fetch_add(1, Ordering::Relaxed);
            (n, lat)
        },
        |start| {
            while start.elapsed() < dur && done.load(Ordering::Relaxed) < threads as u64 {
                std::thread::sleep(Duration::from_millis(2));
            }
            stop.store(true, Ordering::Relaxed);
        },
    );
    let mut p = Point {
        wall: run.wall().as_secs_f64(),
        cpu: cpu_seconds() - run.cpu_at_start,
        ..Point::default()
    };
    for (n, lat) in run.results {
        p.appends += n;
        p.lat_ns.extend(lat);
    }
    p
}

/// A scratch directory on the real disk (not tmpfs): `$SLOTLOG_BENCH_DIR`, else `target/bench-data`.
pub fn bench_dir(default_root: &Path) -> PathBuf {
    std::env::var_os("SLOTLOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_root.join("target/bench-data"))
}
