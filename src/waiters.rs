//! Threads parked until a frontier passes the log address they need.
//!
//! Each parked thread has its own [`Event`] and registers the address it needs and on which
//! frontier (written or durable). A thread that moves a frontier wakes exactly the waiters it
//! satisfied, plus at most two *drivers*: waiters whose need is not met and who may now be able
//! to make progress themselves (close the active slot, or run the next fdatasync). See
//! `docs/design.md`, "Waiting".

use crate::sync::{fence, Arc, AtomicUsize, Event, Mutex, Ordering};

/// Which frontier a waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// The written frontier: bytes handed to the OS.
    Written = 1,
    /// The durable frontier: bytes covered by a finished fdatasync.
    Durable = 2,
}

struct Entry {
    id: u64,
    need: u64,
    level: Level,
    event: Arc<Event>,
}

pub(crate) struct WaitList {
    entries: Mutex<(Vec<Entry>, u64)>,
    /// Entries in the list; lets `wake` skip the lock when nobody waits.
    len: AtomicUsize,
}

/// A registered waiter. Pass it back to [`WaitList::deregister`].
pub(crate) struct Registration {
    id: u64,
    pub(crate) event: Arc<Event>,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        WaitList {
            entries: Mutex::new((Vec::new(), 0)),
            len: AtomicUsize::new(0),
        }
    }

    /// Registers a waiter. The caller must re-check its condition after this returns and
    /// before it sleeps.
    pub(crate) fn register(&self, need: u64, level: Level) -> Registration {
        let event = Arc::new(Event::new());
        let mut guard = self.entries.lock();
        let (list, next_id) = &mut *guard;
        let id = *next_id;
        *next_id += 1;
        list.push(Entry {
            id,
            need,
            level,
            event: event.clone(),
        });
        // Relaxed: the fence below orders it.
        self.len.store(list.len(), Ordering::Relaxed);
        drop(guard);
        // SeqCst fence, paired with the one in `wake`: either `wake` sees `len > 0`, or the
        // caller's re-check (after this) sees the frontier that `wake`'s caller stored.
        fence(Ordering::SeqCst);
        Registration { id, event }
    }

    pub(crate) fn deregister(&self, reg: Registration) {
        let mut guard = self.entries.lock();
        let list = &mut guard.0;
        if let Some(i) = list.iter().position(|e| e.id == reg.id) {
            list.swap_remove(i);
        }
        self.len.store(list.len(), Ordering::Relaxed);
    }

    /// Wakes the waiters that `written`/`durable` satisfy, and the drivers: the lowest
    /// unsatisfied need (it is the first that can sync or close), and the lowest need beyond
    /// `written` (the one that should close the active slot once the write pipe is idle).
    /// Call after storing the new frontier values.
    pub(crate) fn wake(&self, written: u64, durable: u64) {
        // SeqCst fence, paired with the one in `register`.
        fence(Ordering::SeqCst);
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut guard = self.entries.lock();
        let list = &mut guard.0;
        let mut lowest: Option<usize> = None;
        let mut lowest_unwritten: Option<usize> = None;
        let mut i = 0;
        while i < list.len() {
            let e = &list[i];
            let frontier = match e.level {
                Level::Written => written,
                Level::Durable => durable,
            };
            if e.need <= frontier {
                e.event.notify_all();
                list.swap_remove(i);
                continue;
            }
            if lowest.map_or(true, |j| e.need < list[j].need) {
                lowest = Some(i);
            }
            if e.need > written && lowest_unwritten.map_or(true, |j| e.need < list[j].need) {
                lowest_unwritten = Some(i);
            }
            i += 1;
        }
        for j in [lowest, lowest_unwritten].into_iter().flatten() {
            list[j].event.notify_all();
        }
        self.len.store(list.len(), Ordering::Relaxed);
    }

    /// Wakes everyone (poison, shutdown).
    pub(crate) fn wake_all(&self) {
        let guard = self.entries.lock();
        for e in &guard.0 {
            e.event.notify_all();
        }
    }
}
