//! Threads parked until a frontier passes the log address they need.
//!
//! A parked thread waits on a frontier (written or durable) for an address in one slot or
//! extent, its *unit* (a sequence number). The frontiers move in whole units, so every waiter of
//! a unit is satisfied by the same frontier move. The first waiter of a unit (and every waiter
//! that does not name a unit: `flush`, `sync`) registers in the list with its own [`Event`]: it
//! is the unit's *representative*. The others sleep on a shared per-unit bucket event, so that
//! a frontier move wakes a unit's followers with one futex syscall (measured here: 5.5 CPU-µs
//! per woken thread instead of 9.5 with one syscall each, `docs/performance-analysis.md`).
//!
//! A thread that moves a frontier wakes the buckets of the units it passed, the representatives
//! it satisfied, and at most two *drivers*: representatives whose need is not met and who can
//! now make progress themselves (run the next fdatasync, or close the active slot). Followers
//! are never drivers; their unit's representative stays registered until the unit is passed,
//! which satisfies the followers too. See `docs/design.md`, "Waiting".
//!
//! An async task waits as a representative too, with its [`Waker`] instead of a parked thread
//! (`register_task`). Tasks are never drivers: the work they need is done by the buffer's driver
//! thread, so that no executor thread blocks in an fdatasync (`docs/design.md`, "Async waits").

use std::task::Waker;

use crossbeam_utils::CachePadded;

use crate::sync::{fence, Arc, AtomicBool, AtomicUsize, Event, Mutex, Ordering, WAIT_BUCKETS};

/// Which frontier a waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// The written frontier: bytes handed to the OS.
    Written = 1,
    /// The durable frontier: bytes covered by a finished fdatasync.
    Durable = 2,
}

/// What a waiting thread or task shares with the threads that wake it.
pub(crate) struct Waiter {
    /// Where a thread parks (unused by a task).
    pub(crate) event: Event,
    /// A task's waker, replaced at every poll and taken by the notification; `None` for a
    /// thread.
    waker: Option<Mutex<Option<Waker>>>,
    /// Set (under the list lock) when a waker removed the entry, so that the waiter can leave
    /// without taking the lock and searching the list.
    removed: AtomicBool,
}

impl Waiter {
    fn new(waker: Option<Waker>) -> Arc<Waiter> {
        Arc::new(Waiter {
            event: Event::new(),
            waker: waker.map(|w| Mutex::new(Some(w))),
            removed: AtomicBool::new(false),
        })
    }

    fn is_task(&self) -> bool {
        self.waker.is_some()
    }

    /// Wakes the thread or the task.
    fn notify(&self) {
        match &self.waker {
            None => self.event.notify_all(),
            // Taken under the lock that `set_waker` holds, so a poll that installs a new waker
            // either is woken through it or, locking after us, re-checks after our caller's
            // frontier store (it happens before this lock). Called after the lock is released.
            Some(slot) => {
                let waker = slot.lock().take();
                if let Some(w) = waker {
                    // A waker belongs to the task's executor; if it panics, the panic must not
                    // unwind through whichever thread moved the frontier (an appender, the
                    // driver) and leave the waiters after it un-woken. It is dropped: that
                    // task's executor is broken, and the log is not.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
                }
            }
        }
    }

    /// Installs the waker of the task's latest poll.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        if let Some(slot) = &self.waker {
            let mut w = slot.lock();
            if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *w = Some(waker.clone());
            }
        }
    }
}

struct Entry {
    need: u64,
    level: Level,
    /// The unit (slot or extent sequence number) `need` lies in, if the waiter named one.
    unit: Option<u64>,
    waiter: Arc<Waiter>,
}

pub(crate) struct WaitList {
    /// The representatives.
    entries: Mutex<Vec<Entry>>,
    /// Entries in the list; lets `wake` skip the lock when nobody waits.
    len: AtomicUsize,
    /// Where followers sleep: `buckets[level][unit % WAIT_BUCKETS]`. Units that share a bucket
    /// only cost each other spurious wake-ups.
    buckets: [Box<[CachePadded<Event>]>; 2],
}

/// Where a registered waiter sleeps.
pub(crate) enum Sleeper<'a> {
    /// A representative: its own event, and an entry in the list to remove when it leaves.
    Representative(Arc<Waiter>),
    /// A follower: its unit's bucket event; nothing to remove.
    Follower(&'a Event),
}

impl Sleeper<'_> {
    pub(crate) fn event(&self) -> &Event {
        match self {
            Sleeper::Representative(w) => &w.event,
            Sleeper::Follower(e) => e,
        }
    }
}

/// The units a frontier move passed: their followers are woken. `None` if it passed none.
pub(crate) type Passed = Option<(Level, std::ops::Range<u64>)>;

/// What a frontier change makes possible, besides satisfying waiters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Work {
    /// No fdatasync is running: a waiter whose bytes are written can start one.
    pub(crate) sync: bool,
    /// Every closed slot is written (the write pipe is idle): a waiter whose bytes are in the
    /// active slot can close it.
    pub(crate) close: bool,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        let bucket_set = || {
            (0..WAIT_BUCKETS)
                .map(|_| CachePadded::new(Event::new()))
                .collect::<Box<[_]>>()
        };
        WaitList {
            entries: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
            buckets: [bucket_set(), bucket_set()],
        }
    }

    fn bucket(&self, level: Level, unit: u64) -> &Event {
        let set = &self.buckets[level as usize - 1];
        &set[(unit % set.len() as u64) as usize]
    }

    /// Registers a waiter for `need` on `level`, in `unit` if the caller knows it. The caller
    /// must take a key of the returned sleeper's event, then re-check its condition, before it
    /// sleeps.
    pub(crate) fn register(&self, need: u64, level: Level, unit: Option<u64>) -> Sleeper<'_> {
        let mut list = self.entries.lock();
        if let Some(u) = unit {
            if list.iter().any(|e| e.level == level && e.unit == Some(u)) {
                // The unit has a representative, which stays registered until the unit is
                // passed; the thread that passes it notifies this bucket after storing the
                // frontier (`wake_units`), so the event's key/re-check contract suffices.
                return Sleeper::Follower(self.bucket(level, u));
            }
        }
        let waiter = Waiter::new(None);
        self.push(&mut list, need, level, unit, waiter.clone());
        drop(list);
        // SeqCst fence, paired with the one in `wake`: either `wake` sees `len > 0`, or the
        // caller's re-check (after this) sees the frontier that `wake`'s caller stored.
        fence(Ordering::SeqCst);
        Sleeper::Representative(waiter)
    }

    /// Registers a task waiting for `need` on `level`; `wake` (or `wake_all`) calls `waker`.
    /// Like [`Self::register`], the caller must re-check its condition afterwards.
    pub(crate) fn register_task(&self, need: u64, level: Level, waker: &Waker) -> Arc<Waiter> {
        let waiter = Waiter::new(Some(waker.clone()));
        let mut list = self.entries.lock();
        self.push(&mut list, need, level, None, waiter.clone());
        drop(list);
        // SeqCst fence: as in `register`.
        fence(Ordering::SeqCst);
        waiter
    }

    fn push(
        &self,
        list: &mut Vec<Entry>,
        need: u64,
        level: Level,
        unit: Option<u64>,
        waiter: Arc<Waiter>,
    ) {
        list.push(Entry {
            need,
            level,
            unit,
            waiter,
        });
        // Relaxed: the caller's SeqCst fence orders it.
        self.len.store(list.len(), Ordering::Relaxed);
    }

    /// Removes a representative that leaves (satisfied, or with an error).
    pub(crate) fn deregister(&self, sleeper: Sleeper<'_>) {
        if let Sleeper::Representative(waiter) = sleeper {
            self.deregister_waiter(&waiter);
        }
    }

    /// Removes a thread's or a task's entry, if a waker has not removed it already.
    pub(crate) fn deregister_waiter(&self, waiter: &Arc<Waiter>) {
        // Acquire: pairs with the Release store in `wake`; then the entry is gone for sure.
        if waiter.removed.load(Ordering::Acquire) {
            return;
        }
        let mut list = self.entries.lock();
        if let Some(i) = list.iter().position(|e| Arc::ptr_eq(&e.waiter, waiter)) {
            list.swap_remove(i);
        }
        self.len.store(list.len(), Ordering::Relaxed);
    }

    /// Wakes the representatives that the frontiers satisfy, and at most two drivers: the
    /// lowest representative whose bytes are written but not durable (it runs the next
    /// fdatasync), and the lowest whose bytes are not written (it closes the active slot), if
    /// the work allows; then the followers of the `passed` units. Call after storing the new
    /// frontier values. `state` returns (written, durable, work); it is called after this
    /// function's SeqCst fence, so that everything it reads is read after the fence. The
    /// drivers are woken first, so that the next group's I/O starts while the satisfied
    /// waiters are still being woken.
    pub(crate) fn wake(&self, passed: Passed, state: impl FnOnce() -> (u64, u64, Work)) {
        // SeqCst fence, paired with the one in `register`.
        fence(Ordering::SeqCst);
        if self.len.load(Ordering::Relaxed) == 0 {
            self.wake_units(passed);
            return;
        }
        let (written, durable, work) = state();
        let mut satisfied: Vec<Arc<Waiter>> = Vec::new();
        let mut syncer: Option<(u64, Arc<Waiter>)> = None;
        let mut closer: Option<(u64, Arc<Waiter>)> = None;
        let mut list = self.entries.lock();
        let mut i = 0;
        while i < list.len() {
            let e = &list[i];
            let frontier = match e.level {
                Level::Written => written,
                Level::Durable => durable,
            };
            if e.need <= frontier {
                let e = list.swap_remove(i);
                // Release: see `deregister`.
                e.waiter.removed.store(true, Ordering::Release);
                satisfied.push(e.waiter);
                continue;
            }
            let pick = if e.need <= written {
                (work.sync, &mut syncer)
            } else {
                (work.close, &mut closer)
            };
            // A task cannot do the work: the driver thread does it for tasks.
            if let (true, slot) = pick {
                if !e.waiter.is_task() && slot.as_ref().map_or(true, |(need, _)| e.need < *need) {
                    *slot = Some((e.need, e.waiter.clone()));
                }
            }
            i += 1;
        }
        self.len.store(list.len(), Ordering::Relaxed);
        drop(list);
        // Syscalls outside the lock: woken threads deregister without contending with us.
        for (_, w) in syncer.iter().chain(closer.iter()) {
            w.notify();
        }
        self.wake_units(passed);
        // Threads first: a task's wake runs executor code.
        satisfied.sort_by_key(|w| w.is_task());
        for w in satisfied {
            w.notify();
        }
    }

    /// Notifies the followers of every unit in `passed` (one syscall per bucket that has
    /// sleepers; none for the others).
    fn wake_units(&self, passed: Passed) {
        let Some((level, units)) = passed else {
            return;
        };
        let count = units
            .end
            .saturating_sub(units.start)
            .min(WAIT_BUCKETS as u64);
        for u in units.start..units.start + count {
            self.bucket(level, u).notify_all();
        }
    }

    /// Wakes everyone (poison, shutdown).
    pub(crate) fn wake_all(&self) {
        for e in self.buckets.iter().flat_map(|set| set.iter()) {
            e.notify_all();
        }
        let waiters: Vec<Arc<Waiter>> = self
            .entries
            .lock()
            .iter()
            .map(|e| e.waiter.clone())
            .collect();
        for w in waiters {
            w.notify();
        }
    }
}
