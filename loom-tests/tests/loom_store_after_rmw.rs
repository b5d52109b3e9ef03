//! Why `src/sync.rs` turns loom stores into swaps: a minimal reproducer of loom 0.7.2 letting a
//! load read a value that a store which happens-before the load has overwritten, when that
//! value came from an RMW that read another thread's RMW. This is the shape of a pool entry's
//! reuse (joiner CAS, closer `fetch_or`, `activate` store). The test asserts that loom still
//! shows the stale read with a plain store and not with a swap; if it starts failing on the
//! first half, loom is fixed and the workaround in `src/sync.rs` can go.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed as R};
use std::sync::Arc;

use loom::sync::atomic::{AtomicU64, Ordering::*};

const CLOSED: u64 = 1 << 63;
const OPEN: u64 = 1 << 32 | 1;

/// Counts executions in which t2, having acquired `active == 3`, still reads a closed state.
fn stale_reads(swap: bool) -> usize {
    let stale = Arc::new(AtomicUsize::new(0));
    let seen = stale.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let state = Arc::new(AtomicU64::new(0));
        let active = Arc::new(AtomicU64::new(0));
        let (s1, a1) = (state.clone(), active.clone());
        let closer = loom::thread::spawn(move || {
            s1.fetch_or(CLOSED, AcqRel); // close the old incarnation
            if swap {
                s1.swap(OPEN, Release); // activate the new one
            } else {
                s1.store(OPEN, Release);
            }
            a1.store(3, Release);
        });
        let (s2, a2, stale) = (state.clone(), active.clone(), seen.clone());
        let joiner = loom::thread::spawn(move || {
            let s = s2.load(Relaxed);
            let _ = s2.compare_exchange_weak(s, s + (2 << 32), Acquire, Relaxed); // join
            if a2.load(Acquire) == 3 && s2.load(Relaxed) & CLOSED != 0 {
                stale.fetch_add(1, R);
            }
        });
        closer.join().unwrap();
        joiner.join().unwrap();
    });
    stale.load(R)
}

#[test]
fn loom_reads_overwritten_rmw_value_after_store() {
    assert!(
        stale_reads(false) > 0,
        "loom no longer shows the stale read: drop the store-as-swap workaround in src/sync.rs"
    );
    assert_eq!(stale_reads(true), 0, "a swap must not show the stale read");
}
