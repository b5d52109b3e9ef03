//! Async waits: `Log::append_async` and `Log::wait_async` give tasks the guarantees `append`
//! gives threads, with one driver thread doing the blocking work.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use slotlog::storage::{Fault, SimStorage};
use slotlog::{Durability, Error, Log, Lsn, Options};

use common::{payload, read_all, verify, SyncHook};

fn sim_dir() -> PathBuf {
    PathBuf::from("/sim/log")
}

fn sim_options(sim: &Arc<SimStorage>) -> Options {
    Options::default()
        .segment_size(256 << 10)
        .slot_size(16 << 10)
        .slot_pool(4)
        .max_record_size(64 << 10)
        // No background flusher: whatever reaches the file does so because a wait asked.
        .flush_interval(None)
        .storage(sim.clone())
}

/// Wakes the test's thread, and records that it did.
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn unpark_waker() -> (Arc<Unpark>, Waker) {
    let u = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    (u.clone(), Waker::from(u))
}

/// Polls every future until all have resolved, parking the thread in between: a minimal
/// executor, so that these tests control when each future is polled. The park has a 1 s
/// timeout only to detect lost wake-ups: a future that resolves after a timeout with no wake
/// since the previous round (nor during this one) fails the test, and so do 20 s without
/// progress.
fn poll_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let (unpark, waker) = unpark_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut last_progress = Instant::now();
    let mut first = true;
    loop {
        let woken_before = unpark.woken.swap(false, Ordering::SeqCst) || first;
        first = false;
        let mut pending = 0;
        let mut resolved = 0;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match Pin::new(f).poll(&mut cx) {
                    Poll::Ready(v) => {
                        *o = Some(v);
                        resolved += 1;
                    }
                    Poll::Pending => pending += 1,
                }
            }
        }
        if resolved > 0 {
            assert!(
                woken_before || unpark.woken.load(Ordering::SeqCst),
                "{resolved} waits resolved without a wake-up: a lost wake-up"
            );
            last_progress = Instant::now();
        }
        if pending == 0 {
            return out.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(20),
            "{pending} waits made no progress for 20 s"
        );
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

/// Runs `waits` to the end and returns the cause of each one's `Poisoned` error.
fn causes_of_poisoned(waits: Vec<slotlog::Wait<'_>>, after: &str) -> Vec<Arc<Error>> {
    poll_all(waits)
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Err(Error::Poisoned { cause }) => cause,
            other => panic!("task {i}: expected Poisoned after {after}, got {other:?}"),
        })
        .collect()
}

fn block_on<F: Future + Unpin>(f: F) -> F::Output {
    poll_all(vec![f]).pop().unwrap()
}

#[test]
fn wait_is_send() {
    fn send<T: Send>(_: &T) {}
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let wait = log.append_async(b"x", Durability::FullSync);
    send(&wait);
    block_on(wait).unwrap();
}

/// A thousand waits created before any is polled: every record is placed at once, and one
/// driver serves them all with a few fdatasyncs. After a power cut every one of them is there.
#[test]
fn many_full_sync_tasks_share_fdatasyncs_and_survive_a_power_cut() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let records: Vec<Vec<u8>> = (0..1000).map(|i| payload(i, 561)).collect();
    let waits: Vec<_> = records
        .iter()
        .map(|r| log.append_async(r, Durability::FullSync))
        .collect();
    let lsns: Vec<Lsn> = poll_all(waits)
        .into_iter()
        .collect::<slotlog::Result<_>>()
        .unwrap();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "LSNs follow call order"
    );
    let stats = log.stats();
    assert_eq!(stats.full_sync_appends, 1000);
    // Every record was placed before the first poll, so the driver's first fdatasyncs cover
    // them all; one per record would mean no group commit at all.
    assert!(
        stats.fdatasyncs <= 10,
        "1,000 waiting tasks took {} fdatasyncs",
        stats.fdatasyncs
    );
    drop(log);
    sim.power_cut(false);
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let got = read_all(&log);
    let want: Vec<(Lsn, Vec<u8>)> = lsns.into_iter().zip(records).collect();
    assert_eq!(
        got, want,
        "records acknowledged to tasks as durable were lost"
    );
}

/// A batch of NoSync appends made durable by one `wait_async` for the last of them.
#[test]
fn wait_async_makes_a_no_sync_batch_durable() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let mut want = Vec::new();
    for i in 0..200 {
        let r = payload(i, 300);
        want.push((log.append(&r, Durability::NoSync).unwrap(), r));
    }
    let last = want.last().unwrap().0;
    assert_eq!(
        block_on(log.wait_async(last, Durability::FullSync)).unwrap(),
        last
    );
    // Beyond the end: waits for everything appended so far, and does not hang.
    let r = payload(200, 300);
    want.push((log.append(&r, Durability::NoSync).unwrap(), r));
    let far = Lsn::from_u64(u64::MAX);
    block_on(log.wait_async(far, Durability::FullSync)).unwrap();
    // NoSync waits resolve at once.
    block_on(log.wait_async(far, Durability::NoSync)).unwrap();
    drop(log);
    sim.power_cut(false);
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    assert_eq!(
        read_all(&log),
        want,
        "the batch did not survive the power cut"
    );
}

/// A WriteOnly task's record is in the file when its future resolves: `iter` (which reads only
/// what is written) returns it without a `flush`.
#[test]
fn write_only_task_resolves_once_its_record_is_written() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    for i in 0..50u64 {
        let r = payload(i, 1 + (i as usize * 97) % 3000);
        let lsn = block_on(log.append_async(&r, Durability::WriteOnly)).unwrap();
        let seen = log.iter(lsn).unwrap().next();
        let rec = seen
            .unwrap_or_else(|| panic!("record {i} not in the file after its WriteOnly wait"))
            .unwrap();
        assert_eq!((rec.lsn(), rec.data()), (lsn, &r[..]));
    }
    assert_eq!(
        log.stats().fdatasyncs,
        0,
        "WriteOnly waits must not fdatasync"
    );
}

/// After an fdatasync fails every waiting task gets `Poisoned`, and so does every later call.
#[test]
fn sync_eio_fails_every_waiting_task() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let acked = block_on(log.append_async(&payload(0, 100), Durability::FullSync)).unwrap();
    sim.inject(Fault::SyncEio, 0);
    let records: Vec<Vec<u8>> = (1..100).map(|i| payload(i, 700)).collect();
    let waits: Vec<_> = records
        .iter()
        .map(|r| log.append_async(r, Durability::FullSync))
        .collect();
    causes_of_poisoned(waits, "EIO");
    for d in [
        Durability::NoSync,
        Durability::WriteOnly,
        Durability::FullSync,
    ] {
        match block_on(log.append_async(b"later", d)) {
            Err(Error::Poisoned { .. }) => {}
            other => panic!("{d:?} append after EIO: expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(
        log.append(b"later", Durability::NoSync),
        Err(Error::Poisoned { .. })
    ));
    drop(log); // must not hang on the driver thread
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(acked));
}

#[test]
fn oversized_record_is_an_error_not_an_append() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let big = vec![0u8; (64 << 10) + 1];
    assert!(matches!(
        block_on(log.append_async(&big, Durability::FullSync)),
        Err(Error::RecordTooLarge { .. })
    ));
    block_on(log.append_async(b"ok", Durability::FullSync)).unwrap();
    assert_eq!(read_all(&log).len(), 1);
}

/// A dropped wait does not stop the append, and does not keep the log from closing.
#[test]
fn dropped_wait_keeps_the_record() {
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let r = payload(7, 100);
    let mut wait = log.append_async(&r, Durability::FullSync);
    let (_, waker) = unpark_waker();
    let _ = Pin::new(&mut wait).poll(&mut Context::from_waker(&waker));
    drop(wait);
    log.close().unwrap();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    assert_eq!(read_all(&log).len(), 1);
}

/// The scenario the API is for: a thousand tokio tasks on two worker threads, each appending
/// one FullSync record, next to threads appending FullSync records to the same log (their
/// slots mix: a task that writes a slot leaves the fdatasync to the waiting threads). On real
/// files; everything acknowledged is read back after reopening.
#[test]
fn tokio_tasks_and_threads_append_to_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .segment_size(4 << 20)
            .slot_size(64 << 10)
            .max_record_size(64 << 10)
    };
    let log = Arc::new(Log::open(dir.path(), opts()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let r = payload(1_000_000 + t * 1000 + i, 200);
                        log.append(&r, Durability::FullSync).unwrap();
                        1_000_000 + t * 1000 + i
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let log = log.clone();
            rt.spawn(async move {
                let r = payload(i, 561);
                log.append_async(&r, Durability::FullSync).await.unwrap();
                i
            })
        })
        .collect();
    let mut ids: Vec<u64> = rt.block_on(async {
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids
    });
    for t in threads {
        ids.extend(t.join().unwrap());
    }
    let stats = log.stats();
    eprintln!(
        "{} appends, {} fdatasyncs, {} parks",
        stats.appends, stats.fdatasyncs, stats.parks
    );
    assert!(
        stats.fdatasyncs * 2 <= stats.appends,
        "no group commit: {} fdatasyncs for {} appends",
        stats.fdatasyncs,
        stats.appends
    );
    drop(rt);
    Arc::try_unwrap(log).unwrap().close().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut got: Vec<u64> = read_all(&log).iter().map(|(_, d)| verify(d)).collect();
    got.sort_unstable();
    ids.sort_unstable();
    assert_eq!(got, ids);
}

/// A waker that panics (a broken executor) must neither kill the thread that moves the frontier
/// (here the driver) nor strand the waiters woken after it; the log stays usable.
#[test]
fn a_panicking_waker_strands_nobody() {
    struct Broken;
    impl Wake for Broken {
        fn wake(self: Arc<Self>) {
            panic!("a broken executor's waker (expected by this test)");
        }
    }
    let sim = SimStorage::new();
    let log = Log::open(sim_dir(), sim_options(&sim)).unwrap();
    let broken = Waker::from(Arc::new(Broken));
    let mut bad = log.append_async(&payload(0, 100), Durability::FullSync);
    // Nothing syncs before this poll asks the driver to: it must register, with the bad waker.
    assert!(Pin::new(&mut bad)
        .poll(&mut Context::from_waker(&broken))
        .is_pending());
    let records: Vec<Vec<u8>> = (1..50).map(|i| payload(i, 300)).collect();
    let waits: Vec<_> = records
        .iter()
        .map(|r| log.append_async(r, Durability::FullSync))
        .collect();
    for r in poll_all(waits) {
        r.expect("a task woken after the broken waker");
    }
    log.append(&payload(50, 10), Durability::FullSync)
        .expect("a thread's append after the broken waker");
    block_on(bad).expect("the broken waker's own wait, polled again");
    block_on(log.append_async(&payload(51, 10), Durability::FullSync))
        .expect("the driver survived the broken waker");
    assert_eq!(read_all(&log).len(), 52);
}

/// If the driver thread panics (here in a user's `Storage`, in its fdatasync), the log is
/// poisoned: every waiting task and every later call gets the error, none waits forever. The
/// cause names the fdatasync (the guard around it poisons first; the driver's own guard would
/// say `BackgroundPanic` for a panic elsewhere in its loop).
#[test]
fn a_panic_in_the_driver_poisons_the_log() {
    let sim = SimStorage::new();
    let armed = Arc::new(AtomicBool::new(false));
    // A bug in a user's storage layer: `sync_data` panics once armed.
    let trigger = armed.clone();
    let storage = SyncHook::new(sim.clone(), move |sync| {
        assert!(
            !trigger.load(Ordering::SeqCst),
            "a storage bug (expected by this test)"
        );
        sync()
    });
    let log = Log::open(sim_dir(), sim_options(&sim).storage(storage)).unwrap();
    block_on(log.append_async(&payload(0, 100), Durability::FullSync)).unwrap();
    armed.store(true, Ordering::SeqCst);
    let records: Vec<Vec<u8>> = (1..20).map(|i| payload(i, 300)).collect();
    let waits: Vec<_> = records
        .iter()
        .map(|r| log.append_async(r, Durability::FullSync))
        .collect();
    for cause in causes_of_poisoned(waits, "the driver's panic") {
        assert!(
            matches!(
                *cause,
                Error::Panicked {
                    during: "fdatasync"
                }
            ),
            "cause {cause}"
        );
    }
    assert!(matches!(
        log.append(b"later", Durability::NoSync),
        Err(Error::Poisoned { .. })
    ));
    armed.store(false, Ordering::SeqCst);
}

/// A `WriteOnly` task's poll closes its slot only into an idle write pipe, never because the
/// slot already holds a batch while older slots are still being written: such a close rotates,
/// and the rotation can wait for a pool entry, parking the executor thread that polls (found by
/// review, 2026-12-07). Here the pool's two other entries are held in their writes and the active
/// slot holds over 256 KiB (`CLOSE_BUSY_AT`); the first poll must return `Pending` at once.
#[test]
fn a_write_only_poll_never_waits_for_the_pool() {
    const RECORD: usize = 4 << 10;
    let gate = common::WriteGate::default();
    let options = Options::default()
        .storage(gate.storage())
        .segment_size(8 << 20)
        .slot_size(512 << 10)
        .slot_pool(3)
        .max_record_size(RECORD)
        .lanes(0)
        .flush_interval(None);
    let log = Arc::new(Log::open(sim_dir(), options).unwrap());
    // Opens the gate when dropped, so that a failed assertion leaves nobody held.
    struct OpenOnDrop(common::WriteGate);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    gate.hold();
    let _open = OpenOnDrop(gate.clone());
    // 127 frames of 4,112 bytes fill a 512 KiB slot; the 128th append closes it and, as its
    // writer, is held in the write. Two such threads leave entries 0 and 1 unwritten.
    let fill_a_slot = |k: u64| {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..128 {
                log.append(&payload(k * 1000 + i, RECORD), Durability::NoSync)
                    .unwrap();
            }
        })
    };
    let first = fill_a_slot(1);
    gate.wait_for_writers(1);
    let second = fill_a_slot(2);
    gate.wait_for_writers(2);
    // The active slot (entry 2) gets a batch of 75 frames, over 256 KiB.
    for i in 0..75 {
        log.append(&payload(3000 + i, RECORD), Durability::NoSync)
            .unwrap();
    }
    let mut wait = log.append_async(&payload(4000, RECORD), Durability::WriteOnly);
    let (tx, rx) = std::sync::mpsc::channel();
    let (polled, wait) = std::thread::scope(|s| {
        let poller = s.spawn(move || {
            let (_, waker) = unpark_waker();
            let pending = Pin::new(&mut wait)
                .poll(&mut Context::from_waker(&waker))
                .is_pending();
            tx.send(pending).unwrap();
            wait
        });
        let polled = rx.recv_timeout(Duration::from_secs(20));
        // Only now: a poll that waits for the pool returns once the held writes go on.
        gate.open();
        (polled, poller.join().unwrap())
    });
    let pending =
        polled.expect("the poll waited for the pool (the gate held two slot writes for 20 s)");
    assert!(
        pending,
        "the poll resolved while older slots were unwritten"
    );
    let lsn = poll_all(vec![wait]).pop().unwrap().unwrap();
    first.join().unwrap();
    second.join().unwrap();
    log.flush().unwrap();
    let records = read_all(&log);
    let task_record = records.iter().find(|r| r.0 == lsn);
    assert_eq!(task_record.map(|r| verify(&r.1)), Some(4000));
    // Everyone's records are there: 2 × 128 held and released, 75 in the batch, the task's.
    assert_eq!(records.len(), 2 * 128 + 75 + 1);
}
