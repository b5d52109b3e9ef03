//! Oversubscription stress on real files: 64 and 256 appending threads on a 2-core machine,
//! mixed durability, a small slot size and pool so that slots rotate and the pool runs out all
//! the time, small segments so that they rotate too. Every acknowledged record must read back
//! byte-exact at its `Lsn` after a reopen.
//!
//! A watchdog thread waits for the run to finish (`recv_timeout`, a hang detector only); if it
//! does not, it prints `Log::debug_state()` and aborts the process instead of hanging.
//! Seed: `SLOTLOG_SEED` (default fixed, printed).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use slotlog::{Durability, Log, Lsn, Options};

mod common;
use common::{read_all, Rng};

/// Thread `tid`'s `seq`-th record: `tid`, `seq`, `len` up front, then a derived stream.
fn payload(tid: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut r = Rng((tid as u64) << 32 | seq as u64);
    let mut out: Vec<u8> = [
        tid.to_le_bytes(),
        seq.to_le_bytes(),
        (len as u32).to_le_bytes(),
    ]
    .concat();
    out.truncate(len);
    while out.len() < len {
        out.push(r.next() as u8);
    }
    out
}

/// Starts a watchdog over `log`: unless `done` is signalled within `limit`, it prints the slot
/// state and aborts.
fn watchdog(
    log: Arc<Log>,
    what: &'static str,
    limit: Duration,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!(
                "{what}: no progress for {limit:?}, the appenders hang. Slot state:\n{}",
                log.debug_state()
            );
            eprintln!("stats: {:?}", log.stats());
            std::process::abort();
        }
    });
    (tx, h)
}

fn stress(threads: u32, per_thread: u32, slot_pool: usize) {
    let seed = std::env::var("SLOTLOG_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x57E5_5000u64);
    eprintln!("stress {threads} threads: seed {seed} (SLOTLOG_SEED)");
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .segment_size(128 << 10)
            .slot_size(4 << 10)
            .slot_pool(slot_pool)
            .max_record_size(8 << 10)
            .recycle_segments(2)
            .flush_interval(Some(Duration::from_millis(2)))
    };
    let log = Arc::new(Log::open(dir.path(), opts()).unwrap());
    let (done, dog) = watchdog(log.clone(), "stress", Duration::from_secs(60));
    let workers: Vec<_> = (0..threads)
        .map(|tid| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (tid as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                let mut mine = Vec::with_capacity(per_thread as usize);
                for seq in 0..per_thread {
                    let len = match rng.next() % 16 {
                        0 => 0,
                        1 => 2100 + (rng.next() % 6000) as usize, // unbuffered (> slot_size / 2)
                        _ => (rng.next() % 700) as usize,
                    };
                    let durability = match rng.next() % 10 {
                        0..=5 => Durability::NoSync,
                        6..=7 => Durability::WriteOnly,
                        _ => Durability::FullSync,
                    };
                    let data = payload(tid, seq, len);
                    let lsn = log
                        .append(&data, durability)
                        .unwrap_or_else(|e| panic!("t{tid} append {seq}: {e}"));
                    mine.push((lsn, data));
                }
                mine
            })
        })
        .collect();
    let mut expect: Vec<(Lsn, Vec<u8>)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("appender panicked"))
        .collect();
    log.sync().unwrap();
    done.send(()).unwrap();
    dog.join().unwrap();
    let stats = log.stats();
    Arc::try_unwrap(log)
        .expect("log still shared")
        .close()
        .unwrap();
    eprintln!("stress {threads} threads: {stats:?}");
    assert_eq!(stats.appends, threads as u64 * per_thread as u64);

    expect.sort_by_key(|(l, _)| *l);
    for w in expect.windows(2) {
        assert!(w[0].0 < w[1].0, "two appends got the same lsn {}", w[0].0);
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    let got: Vec<(Lsn, Vec<u8>)> = read_all(&log);
    assert_eq!(got.len(), expect.len(), "record count after reopen");
    for (g, e) in got.iter().zip(&expect) {
        assert!(
            g == e,
            "record at {} differs after reopen (expected one at {})",
            g.0,
            e.0
        );
    }
    log.close().unwrap();
}

#[test]
fn oversubscribed_64_threads_mixed_durability() {
    stress(64, 400, 3);
}

#[test]
fn oversubscribed_256_threads_mixed_durability() {
    stress(256, 120, 4);
}
