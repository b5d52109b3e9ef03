//! Async waits ("Async waits" in `docs/design.md`): a task waits for a frontier with its waker
//! instead of a parked thread, and one *driver* thread does the blocking work that waiting
//! threads do for themselves (closing the active slot, and the fdatasync).
//!
//! Why a driver: a waiting thread drives its own wait (it closes its slot when the write pipe is
//! idle and runs the fdatasync when none runs). A task cannot: an fdatasync takes 110–250 µs
//! here, and an executor thread blocked that long stalls every task queued on it. So a task
//! raises the driver's target to the address it needs and sleeps; the driver waits for the
//! target like a thread would, and one fdatasync serves every task below it. A thousand waiting
//! tasks then cost one parked thread and a thousand waker calls, instead of a thousand parked
//! threads (7.4 CPU-µs per woken thread on this machine, `docs/performance-analysis.md`).
//!
//! Tasks are never picked as drivers by the wait list (`waiters.rs`), and a task that writes a
//! slot leaves the fdatasync to the durable waiters ([`Caller::Task`]). One exception: under a
//! bound on unsynced bytes, a task's write that would pass the bound waits for an fdatasync
//! first, like any writer, and may run it (`docs/design.md`, "Bounded unsynced bytes"). The
//! driver also runs the fdatasyncs that keep writers under that bound.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;

use super::{Caller, LogBuffer, Sink};
use crate::error::Result;
use crate::sync::{Arc, AtomicBool, AtomicU64, Event, Ordering};
use crate::waiters::{Level, Waiter};

/// The driver's targets: the highest address a task waits for, per frontier.
pub(super) struct Driver {
    written: CachePadded<AtomicU64>,
    durable: CachePadded<AtomicU64>,
    /// Notified when a target rises, on poison and on stop.
    event: Event,
    stop: AtomicBool,
}

impl Driver {
    pub(super) fn new() -> Self {
        Driver {
            written: CachePadded::new(AtomicU64::new(0)),
            durable: CachePadded::new(AtomicU64::new(0)),
            event: Event::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn target(&self, level: Level) -> &AtomicU64 {
        match level {
            Level::Written => &self.written,
            Level::Durable => &self.durable,
        }
    }

    /// Raises the target for `level` to `need`; wakes the driver if that raised it.
    pub(super) fn request(&self, need: u64, level: Level) {
        // SeqCst: the driver loads the target after taking its event key; this RMW and the
        // notification's RMW on the key are both SeqCst, so either the driver's load sees the
        // new target or its `wait(key)` sees a new key and returns.
        if self.target(level).fetch_max(need, Ordering::SeqCst) < need {
            self.event.notify_all();
        }
    }

    /// Wakes the driver to re-check (poison, stop).
    pub(super) fn poke(&self) {
        self.event.notify_all();
    }
}

impl<S: Sink> LogBuffer<S> {
    /// Puts one record into the log for a task: like a `NoSync` append (it may wait briefly for
    /// a rotation or a free slot, and may write a slot, as any append may), but it never runs
    /// the fdatasync its slot's joiners ask for (creating a segment the preparer has not made
    /// yet still syncs that new file, as in any write: `docs/design.md`, "Async waits"). Returns
    /// the record's address and its end; wait for the end with [`Self::wait_task`].
    pub fn place_for_task(&self, data: &[u8], level: Option<Level>) -> Result<(u64, u64)> {
        let (lsn, end, _) = self.place(data, level, Caller::Task)?;
        Ok((lsn, end))
    }

    /// A future that resolves once the `level` frontier reaches `need`.
    pub fn wait_task(&self, need: u64, level: Level) -> TaskWait<'_, S> {
        TaskWait {
            buffer: self,
            need,
            level,
            waiter: None,
        }
    }

    /// The driver thread's loop: waits, like a thread would, for the highest address any task
    /// waits for, until [`Self::stop_driver`] or poison. Run it on a thread of its own.
    pub fn run_driver(&self) {
        // If the driver unwinds, the tasks it served would wait forever.
        let cause = crate::error::Error::BackgroundPanic {
            thread: "slotlog-driver",
        };
        self.poison_if_unwinds(cause, || self.drive());
    }

    fn drive(&self) {
        let driver = &self.driver;
        loop {
            let key = driver.event.key();
            // Acquire: pairs with the Release store in `stop_driver`.
            if driver.stop.load(Ordering::Acquire) || self.check_poison().is_err() {
                return;
            }
            // SeqCst: see `Driver::request`.
            let durable = driver.durable.load(Ordering::SeqCst);
            let written = driver.written.load(Ordering::SeqCst);
            let work = if durable > self.durable() {
                Some((durable, Level::Durable))
            } else if written > self.written() {
                Some((written, Level::Written))
            } else {
                None
            };
            match work {
                // An error poisoned the log and woke every task; the next turn returns.
                Some((need, level)) => {
                    let _ = self.wait_for(need, level);
                }
                None => driver.event.wait(key),
            }
        }
    }

    /// Makes [`Self::run_driver`] return.
    pub fn stop_driver(&self) {
        // Release: see `run_driver`.
        self.driver.stop.store(true, Ordering::Release);
        self.driver.poke();
    }

    /// One poll of a task's wait: the same check, register, re-check sequence as a thread's
    /// wait (`wait`), with the waker in place of the park, and the driver asked for the work.
    /// On the way a task waiting for the *written* frontier does the one step of a thread's
    /// progress that does not wait for I/O it did not start: closing the active slot that holds
    /// its record when the write pipe is idle (the close writes the slot if every joiner
    /// released, as a `NoSync` append's last release does). Without it a WriteOnly task waited
    /// for a driver round trip per write: 2 tasks appending 4 KiB records made 25–33k appends/s,
    /// 438–537k/s with it (`docs/performance-analysis.md`). A durable wait leaves the close to
    /// the driver too: closing at every idle moment split the groups into many small writes
    /// (1,000 FullSync tasks: 10× the writes, 1.07–1.17 M/s against 1.20–1.42 M/s).
    fn poll_task(
        &self,
        need: u64,
        level: Level,
        waiter: &mut Option<Arc<Waiter>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<()>> {
        let mut registered = false;
        loop {
            if let Err(e) = self.check_poison() {
                self.leave(waiter);
                return Poll::Ready(Err(e));
            }
            if self.reached(need, level) {
                self.leave(waiter);
                return Poll::Ready(Ok(()));
            }
            let written = self.written();
            if level == Level::Written && written < need {
                match self.close_for(need, level, written, Caller::Task) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        self.leave(waiter);
                        return Poll::Ready(Err(e));
                    }
                }
            }
            if registered {
                break;
            }
            registered = true;
            match waiter {
                // Re-check after installing the waker: a wake that took the old one happened
                // after its frontier store, which the check above (after the waker lock) sees.
                Some(w) => w.set_waker(cx.waker()),
                // Re-check after the registration's SeqCst fence ("Waiting").
                None => *waiter = Some(self.waiters.register_task(need, level, cx.waker())),
            }
        }
        self.driver.request(need, level);
        Poll::Pending
    }

    fn leave(&self, waiter: &mut Option<Arc<Waiter>>) {
        if let Some(w) = waiter.take() {
            self.waiters.deregister_waiter(&w);
        }
    }
}

/// The future of a task's wait for a frontier ([`LogBuffer::wait_task`]). Dropping it before
/// it resolves only stops the wait.
pub struct TaskWait<'a, S: Sink> {
    buffer: &'a LogBuffer<S>,
    need: u64,
    level: Level,
    waiter: Option<Arc<Waiter>>,
}

impl<S: Sink> Future for TaskWait<'_, S> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.buffer
            .poll_task(this.need, this.level, &mut this.waiter, cx)
    }
}

impl<S: Sink> Drop for TaskWait<'_, S> {
    fn drop(&mut self) {
        self.buffer.leave(&mut self.waiter);
    }
}
