//! Counters for monitoring. They are statistics, not synchronisation, so they use the standard
//! atomics directly (also under loom, where they would only multiply the explored schedules)
//! and every access is Relaxed.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// One counter, Relaxed.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const STRIPES: usize = 16;

/// Counters bumped on every append live in per-thread stripes, so that counting does not add
/// a second contended cache line to the append path.
#[derive(Default)]
struct Stripe {
    appends: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Counters {
    stripes: [CachePadded<Stripe>; STRIPES],
    pub(crate) cas_retries: Counter,
    pub(crate) slots_closed: Counter,
    pub(crate) slots_full: Counter,
    pub(crate) rotations: Counter,
    pub(crate) writes: Counter,
    pub(crate) fdatasyncs: Counter,
    pub(crate) parks: Counter,
    pub(crate) pool_waits: Counter,
    pub(crate) unbuffered: Counter,
    pub(crate) pads: Counter,
    pub(crate) write_only_appends: Counter,
    pub(crate) full_sync_appends: Counter,
}

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        i.get()
    })
}

impl Counters {
    pub(crate) fn record_append(&self, bytes: usize) {
        let s = &self.stripes[stripe_index()];
        s.appends.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn appends_and_bytes(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(a, b), s| {
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
    /// Records appended (every durability level).
    pub appends: u64,
    /// Record bytes appended (without framing).
    pub bytes: u64,
    /// Appends with `WriteOnly`.
    pub write_only_appends: u64,
    /// Appends with `FullSync`.
    pub full_sync_appends: u64,
    /// Slots closed (for any reason).
    pub slots_closed: u64,
    /// Slots closed because a record did not fit.
    pub slots_closed_full: u64,
    /// Failed CAS attempts while joining a slot (contention on the state word).
    pub cas_retries: u64,
    /// Times a thread parked (slept) waiting: for a frontier, a rotation or a free slot.
    pub parks: u64,
    /// Times a rotation waited for a free pool slot.
    pub pool_waits: u64,
    /// `write` calls that wrote a slot buffer or an unbuffered record.
    pub writes: u64,
    /// `fdatasync` calls on segment files by the group commit.
    pub fdatasyncs: u64,
    /// Records larger than half a slot, written directly from the caller's memory.
    pub unbuffered_records: u64,
    /// Segment ends padded because the next frame did not fit.
    pub pads: u64,
    /// Spare segment files zero-filled by the background preparer.
    pub segments_created: u64,
    /// Segments installed from a spare file (zero-filled, or kept by `truncate_front`).
    pub segments_recycled: u64,
    /// Segments a writer created sparse on the append path because no spare was ready (the
    /// preparer fell behind); the first fdatasyncs into them cost more.
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
            parks: self.parks.get(),
            pool_waits: self.pool_waits.get(),
            writes: self.writes.get(),
            fdatasyncs: self.fdatasyncs.get(),
            unbuffered_records: self.unbuffered.get(),
            pads: self.pads.get(),
            segments_created: 0,
            segments_recycled: 0,
            segments_unprepared: 0,
        }
    }
}
