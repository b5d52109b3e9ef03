//! The public handle: open, append, flush, sync, iterate, truncate, stats, close.

use std::any::Any;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::buffer::{BufferConfig, LogBuffer, TaskWait};
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
    /// The driver thread of async waits, started by the first one (`Log::driver`).
    driver: Mutex<Option<JoinHandle<()>>>,
    /// Set once the driver runs, so that async waits need not take the `driver` lock.
    driver_started: AtomicBool,
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
            None => {
                storage
                    .create_dir_all(&dir)
                    .map_err(|e| Error::io("create directory", &dir, None, e))?;
                // The new directory's entry must be durable too, or a power cut could take the
                // whole log, FullSync records and all (a file system without a journal, as
                // here, promises nothing else). Directories above it that `create_dir_all`
                // made are the caller's to sync.
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                storage
                    .sync_dir(parent)
                    .map_err(|e| Error::io("fsync", parent, None, e))?;
            }
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
        if recovered.end < crate::format::MAX_ADDRESS {
            segments.ensure(recovered.end, false)?;
        } // else the log's address space is used up: it stays readable, and appends fail.
        let config = BufferConfig {
            slot_size: options.slot_bytes(),
            slot_pool: options.slot_pool,
            lanes: options.lane_count(),
            lane_chunk: options.lane_chunk(),
            max_unsynced: options.max_unsynced,
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
            driver: Mutex::new(None),
            driver_started: AtomicBool::new(false),
        });

        // Threads are added to the `Log` as they start: if a later one fails to start, dropping
        // the `Log` stops and joins the ones already running.
        let mut log = Log {
            inner,
            threads: Vec::new(),
        };
        let preparer = segments.clone();
        log.threads.push(
            std::thread::Builder::new()
                .name("slotlog-prepare".into())
                .spawn(move || preparer.run_preparer())
                .map_err(|e| Error::io("spawn thread", "slotlog-prepare", None, e))?,
        );
        if let Some(interval) = options.flush_interval {
            let weak = Arc::downgrade(&log.inner);
            log.threads.push(
                std::thread::Builder::new()
                    .name("slotlog-flush".into())
                    .spawn(move || run_flusher(weak, interval))
                    .map_err(|e| Error::io("spawn thread", "slotlog-flush", None, e))?,
            );
        }
        if options.max_unsynced.is_some() {
            // It runs the fdatasyncs that keep writers under the bound ("Bounded unsynced
            // bytes" in docs/design.md).
            log.driver()?;
        }
        Ok(log)
    }

    /// Appends `record` and returns its [`Lsn`] once the record is as durable as `durability`
    /// says. Records of one thread keep their order; the order of concurrent appends is the
    /// order of their `Lsn`s.
    ///
    /// Fails with [`Error::RecordTooLarge`] (the log is unaffected) or, after an I/O failure,
    /// with [`Error::Poisoned`] (whatever the record's size).
    pub fn append(&self, record: &[u8], durability: Durability) -> Result<Lsn> {
        self.check_size(record)?;
        let lsn = self.inner.buffer.append(record, level(durability))?;
        self.count(durability);
        Ok(Lsn(lsn))
    }

    /// Appends `record` now and returns a future that resolves to its [`Lsn`] once the record
    /// is as durable as `durability` says: the same guarantee as [`append`](Log::append), for
    /// async code. It works with any executor.
    ///
    /// **The append happens in this call**, not at the first poll; only the wait is async.
    /// Dropping the future stops the wait, not the append, so call this once per record (a
    /// `select!` loop that re-creates it on every turn appends on every turn).
    ///
    /// **What can block the calling thread**: placing the record, exactly as a `NoSync`
    /// [`append`](Log::append) can. It may wait briefly for a rotation or a free slot (behind
    /// other threads' writes); if the record completes a slot, this call writes the slot (one
    /// `pwrite` into the page cache); and if the log outruns its segment preparer, that write
    /// first creates the next segment file (an fdatasync of a spare file and of the directory).
    /// With [`Options::max_unsynced`] set, a write that would pass the bound first waits for an
    /// fdatasync, and may run it, on the calling thread: when appends outrun the disk,
    /// backpressure reaches tasks too (a poll that writes a slot, below, likewise).
    /// Otherwise it never waits for its own record's write or fdatasync: a driver thread of the log,
    /// started by the first async wait, closes slots and runs the fdatasyncs, and one fdatasync
    /// wakes every task it covers. Polling a `FullSync` future never blocks; polling a
    /// `WriteOnly` one may close the record's slot when no write is in progress and then write
    /// it, the same `pwrite` as above (it saves a driver round trip per write). Dropping the last handle to
    /// the log (or calling [`close`](Log::close)) flushes and joins the log's threads: do that
    /// outside the executor, e.g. in `spawn_blocking`.
    ///
    /// The future borrows the log: in a spawned task, move an `Arc<Log>` into the task and call
    /// this inside it.
    ///
    /// ```
    /// use slotlog::{Durability, Log, Options};
    /// # let dir = std::env::temp_dir().join(format!("slotlog-async-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = Log::open(&dir, Options::default().segment_size(1 << 20).slot_size(64 << 10).max_record_size(64 << 10))?;
    /// // In an async fn: `let lsn = log.append_async(b"put k v", Durability::FullSync).await?;`
    /// let lsn = block_on(log.append_async(b"put k v", Durability::FullSync))?;
    /// let batch_end = log.append(b"put k2 v2", Durability::NoSync)?;
    /// block_on(log.wait_async(batch_end, Durability::FullSync))?; // both are durable now
    /// assert!(lsn < batch_end);
    /// # log.close()?;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # // A minimal executor, so that the example needs no runtime crate.
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// # Ok::<(), slotlog::Error>(())
    /// ```
    pub fn append_async(&self, record: &[u8], durability: Durability) -> Wait<'_> {
        // The driver first: an error after placing would invite a retry that appends twice.
        if level(durability).is_some() {
            if let Err(e) = self.driver() {
                return Wait::ready(Err(e));
            }
        }
        let placed = self
            .check_size(record)
            .and_then(|()| self.inner.buffer.place_for_task(record, level(durability)));
        match placed {
            Ok((lsn, end)) => {
                self.count(durability);
                self.wait_until(Lsn(lsn), end, durability)
            }
            Err(e) => Wait::ready(Err(e)),
        }
    }

    /// A future that resolves once every record at or before `lsn` is as durable as
    /// `durability` says (if `lsn` lies beyond the end of the log: every record appended before
    /// this call; the future still resolves to `lsn`, which is then no record's address). For
    /// records appended with a weaker level, e.g. a batch of `NoSync` appends made durable by
    /// waiting for the last one. Waits as [`append_async`](Log::append_async) does; reading the
    /// log's end during this call does not wait (docs/design.md, "Reading the end").
    pub fn wait_async(&self, lsn: Lsn, durability: Durability) -> Wait<'_> {
        match self.inner.buffer.reserved_end() {
            // The frontiers stop only at record ends, so passing `lsn` covers the record there.
            Ok(end) => self.wait_until(lsn, lsn.0.saturating_add(1).min(end), durability),
            Err(e) => Wait::ready(Err(e)),
        }
    }

    /// Blocks until every record at or before `lsn` is as durable as `durability` says: the
    /// blocking form of [`wait_async`](Log::wait_async), with the same meaning of an `lsn`
    /// beyond the end of the log. For a batch of `NoSync` appends made durable by one wait for
    /// the last of them. It returns at once if `lsn` already is that durable, and otherwise
    /// joins the group commit that covers `lsn` as a waiting append would (it may close the
    /// active slot, write it, or run the fdatasync). [`sync`](Log::sync) instead waits for
    /// everything appended so far, including other threads' records appended after `lsn`.
    ///
    /// Fails with [`Error::Poisoned`] after an I/O failure (also for `NoSync`, as
    /// `wait_async` does).
    ///
    /// ```
    /// use slotlog::{Durability, Log, Options};
    /// # let dir = std::env::temp_dir().join(format!("slotlog-wait-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let log = Log::open(&dir, Options::default().segment_size(1 << 20).slot_size(64 << 10).max_record_size(64 << 10))?;
    /// let mut last = log.append(b"entry 1", Durability::NoSync)?;
    /// for entry in [&b"entry 2"[..], b"entry 3"] {
    ///     last = log.append(entry, Durability::NoSync)?;
    /// }
    /// log.wait(last, Durability::FullSync)?; // all three are durable now
    /// let syncs = log.stats().fdatasyncs;
    /// log.wait(last, Durability::FullSync)?; // already durable: no new fdatasync
    /// assert_eq!(log.stats().fdatasyncs, syncs);
    /// # log.close()?;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), slotlog::Error>(())
    /// ```
    pub fn wait(&self, lsn: Lsn, durability: Durability) -> Result<Lsn> {
        let end = self.inner.buffer.reserved_end()?;
        let Some(level) = level(durability) else {
            return Ok(lsn);
        };
        // The frontiers stop only at record ends, so passing `lsn` covers the record there.
        self.inner
            .buffer
            .wait_for(lsn.0.saturating_add(1).min(end), level)?;
        Ok(lsn)
    }

    fn wait_until(&self, lsn: Lsn, need: u64, durability: Durability) -> Wait<'_> {
        let Some(level) = level(durability) else {
            return Wait::ready(Ok(lsn));
        };
        if let Err(e) = self.driver() {
            return Wait::ready(Err(e));
        }
        Wait(WaitState::Waiting {
            lsn,
            wait: self.inner.buffer.wait_task(need, level),
        })
    }

    /// Starts the driver thread of async waits if it is not running.
    fn driver(&self) -> Result<()> {
        // Relaxed: the flag only skips the lock; the driver was spawned before it was set, and
        // nothing is read through it.
        if self.inner.driver_started.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut driver = self.inner.driver.lock();
        if driver.is_none() {
            let inner = self.inner.clone();
            let thread = std::thread::Builder::new()
                .name("slotlog-driver".into())
                .spawn(move || inner.buffer.run_driver())
                .map_err(|e| Error::io("spawn thread", "slotlog-driver", None, e))?;
            *driver = Some(thread);
            // Relaxed: see the load above.
            self.inner.driver_started.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn check_size(&self, record: &[u8]) -> Result<()> {
        let max = self.inner.options.max_record_size;
        if record.len() > max {
            // A poisoned log says so first: that is what the caller must act on.
            self.inner.buffer.check_poison()?;
            return Err(Error::RecordTooLarge {
                len: record.len(),
                max,
            });
        }
        Ok(())
    }

    fn count(&self, durability: Durability) {
        match durability {
            Durability::NoSync => {}
            Durability::WriteOnly => self.inner.buffer.counters.write_only_appends.inc(),
            Durability::FullSync => self.inner.buffer.counters.full_sync_appends.inc(),
        }
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
    ///
    /// A `from` below [`start_lsn`](Log::start_lsn) starts at the oldest record still held.
    /// If [`truncate_front`](Log::truncate_front) removes records the iterator has not read
    /// yet, it ends with [`Error::Truncated`] once it needs them.
    pub fn iter(&self, from: Lsn) -> Result<LogIter> {
        self.inner.buffer.check_poison()?;
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
    /// readable if their segment is kept. Calls run one at a time. A segment leaves the log
    /// ([`start_lsn`](Log::start_lsn), iterators) once its removal is durable, so `start_lsn`
    /// never moves back. On an error, the segments it had not removed yet stay in the log (a
    /// later call removes them), and the log is not poisoned.
    pub fn truncate_front(&self, lsn: Lsn) -> Result<usize> {
        self.inner.buffer.check_poison()?;
        let upto = lsn.0.min(self.inner.buffer.written());
        self.inner.segments.truncate_front(upto)
    }

    /// A snapshot of the counters. They only grow, so a monitor subtracts two snapshots:
    ///
    /// ```
    /// # fn main() -> slotlog::Result<()> {
    /// use slotlog::{Durability, Log, Options};
    /// use std::time::Instant;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default())?;
    /// let (before, since) = (log.stats(), Instant::now());
    /// for _ in 0..10 {
    ///     log.append(b"event", Durability::FullSync)?;
    /// }
    /// let (now, secs) = (log.stats(), since.elapsed().as_secs_f64());
    /// let syncs = now.fdatasyncs - before.fdatasyncs;
    /// let sync_secs = (now.fdatasync_nanos - before.fdatasync_nanos) as f64 * 1e-9;
    /// // One fdatasync at a time: the share of the interval one was running, at most 1.
    /// let busy = sync_secs / secs;
    /// let grouped = (now.full_sync_appends - before.full_sync_appends) as f64 / syncs as f64;
    /// assert!(syncs >= 1 && busy <= 1.0 && grouped >= 1.0); // records per fdatasync
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        let mut s = self.inner.buffer.counters.snapshot();
        s.segments_created = self.inner.segments.created.load(Ordering::Relaxed);
        s.segments_recycled = self.inner.segments.recycled.load(Ordering::Relaxed);
        s.segments_sparse = self.inner.segments.sparse.load(Ordering::Relaxed);
        s.segments_unprepared = self.inner.segments.unprepared.load(Ordering::Relaxed);
        s
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The address of the oldest record the log still holds: the start of its first segment
    /// file. `iter(log.start_lsn())` reads all of it, and `end_lsn - start_lsn` is what an
    /// engine's checkpointer watches to bound the log. [`Log::truncate_front`] removes whole
    /// segments only, so this may stay below the address truncated to:
    ///
    /// ```
    /// # fn main() -> slotlog::Result<()> {
    /// use slotlog::{Durability, Log, Options};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default())?;
    /// let first = log.append(b"checkpointed", Durability::NoSync)?;
    /// let second = log.append(b"live", Durability::FullSync)?;
    /// log.truncate_front(second)?; // the segment holding both records stays
    /// assert_eq!(log.start_lsn(), first);
    /// let rest: Vec<_> = log.iter(log.start_lsn())?.collect::<Result<_, _>>()?;
    /// assert_eq!(rest.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn start_lsn(&self) -> Lsn {
        Lsn(self.inner.segments.first_base())
    }

    /// The address after the last record appended so far: every append that returned before
    /// this call lies below it. Does not wait for appenders (if a rotation is under way, it is
    /// the end of the slot just closed). An append that starts later may still get a lower
    /// address, inside a lane's chunk reserved earlier (`Options::lanes`).
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
        self.inner.buffer.stop_driver();
        let driver = self.inner.driver.lock().take();
        for t in self.threads.drain(..).chain(driver) {
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

fn level(durability: Durability) -> Option<Level> {
    match durability {
        Durability::NoSync => None,
        Durability::WriteOnly => Some(Level::Written),
        Durability::FullSync => Some(Level::Durable),
    }
}

/// The future of [`Log::append_async`] and [`Log::wait_async`]: resolves to the record's
/// [`Lsn`] once it is as durable as asked, or to the error that prevents it
/// ([`Error::Poisoned`] after an I/O failure, [`Error::RecordTooLarge`]). `Send`; dropping it
/// stops waiting (the record stays appended).
#[must_use = "the record is appended, but nothing waits for its durability unless this is awaited"]
pub struct Wait<'a>(WaitState<'a>);

enum WaitState<'a> {
    Ready(Option<Result<Lsn>>),
    Waiting {
        lsn: Lsn,
        wait: TaskWait<'a, SegmentSink>,
    },
}

impl Wait<'_> {
    fn ready(result: Result<Lsn>) -> Self {
        Wait(WaitState::Ready(Some(result)))
    }
}

impl Future for Wait<'_> {
    type Output = Result<Lsn>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Lsn>> {
        match &mut self.get_mut().0 {
            WaitState::Ready(result) => {
                Poll::Ready(result.take().expect("`Wait` polled after it resolved"))
            }
            WaitState::Waiting { lsn, wait } => {
                let lsn = *lsn;
                Pin::new(wait).poll(cx).map(|r| r.map(|()| lsn))
            }
        }
    }
}

impl std::fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wait").finish_non_exhaustive()
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
        // A panic while closing or writing poisons through the buffer's own guards; this one
        // also covers the rest of the flusher's turn, as the driver's does.
        let cause = Error::BackgroundPanic {
            thread: "slotlog-flush",
        };
        if log
            .buffer
            .poison_if_unwinds(cause, || log.buffer.close_if_nonempty())
            .is_err()
        {
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
    fn truncated(&self, first: u64) -> Error {
        Error::Truncated {
            lsn: Lsn(self.pos),
            start: Lsn(first),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        while self.pos < self.end {
            let scanner = match &mut self.scanner {
                Some(s) if s.segment().base() <= self.pos && self.pos < s.segment().end() => s,
                slot => {
                    // Frames are only found by walking a segment from its start.
                    let list = self.segments.snapshot();
                    let first = list.first().map_or(0, |s| s.base());
                    if slot.is_some() && self.pos < first {
                        // Mid-way, not at the start: the rest of what we were reading is gone.
                        return Err(self.truncated(first));
                    }
                    let i = list.partition_point(|s| s.end() <= self.pos);
                    let Some(seg) = list.get(i).cloned() else {
                        return Ok(None);
                    };
                    self.pos = seg.base();
                    *slot = Some(Scanner::new(
                        seg,
                        self.segments.frame_crc().clone(),
                        self.max_record,
                    ));
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
                Step::Pad { total } => self.pos += total,
                Step::SegmentEnd => self.pos = scanner.segment().end(),
                Step::Damage { reason } => {
                    // A segment removed by `truncate_front` while we read it may have been
                    // reused and overwritten: no damage, but its records are gone. (Nothing
                    // wrong is ever returned: a frame verifies only at its own address.)
                    let first = self.segments.first_base();
                    if self.pos < first {
                        return Err(self.truncated(first));
                    }
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
