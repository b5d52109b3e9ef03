//! Threads parked until a frontier passes the log address they need.
//!
//! Each parked thread has its own [`Event`] and registers the address it needs and on which
//! frontier (written or durable). A thread that moves a frontier wakes exactly the waiters it
//! satisfied, plus at most two *drivers*: waiters whose need is not met and who can now make
//! progress themselves (run the next fdatasync, or close the active slot). See
//! `docs/design.md`, "Waiting".

use crate::sync::{fence, Arc, AtomicBool, AtomicUsize, Event, Mutex, Ordering};

/// Which frontier a waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// The written frontier: bytes handed to the OS.
    Written = 1,
    /// The durable frontier: bytes covered by a finished fdatasync.
    Durable = 2,
}

/// What a parked thread shares with the threads that wake it.
pub(crate) struct Waiter {
    pub(crate) event: Event,
    /// Set (under the list lock) when a waker removed the entry, so that the waiter can leave
    /// without taking the lock and searching the list.
    removed: AtomicBool,
}

struct Entry {
    need: u64,
    level: Level,
    waiter: Arc<Waiter>,
}

pub(crate) struct WaitList {
    entries: Mutex<Vec<Entry>>,
    /// Entries in the list; lets `wake` skip the lock when nobody waits.
    len: AtomicUsize,
}

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
        WaitList {
            entries: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Registers a waiter. The caller must re-check its condition after this returns and
    /// before it sleeps.
    pub(crate) fn register(&self, need: u64, level: Level) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter {
            event: Event::new(),
            removed: AtomicBool::new(false),
        });
        let mut list = self.entries.lock();
        list.push(Entry {
            need,
            level,
            waiter: waiter.clone(),
        });
        // Relaxed: the fence below orders it.
        self.len.store(list.len(), Ordering::Relaxed);
        drop(list);
        // SeqCst fence, paired with the one in `wake`: either `wake` sees `len > 0`, or the
        // caller's re-check (after this) sees the frontier that `wake`'s caller stored.
        fence(Ordering::SeqCst);
        waiter
    }

    pub(crate) fn deregister(&self, waiter: Arc<Waiter>) {
        // Acquire: pairs with the Release store in `wake`; then the entry is gone for sure.
        if waiter.removed.load(Ordering::Acquire) {
            return;
        }
        let mut list = self.entries.lock();
        if let Some(i) = list.iter().position(|e| Arc::ptr_eq(&e.waiter, &waiter)) {
            list.swap_remove(i);
        }
        self.len.store(list.len(), Ordering::Relaxed);
    }

    /// Wakes the waiters that `written`/`durable` satisfy, and the drivers that `work` allows:
    /// the lowest waiter whose bytes are written but not durable (it runs the next fdatasync),
    /// and the lowest waiter whose bytes are not written (it closes the active slot). Call after
    /// storing the new frontier values. The drivers are woken first, so that the next group's
    /// I/O starts while the satisfied waiters are still being woken.
    pub(crate) fn wake(&self, written: u64, durable: u64, work: Work) {
        // SeqCst fence, paired with the one in `register`.
        fence(Ordering::SeqCst);
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
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
            if let (true, slot) = pick {
                if slot.as_ref().map_or(true, |(need, _)| e.need < *need) {
                    *slot = Some((e.need, e.waiter.clone()));
                }
            }
            i += 1;
        }
        self.len.store(list.len(), Ordering::Relaxed);
        drop(list);
        // Syscalls outside the lock: woken threads deregister without contending with us.
        for (_, w) in syncer.iter().chain(closer.iter()) {
            w.event.notify_all();
        }
        for w in satisfied {
            w.event.notify_all();
        }
    }

    /// Wakes everyone (poison, shutdown).
    pub(crate) fn wake_all(&self) {
        let waiters: Vec<Arc<Waiter>> = self
            .entries
            .lock()
            .iter()
            .map(|e| e.waiter.clone())
            .collect();
        for w in waiters {
            w.event.notify_all();
        }
    }
}
