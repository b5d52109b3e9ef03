//! Counters for monitoring. They are statistics, not synchronisation, so they use the standard
//! atomics directly (also under loom, where they would only multiply the explored schedules)
//! and every access is Relaxed: a snapshot taken while appends run is a consistent count of
//! some recent moment per counter, not across counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// One counter, Relaxed.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Stripes with a single owner thread each. A thread takes an ordinal on first use and gives
/// it back when it exits; the first `OWNED` live threads own a stripe and count with a plain
/// load and store (no locked instruction: counting costed as much as joining a slot with
/// `fetch_add`), any further threads share one stripe with `fetch_add`.
const OWNED: usize = 64;

/// Per-thread append counters.
#[derive(Default)]
struct Stripe {
    appends: AtomicU64,
    bytes: AtomicU64,
}

/// A thread's ordinal, returned to the free list when the thread exits.
struct Ordinal(usize);

static FREE_ORDINALS: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());
static NEXT_ORDINAL: AtomicUsize = AtomicUsize::new(0);

impl Ordinal {
    fn take() -> Ordinal {
        // The mutex orders the previous owner's last counter stores before our first loads.
        let reused = FREE_ORDINALS.lock().pop();
        Ordinal(reused.unwrap_or_else(|| NEXT_ORDINAL.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for Ordinal {
    fn drop(&mut self) {
        FREE_ORDINALS.lock().push(self.0);
    }
}

fn ordinal() -> usize {
    thread_local!(static ORDINAL: Ordinal = Ordinal::take());
    // A thread that is being torn down counts in the shared stripe.
    ORDINAL.try_with(|o| o.0).unwrap_or(usize::MAX)
}

#[derive(Default)]
pub(crate) struct Counters {
    owned: Box<[CachePadded<Stripe>]>,
    shared: CachePadded<Stripe>,
    pub(crate) cas_retries: Counter,
    pub(crate) slots_closed: Counter,
    pub(crate) slots_full: Counter,
    pub(crate) rotations: Counter,
    pub(crate) writes: Counter,
    pub(crate) fdatasyncs: Counter,
    pub(crate) fdatasync_nanos: Counter,
    pub(crate) parks: Counter,
    pub(crate) follower_parks: Counter,
    pub(crate) pool_waits: Counter,
    pub(crate) unsynced_waits: Counter,
    pub(crate) unbuffered: Counter,
    pub(crate) pads: Counter,
    pub(crate) lane_chunks: Counter,
    pub(crate) lane_pad_bytes: Counter,
    pub(crate) write_only_appends: Counter,
    pub(crate) full_sync_appends: Counter,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            owned: (0..OWNED)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
            ..Counters::default()
        }
    }

    pub(crate) fn record_append(&self, bytes: usize) {
        match self.owned.get(ordinal()) {
            Some(s) => {
                // Relaxed load + store: this thread is the stripe's only writer.
                s.appends
                    .store(s.appends.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                s.bytes.store(
                    s.bytes.load(Ordering::Relaxed) + bytes as u64,
                    Ordering::Relaxed,
                );
            }
            None => {
                self.shared.appends.fetch_add(1, Ordering::Relaxed);
                self.shared.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
        }
    }

    fn appends_and_bytes(&self) -> (u64, u64) {
        self.owned
            .iter()
            .chain(std::iter::once(&self.shared))
            .fold((0, 0), |(a, b), s| {
                (
                    a + s.appends.load(Ordering::Relaxed),
                    b + s.bytes.load(Ordering::Relaxed),
                )
            })
    }
}

/// A snapshot of the log's counters, from [`Log::stats`](crate::Log::stats). All counts are
/// since `open`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended (every durability level), counted when the record is placed in the
    /// log: a call that then fails waiting for its durability (a poisoned log) counts too.
    pub appends: u64,
    /// Record bytes appended (without framing).
    pub bytes: u64,
    /// Appends with `WriteOnly`: counted when [`Log::append`](crate::Log::append) returns
    /// `Ok`, or when [`Log::append_async`](crate::Log::append_async) places the record.
    pub write_only_appends: u64,
    /// Appends with `FullSync`, counted as `write_only_appends` is.
    pub full_sync_appends: u64,
    /// Slots closed (for any reason).
    pub slots_closed: u64,
    /// Slots closed because a record did not fit.
    pub slots_closed_full: u64,
    /// Failed CAS attempts while joining a slot (contention on the state word).
    pub cas_retries: u64,
    /// Lane chunks finished: each carried a run of small `NoSync` records of one CPU, joined
    /// into a slot as one block ("Lanes" in `docs/design.md`); a chunk finished with no record
    /// in it (all padding) counts too.
    pub lane_chunks: u64,
    /// Bytes of padding written for the unused rest of lane chunks: a chunk is cut short when
    /// its slot closes (a durable append, `flush`, or the flusher's tick), and a whole chunk is
    /// padding when claimers race for a lane or a thread gives one back to keep its records in
    /// order.
    pub lane_pad_bytes: u64,
    /// Times a thread parked (slept) waiting: for a frontier, a rotation or a free slot.
    pub parks: u64,
    /// Of `parks`, those of a frontier waiter that slept as a follower: another waiter of the
    /// same slot was registered already, and one futex wake per slot woke them all.
    pub follower_parks: u64,
    /// Times a rotation waited for a free pool slot.
    pub pool_waits: u64,
    /// Slot writes and extents (an unbuffered record, a segment end's padding) that first
    /// waited for an fdatasync because they would have
    /// put more than [`Options::max_unsynced`](crate::Options::max_unsynced) bytes beyond the
    /// durable frontier (always zero without that bound). Rising: appends outpace the disk.
    pub unsynced_waits: u64,
    /// `write` calls that wrote a slot buffer or an unbuffered record.
    pub writes: u64,
    /// Group commits: each made everything written so far durable, with one `fdatasync` per
    /// segment file it touched (one, unless the bytes since the last cross a segment end).
    pub fdatasyncs: u64,
    /// Wall-clock nanoseconds spent in those `fdatasync` calls. One runs at a time, so over an
    /// interval `Δfdatasync_nanos / Δelapsed` is the fraction of time the log kept an
    /// fdatasync running (how busy group commit keeps the device), and
    /// [`Stats::mean_fdatasync`] is their mean latency.
    pub fdatasync_nanos: u64,
    /// Records larger than half a slot, written directly from the caller's memory.
    pub unbuffered_records: u64,
    /// Segment ends padded because the next frame did not fit.
    pub pads: u64,
    /// Spare segment files zero-filled by the background preparer (and a new log's first
    /// segment, zero-filled inside `open`).
    pub segments_created: u64,
    /// Segments installed from a spare file (zero-filled, or kept by `truncate_front`).
    pub segments_recycled: u64,
    /// Segments made as new sparse files because no spare was ready: by the preparer for a log
    /// that has not fdatasynced since its last segment (by design: zero-filling only pays off
    /// for fdatasync), or by a writer (below). Their first writes allocate page-cache pages, and
    /// the first fdatasyncs into them cost more.
    pub segments_sparse: u64,
    /// Segments a writer had to install itself on the append path because the preparer was
    /// behind (from a spare if one was ready, else sparse): an fdatasync and a directory fsync
    /// that every appender behind that writer waits for.
    pub segments_unprepared: u64,
}

impl Stats {
    /// Records per slot or unbuffered write: how much the slots consolidate.
    pub fn records_per_write(&self) -> f64 {
        self.appends as f64 / self.writes.max(1) as f64
    }

    /// `FullSync` records per fdatasync: how much group commit shares one fdatasync.
    pub fn records_per_fdatasync(&self) -> f64 {
        self.full_sync_appends as f64 / self.fdatasyncs.max(1) as f64
    }

    /// Mean latency of the group commit's `fdatasync` calls since `open` (zero before the
    /// first). For an interval, subtract two snapshots' `fdatasync_nanos` and `fdatasyncs`.
    pub fn mean_fdatasync(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.fdatasync_nanos / self.fdatasyncs.max(1))
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let (appends, bytes) = self.appends_and_bytes();
        Stats {
            appends,
            bytes,
            write_only_appends: self.write_only_appends.get(),
            full_sync_appends: self.full_sync_appends.get(),
            slots_closed: self.slots_closed.get(),
            slots_closed_full: self.slots_full.get(),
            cas_retries: self.cas_retries.get(),
            lane_chunks: self.lane_chunks.get(),
            lane_pad_bytes: self.lane_pad_bytes.get(),
            parks: self.parks.get(),
            follower_parks: self.follower_parks.get(),
            pool_waits: self.pool_waits.get(),
            unsynced_waits: self.unsynced_waits.get(),
            writes: self.writes.get(),
            fdatasyncs: self.fdatasyncs.get(),
            fdatasync_nanos: self.fdatasync_nanos.get(),
            unbuffered_records: self.unbuffered.get(),
            pads: self.pads.get(),
            segments_created: 0,
            segments_recycled: 0,
            segments_sparse: 0,
            segments_unprepared: 0,
        }
    }
}
