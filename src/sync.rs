//! The one place where the protocol code gets its synchronisation primitives.
//!
//! In a normal build these are the standard atomics, `parking_lot::Mutex` and a futex-based
//! [`Event`]. Built with `RUSTFLAGS="--cfg slotlog_loom"` they are loom's, and with
//! `--cfg slotlog_shuttle` shuttle's, so that the models in `loom-tests/` and
//! `loom-tests/shuttle/` check the real slot protocol and not a copy of it. In both model builds
//! the park primitive is a Mutex + Condvar with the futex contract. Nothing outside this module
//! names `std::sync::atomic`, `loom`, `shuttle` or `libc::futex` directly (the statistics
//! counters in `stats.rs` deliberately use std atomics: they are not synchronisation).

#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) use std::sync::Arc;

#[cfg(slotlog_loom)]
use ::loom as rt;
#[cfg(slotlog_shuttle)]
use ::shuttle as rt;

#[cfg(slotlog_loom)]
pub(crate) use loom_atomics::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) use rt::sync::atomic::fence;
// Shuttle treats every atomic access as SeqCst, so it checks schedules, not orderings (loom
// owns those); its atomics are used as they are.
#[cfg(slotlog_shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};

/// Loom's atomics, with `store` done as `swap`.
///
/// Loom 0.7.2 can let a load return a value that is older in modification order than a store
/// which happens-before the load, when that older value was written by an RMW that read another
/// thread's RMW (its modification-order bookkeeping for RMWs is incomplete; cf. loom issues
/// 254, 282 and 389). The slot protocol hits exactly that pattern when a pool entry is reused:
/// joiners CAS the old incarnation's state, a closer `fetch_or`s it, and `activate` then
/// `store`s the new incarnation's state. Under plain loom a thread that acquired the new
/// `active` could still read the old closed state and park forever (a false deadlock in the
/// pool and padding models). An RMW always reads the latest value in loom, and a swap whose
/// result is ignored has the same effect on memory as the store; the only difference in the
/// C++ model is that it continues release sequences instead of ending them. `loom-tests/`
/// has a minimal reproducer of the loom bug (`tests/loom_store_after_rmw.rs`). No AtomicU32:
/// only the futex `Event` uses it (the loom one is a Mutex + Condvar).
#[cfg(slotlog_loom)]
mod loom_atomics {
    use std::sync::atomic::Ordering;

    macro_rules! atomic {
        ($name:ident, $t:ty $(, $fetch:ident)*) => {
            #[derive(Debug)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            #[allow(dead_code)]
            impl $name {
                pub(crate) fn new(v: $t) -> Self {
                    $name(loom::sync::atomic::$name::new(v))
                }
                pub(crate) fn load(&self, order: Ordering) -> $t {
                    self.0.load(order)
                }
                pub(crate) fn store(&self, v: $t, order: Ordering) {
                    self.0.swap(v, order);
                }
                pub(crate) fn swap(&self, v: $t, order: Ordering) -> $t {
                    self.0.swap(v, order)
                }
                pub(crate) fn compare_exchange_weak(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$t, $t> {
                    self.0.compare_exchange_weak(current, new, success, failure)
                }
                pub(crate) fn compare_exchange(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$t, $t> {
                    self.0.compare_exchange(current, new, success, failure)
                }
                $(
                    pub(crate) fn $fetch(&self, v: $t, order: Ordering) -> $t {
                        self.0.$fetch(v, order)
                    }
                )*
            }
        };
    }

    atomic!(AtomicBool, bool, fetch_or);
    atomic!(AtomicU8, u8, fetch_or, fetch_max, fetch_add);
    atomic!(AtomicU64, u64, fetch_or, fetch_and, fetch_max, fetch_add);
    atomic!(AtomicUsize, usize, fetch_or, fetch_max, fetch_add);
}
#[cfg(slotlog_loom)]
pub(crate) use loom::sync::Arc;
#[cfg(slotlog_shuttle)]
pub(crate) use std::sync::Arc;

pub(crate) use std::sync::atomic::Ordering;

/// How many times a waiter re-checks its condition before it parks. A condvar round trip costs
/// ~30 µs here and a small `pwrite` ~2 µs, so a short spin catches the common case where the
/// thing awaited is already in progress on the other core. Under loom spinning only multiplies
/// the schedules, so the model parks at once.
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) const SPIN_LIMIT: u32 = 64;
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) const SPIN_LIMIT: u32 = 0;

/// How many times a waiter for the *written* frontier re-checks before it parks. What it waits
/// for is a `pwrite` in progress (a few µs), while a park/wake round trip costs 10–30 µs here:
/// measured on 1 KiB WriteOnly appends, 1024 instead of `SPIN_LIMIT` gave 1.4–1.6× the
/// throughput at 2 and 8 threads and the same at 64 (`docs/performance-analysis.md`). Durable
/// waits span an fdatasync and do not spin at all.
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) const WRITTEN_SPIN_LIMIT: u32 = 1024;
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) const WRITTEN_SPIN_LIMIT: u32 = 0;

/// Bucket events per frontier on which the followers of a unit sleep (`waiters.rs`). Units that
/// share a bucket (sequence numbers equal modulo this) only cost each other spurious wake-ups;
/// the units with waiters are those not yet durable, usually a handful. The model builds use 2,
/// so that sharing happens in every model.
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) const WAIT_BUCKETS: usize = 64;
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) const WAIT_BUCKETS: usize = 2;

/// One step of a bounded spin.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    std::hint::spin_loop();
    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    rt::thread::yield_now();
}

/// The lane (below `lanes`) for the calling thread: the CPU it runs on, so that two threads on
/// different cores append on different cache lines. Only locality depends on it; any
/// lane is correct. Model builds use the model thread's id, so that a model's threads spread
/// over the lanes deterministically.
#[inline]
pub(crate) fn current_lane(lanes: usize) -> usize {
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours (glibc reads
        // the CPU from the thread's rseq area, a few ns); -1 on failure becomes lane 0.
        let cpu = unsafe { libc::sched_getcpu() };
        cpu.max(0) as usize % lanes
    }
    #[cfg(slotlog_loom)]
    {
        // loom's ThreadId has no accessor; its Debug form is `ThreadId(n)`.
        let id = format!("{:?}", rt::thread::current().id());
        let n: usize = id
            .trim_start_matches("ThreadId(")
            .trim_end_matches(')')
            .parse()
            .unwrap_or(0);
        n % lanes
    }
    #[cfg(slotlog_shuttle)]
    {
        usize::from(rt::thread::current().id()) % lanes
    }
}

// Per thread: the log with lanes it last placed a record in (by `next_log_id`) and that
// record's address.
// Lanes use it to keep a thread's records in order ("Lanes" in docs/design.md).
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
std::thread_local!(static FLOOR: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) });
#[cfg(slotlog_loom)]
loom::thread_local!(static FLOOR: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((0, 0)));
#[cfg(slotlog_shuttle)]
shuttle::thread_local!(static FLOOR: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((0, 0)));

/// A new log id (never 0), for [`thread_floor`]. An id, not synchronisation: std atomics in
/// every build.
pub(crate) fn next_log_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The address of the calling thread's last record in log `log`, if its last record in a log
/// with lanes went to that log (a thread that alternates between such logs gets `None`).
#[inline]
pub(crate) fn thread_floor(log: u64) -> Option<u64> {
    FLOOR.with(|f| {
        let (id, at) = f.get();
        (id == log).then_some(at)
    })
}

/// Records that the calling thread placed a record at `at` in log `log`.
#[inline]
pub(crate) fn set_thread_floor(log: u64, at: u64) {
    FLOOR.with(|f| f.set((log, at)));
}

/// A mutual-exclusion lock with a `lock()` that cannot fail (no poisoning), in every build.
pub(crate) struct Mutex<T> {
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    inner: parking_lot::Mutex<T>,
    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    inner: rt::sync::Mutex<T>,
}

#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) type MutexGuard<'a, T> = rt::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(any(slotlog_loom, slotlog_shuttle))]
            inner: rt::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
        return self.inner.lock();
        #[cfg(any(slotlog_loom, slotlog_shuttle))]
        return self.inner.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// The park/wake primitive: an event counter with the futex contract.
///
/// A waiter takes a `key()`, checks its condition, and calls `wait(key)` only if the condition
/// still does not hold; `wait` returns at once if any `notify_all` happened after `key()` was
/// taken. A notifier first publishes the state change (the frontier store, the slot
/// activation, ...) and then calls `notify_all`. Because `key()` is an acquire load and
/// `notify_all` a release increment, a waiter that took its key after the increment also sees the
/// published change, and a waiter that took it before is woken: no lost wake-up. Spurious
/// returns are allowed; every caller re-checks its condition in a loop.
pub(crate) struct Event {
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    seq: AtomicU32,
    /// Threads inside `wait`; lets `notify_all` skip the syscall when nobody sleeps.
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    sleepers: AtomicU32,
    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    seq: rt::sync::Mutex<u32>,
    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    cond: rt::sync::Condvar,
}

impl Event {
    pub(crate) fn new() -> Self {
        Event {
            #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
            seq: AtomicU32::new(0),
            #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
            sleepers: AtomicU32::new(0),
            #[cfg(any(slotlog_loom, slotlog_shuttle))]
            seq: rt::sync::Mutex::new(0),
            #[cfg(any(slotlog_loom, slotlog_shuttle))]
            cond: rt::sync::Condvar::new(),
        }
    }

    /// The current generation. Take it *before* checking the condition you wait for.
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    pub(crate) fn key(&self) -> u32 {
        // SeqCst: orders this load with the caller's condition check and with `wait`'s
        // increment of `sleepers` (the Dekker pair against `notify_all`).
        self.seq.load(Ordering::SeqCst)
    }

    /// Sleeps until a `notify_all` after `key` was taken (or spuriously).
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    pub(crate) fn wait(&self, key: u32) {
        // SeqCst on both sides: either `notify_all` sees `sleepers > 0` and issues the wake, or
        // this thread sees the incremented `seq` and does not sleep.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.seq.load(Ordering::SeqCst) == key {
            futex_wait(&self.seq, key);
        }
        // Relaxed: only a hint for `notify_all`; a stale high value costs one extra syscall.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes every thread sleeping in `wait` and makes every outstanding key stale.
    #[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
    pub(crate) fn notify_all(&self) {
        // SeqCst: publishes the caller's state change to waiters that load `seq`, and pairs
        // with the `sleepers` increment in `wait` (see there).
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.seq);
        }
    }

    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    pub(crate) fn key(&self) -> u32 {
        *self.seq.lock().unwrap()
    }

    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    pub(crate) fn wait(&self, key: u32) {
        // The futex contract: the word is checked under the lock, so a notify between the
        // caller's check and this sleep is seen here, and a missing notify is a loom deadlock.
        let mut seq = self.seq.lock().unwrap();
        while *seq == key {
            seq = self.cond.wait(seq).unwrap();
        }
    }

    #[cfg(any(slotlog_loom, slotlog_shuttle))]
    pub(crate) fn notify_all(&self) {
        let mut seq = self.seq.lock().unwrap();
        *seq = seq.wrapping_add(1);
        drop(seq);
        self.cond.notify_all();
    }
}

#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the 4-byte word at a valid, aligned address that outlives the
    // call (it is borrowed for its duration); a null timeout means "no timeout". The kernel
    // compares the word with `expected` atomically with going to sleep, which is what makes the
    // check-then-sleep in `Event::wait` race-free. EINTR/EAGAIN are spurious returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key to find sleepers; it does not access
    // memory. The address is valid for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// The bytes of one slot buffer, written concurrently at disjoint ranges.
///
/// Each joiner owns the range its join reserved until it releases; the writer reads the whole
/// prefix after the last release. The state word's acquire/release pairs order those accesses
/// (see `docs/design.md`). In the loom build every byte is its own `UnsafeCell`, so loom checks
/// exactly those accesses and does not report disjoint copies as races.
pub(crate) struct SlotBytes {
    #[cfg(not(slotlog_loom))]
    cells: Box<[std::cell::UnsafeCell<u8>]>,
    #[cfg(slotlog_loom)]
    cells: Box<[loom::cell::UnsafeCell<u8>]>,
}

// SAFETY: concurrent access is to disjoint ranges, handed over through the slot state word
// (acquire/release), as documented on the type; the type has no thread affinity.
unsafe impl Sync for SlotBytes {}
// SAFETY: as above; the bytes are plain data.
unsafe impl Send for SlotBytes {}

impl SlotBytes {
    pub(crate) fn new(len: usize) -> Self {
        SlotBytes {
            #[cfg(not(slotlog_loom))]
            cells: (0..len).map(|_| std::cell::UnsafeCell::new(0)).collect(),
            #[cfg(slotlog_loom)]
            cells: (0..len).map(|_| loom::cell::UnsafeCell::new(0)).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// Copies `parts`, one after the other, to `offset..`.
    ///
    /// # Safety
    /// The caller must own `offset..offset + total length` exclusively: no other thread reads or
    /// writes it until the caller publishes it with a release operation.
    pub(crate) unsafe fn write(&self, offset: usize, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(offset + total <= self.len(), "slot write out of bounds");
        #[cfg(not(slotlog_loom))]
        {
            // SAFETY: in bounds (asserted). The pointer comes from the whole slice of cells, so
            // it may address every byte; bytes in an `UnsafeCell` may be written through a
            // shared reference, and the caller owns this range exclusively.
            let base = unsafe { std::cell::UnsafeCell::raw_get(self.cells.as_ptr()).add(offset) };
            let mut at = 0;
            for part in parts {
                // SAFETY: `base + at .. + part.len()` is inside the owned range; `part` is a
                // separate allocation (the caller's record), so the regions do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), base.add(at), part.len()) };
                at += part.len();
            }
        }
        #[cfg(slotlog_loom)]
        {
            let mut at = offset;
            for part in parts {
                for &b in part.iter() {
                    self.cells[at].with_mut(|p| unsafe { *p = b });
                    at += 1;
                }
            }
        }
    }

    /// Asks the CPU to bring the cache lines of `offset..end` (clamped to the buffer) into this
    /// core's cache for writing, ahead of a copy into them. Only a hint: it reads and writes
    /// nothing. A slot's lines were last read by the kernel's copy of the previous
    /// incarnation's write, often on the other core, so the copy's stores would otherwise stall
    /// on each line's ownership transfer.
    pub(crate) fn prefetch_for_write(&self, offset: usize, end: usize) {
        #[cfg(all(target_arch = "x86_64", not(any(slotlog_loom, slotlog_shuttle))))]
        {
            if !has_prefetchw() {
                return;
            }
            let end = end.min(self.len());
            let base = std::cell::UnsafeCell::raw_get(self.cells.as_ptr());
            let mut at = offset & !63;
            while at < end {
                // SAFETY: `at < len`, so the pointer is inside the allocation; the CPU has
                // PREFETCHW (checked above), a hint that changes no memory, register or flag and
                // cannot fault. `_mm_prefetch` with a write hint compiles to a read prefetch
                // unless the build enables `prfchw`, hence the assembly.
                unsafe {
                    std::arch::asm!(
                        "prefetchw [{}]",
                        in(reg) base.add(at),
                        options(nostack, preserves_flags, readonly)
                    );
                }
                at += 64;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(any(slotlog_loom, slotlog_shuttle)))))]
        let _ = (offset, end);
    }

    /// Calls `f` with the bytes `range`.
    ///
    /// # Safety
    /// No thread may write `range` for the duration of the call: every joiner that reserved part
    /// of it must have released, and the caller must have acquired those releases.
    pub(crate) unsafe fn with_bytes<R>(
        &self,
        range: std::ops::Range<usize>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        assert!(range.end <= self.len(), "slot read out of bounds");
        #[cfg(not(slotlog_loom))]
        {
            // SAFETY: in bounds (asserted); no writer is active on the range (caller contract),
            // so a shared slice over it is sound for the call.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    std::cell::UnsafeCell::raw_get(self.cells.as_ptr()).add(range.start),
                    range.len(),
                )
            };
            f(bytes)
        }
        #[cfg(slotlog_loom)]
        {
            let copy: Vec<u8> = self.cells[range]
                .iter()
                .map(|c| c.with(|p| unsafe { *p }))
                .collect();
            f(&copy)
        }
    }
}

/// Whether this CPU has PREFETCHW (CPUID leaf 0x8000_0001, ECX bit 8: PRFCHW, called
/// 3DNowPrefetch by AMD); `is_x86_feature_detected!` does not know the feature on stable Rust.
/// Read once.
#[cfg(all(target_arch = "x86_64", not(any(slotlog_loom, slotlog_shuttle))))]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86_64 CPU; leaf 0x8000_0000 reports the highest
        // extended leaf, and we read leaf 0x8000_0001 only if it exists.
        #[allow(unused_unsafe)]
        unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
    })
}
