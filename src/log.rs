//! The public handle: open, append, flush, sync, iterate, truncate, stats, close.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::buffer::{BufferConfig, LogBuffer};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::options::{Durability, Options};
use crate::recovery::recover;
use crate::scan::{Scanner, Step};
use crate::segment::{SegmentSink, Segments};
use crate::stats::Stats;
use crate::waiters::Level;

const LOCK_FILE: &str = "LOCK";

/// A write-ahead log in one directory. `Send + Sync`: share it (e.g. in an `Arc`) and append
/// from any number of threads.
///
/// ```
/// use slotlog::{Durability, Log, Lsn, Options};
/// # let dir = std::env::temp_dir().join(format!("slotlog-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let log = Log::open(&dir, Options::default().segment_size(1 << 20).slot_size(64 << 10).max_record_size(64 << 10))?;
/// let a = log.append(b"first", Durability::NoSync)?;
/// let b = log.append(b"second", Durability::FullSync)?; // a is durable too: log order
/// assert!(a < b);
/// log.close()?;
///
/// let log = Log::open(&dir, Options::default().segment_size(1 << 20).slot_size(64 << 10).max_record_size(64 << 10))?;
/// let records: Vec<(Lsn, Vec<u8>)> = log
///     .iter(Lsn::ZERO)?
///     .map(|r| r.map(|r| (r.lsn(), r.data().to_vec())))
///     .collect::<slotlog::Result<_>>()?;
/// assert_eq!(records, vec![(a, b"first".to_vec()), (b, b"second".to_vec())]);
/// # log.close()?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), slotlog::Error>(())
/// ```
pub struct Log {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

struct Inner {
    buffer: LogBuffer<SegmentSink>,
    segments: Arc<Segments>,
    options: Options,
    dir: PathBuf,
    /// The directory lock; released when taken out of here.
    lock: Mutex<Option<Box<dyn Any + Send + Sync>>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

impl Log {
    /// Opens the log in `dir`, creating the directory if needed, and recovers it (see
    /// `docs/design.md`, "Recovery"). Fails with [`Error::Locked`] while another `Log` has it
    /// open, in this process or another, and with [`Error::Corrupt`] on damage that a crash
    /// cannot explain.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let storage = options.storage.clone();
        match storage
            .kind(&dir)
            .map_err(|e| Error::io("stat", &dir, None, e))?
        {
            Some(true) => {}
            Some(false) => return Err(Error::NotADirectory { path: dir }),
            None => storage
                .create_dir_all(&dir)
                .map_err(|e| Error::io("create directory", &dir, None, e))?,
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = storage
            .lock(&lock_path)
            .map_err(|e| Error::io("lock", &lock_path, None, e))?
            .ok_or(Error::Locked { path: lock_path })?;

        let recovered = recover(storage.as_ref(), &dir, &options)?;
        let segments = Arc::new(Segments::new(
            storage.clone(),
            dir.clone(),
            recovered.geometry,
            recovered.segments,
            options.recycle_segments,
        ));
        for spare in recovered.spares {
            segments.add_spare(spare);
        }
        if segments.snapshot().is_empty() {
            segments.create_first()?;
        }
        segments.ensure(recovered.end)?;
        let config = BufferConfig {
            slot_size: options.slot_size,
            slot_pool: options.slot_pool,
        };
        let buffer = LogBuffer::new(SegmentSink(segments.clone()), config, recovered.end);
        let inner = Arc::new(Inner {
            buffer,
            segments: segments.clone(),
            options: options.clone(),
            dir,
            lock: Mutex::new(Some(lock)),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });

        let mut threads = Vec::new();
        let preparer = segments.clone();
        threads.push(
            std::thread::Builder::new()
                .name("slotlog-prepare".into())
                .spawn(move || preparer.run_preparer())
                .map_err(|e| Error::io("spawn thread", "slotlog-prepare", None, e))?,
        );
        if let Some(interval) = options.flush_interval {
            let weak = Arc::downgrade(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name("slotlog-flush".into())
                    .spawn(move || run_flusher(weak, interval))
                    .map_err(|e| Error::io("spawn thread", "slotlog-flush", None, e))?,
            );
        }
        Ok(Log { inner, threads })
    }

    /// Appends `record` and returns its [`Lsn`] once the record is as durable as `durability`
    /// says. Records of one thread keep their order; the order of concurrent appends is the
    /// order of their `Lsn`s.
    ///
    /// Fails with [`Error::RecordTooLarge`] (the log is unaffected) or, after an I/O failure,
    /// with [`Error::Poisoned`].
    pub fn append(&self, record: &[u8], durability: Durability) -> Result<Lsn> {
        let max = self.inner.options.max_record_size;
        if record.len() > max {
            return Err(Error::RecordTooLarge {
                len: record.len(),
                max,
            });
        }
        let level = match durability {
            Durability::NoSync => None,
            Durability::WriteOnly => Some(Level::Written),
            Durability::FullSync => Some(Level::Durable),
        };
        let lsn = self.inner.buffer.append(record, level)?;
        match durability {
            Durability::NoSync => {}
            Durability::WriteOnly => self.inner.buffer.counters.write_only_appends.inc(),
            Durability::FullSync => self.inner.buffer.counters.full_sync_appends.inc(),
        }
        Ok(Lsn(lsn))
    }

    /// Hands every record appended so far to the OS (the `WriteOnly` guarantee for all of them).
    pub fn flush(&self) -> Result<()> {
        self.inner.buffer.flush()
    }

    /// Makes every record appended so far durable (the `FullSync` guarantee for all of them).
    pub fn sync(&self) -> Result<()> {
        self.inner.buffer.sync()
    }

    /// Reads the records at or after `from` that were written when `iter` was called (call
    /// [`flush`](Log::flush) first to include the newest). Each item is a record or an error;
    /// after an error the iterator ends. A record whose checksum fails is never returned.
    pub fn iter(&self, from: Lsn) -> Result<LogIter> {
        let end = self.inner.buffer.written();
        Ok(LogIter {
            segments: self.inner.segments.clone(),
            max_record: self.max_record(),
            scanner: None,
            pos: from.0,
            from: from.0,
            end,
            done: false,
        })
    }

    fn max_record(&self) -> u64 {
        self.inner
            .segments
            .snapshot()
            .iter()
            .map(|s| s.header.max_record)
            .max()
            .unwrap_or(0)
            .max(self.inner.options.max_record_size as u64)
    }

    /// Removes the segment files that end at or before `lsn` (whole segments only; the one
    /// being written is kept). Returns how many were removed. Records before `lsn` may remain
    /// readable if their segment is kept.
    pub fn truncate_front(&self, lsn: Lsn) -> Result<usize> {
        let upto = lsn.0.min(self.inner.buffer.written());
        self.inner.segments.truncate_front(upto)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.buffer.counters.snapshot();
        s.segments_created = self
            .inner
            .segments
            .created
            .load(std::sync::atomic::Ordering::Relaxed);
        s.segments_recycled = self
            .inner
            .segments
            .recycled
            .load(std::sync::atomic::Ordering::Relaxed);
        s.segments_unprepared = self
            .inner
            .segments
            .unprepared
            .load(std::sync::atomic::Ordering::Relaxed);
        s
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The address after the last record appended so far.
    pub fn end_lsn(&self) -> Result<Lsn> {
        self.inner.buffer.reserved_end().map(Lsn)
    }

    /// The slot states, frontiers and flags as text, for hang reports and debugging.
    pub fn debug_state(&self) -> String {
        self.inner.buffer.debug_dump()
    }

    /// Makes everything durable, stops the background threads and releases the directory
    /// lock. Dropping a `Log` without `close` writes (but does not fdatasync) what is buffered.
    pub fn close(mut self) -> Result<()> {
        let synced = self.inner.buffer.sync();
        self.shutdown();
        synced
    }

    fn shutdown(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        self.inner.segments.stop_preparer();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.inner.lock.lock().take();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.inner.buffer.flush();
            self.shutdown();
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The background flusher: writes a slot of `NoSync` records that nobody else closes, so they
/// reach the file within about two intervals after traffic stops.
fn run_flusher(inner: Weak<Inner>, interval: Duration) {
    loop {
        let Some(log) = inner.upgrade() else { return };
        {
            let mut stop = log.stop.lock();
            if *stop {
                return;
            }
            log.stop_cv.wait_for(&mut stop, interval);
            if *stop {
                return;
            }
        }
        if log.buffer.close_if_nonempty().is_err() {
            return; // poisoned: the appenders report it
        }
    }
}

/// One record read back from the log.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    lsn: Lsn,
    data: Vec<u8>,
}

impl Record {
    /// The record's address, as `append` returned it.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The record's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The record's bytes, owned.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("lsn", &self.lsn)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Iterator over records, from [`Log::iter`].
pub struct LogIter {
    segments: Arc<Segments>,
    max_record: u64,
    /// Reads the segment that holds `pos`.
    scanner: Option<Scanner>,
    /// Next address to read.
    pos: u64,
    /// Records before this are skipped.
    from: u64,
    /// The written frontier when the iterator was made.
    end: u64,
    done: bool,
}

impl LogIter {
    fn next_record(&mut self) -> Result<Option<Record>> {
        while self.pos < self.end {
            let scanner = match &mut self.scanner {
                Some(s) if s.segment().base() <= self.pos && self.pos < s.segment().end() => s,
                slot => {
                    // Frames are only found by walking a segment from its start.
                    let list = self.segments.snapshot();
                    let i = list.partition_point(|s| s.end() <= self.pos);
                    let Some(seg) = list.get(i).cloned() else {
                        return Ok(None);
                    };
                    self.pos = seg.base();
                    *slot = Some(Scanner::new(seg, self.segments.seed(), self.max_record));
                    // The new position may be the end already.
                    continue;
                }
            };
            match scanner.step(self.pos)? {
                Step::Record { total } => {
                    let lsn = self.pos;
                    self.pos += total;
                    if lsn >= self.from && lsn < self.end {
                        return Ok(Some(Record {
                            lsn: Lsn(lsn),
                            data: scanner.data().to_vec(),
                        }));
                    }
                }
                Step::SegmentEnd => self.pos = scanner.segment().end(),
                Step::Damage { reason } => {
                    let seg = scanner.segment();
                    return Err(Error::corrupt(&seg.path, seg.offset_of(self.pos), reason));
                }
            }
        }
        Ok(None)
    }
}

impl Iterator for LogIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
