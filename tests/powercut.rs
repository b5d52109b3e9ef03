//! Power-cut and I/O-fault property tests on `SimStorage`.
//!
//! Many threads append self-verifying records of random sizes and durabilities; at a random
//! point power is cut (or an fdatasync fails with EIO / a write with ENOSPC). After the reboot
//! every `FullSync`-acknowledged record must be there byte-exact at its `Lsn`, every record read
//! back must be one that was appended (and at the `Lsn` its append returned), the records must
//! form a gap-free prefix of the log, and the log must take new appends.
//!
//! Seeds: case `i` uses seed `base + i`; the base is printed and comes from `SLOTLOG_SEED`
//! (default fixed, random with `SLOTLOG_LONG=1`). A failure prints its case seed: rerun it alone
//! with `SLOTLOG_SEED=<seed> SLOTLOG_CASES=1`. `SLOTLOG_LONG=1` runs 10,000 cases.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slotlog::storage::{Fault, SimStorage, Storage};
use slotlog::{Durability, Log, Lsn, Options};

mod common;
use common::{read_all, Rng};

// ----- deterministic randomness ------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn long() -> bool {
    std::env::var("SLOTLOG_LONG").is_ok_and(|v| v == "1")
}

/// (base seed, number of cases) for a property that runs `quick` cases normally.
fn plan(name: &str, quick: u64) -> (u64, u64) {
    let base = env_u64("SLOTLOG_SEED").unwrap_or_else(|| {
        if long() {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        } else {
            0x5107_1060_0000_0000
        }
    });
    let cases = env_u64("SLOTLOG_CASES").unwrap_or(if long() { 10_000 } else { quick });
    eprintln!("{name}: base seed {base} (SLOTLOG_SEED), {cases} cases");
    (base, cases)
}

/// Runs `case` for every seed of the plan; a failure names its seed.
fn run_cases(name: &str, quick: u64, case: impl Fn(u64) + std::panic::RefUnwindSafe) {
    let (base, cases) = plan(name, quick);
    let start = Instant::now();
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        if let Err(e) = std::panic::catch_unwind(|| case(seed)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: case {i} failed; reproduce with SLOTLOG_SEED={seed} SLOTLOG_CASES=1: {msg}");
        }
    }
    eprintln!(
        "{name}: {cases} cases passed in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

// ----- self-verifying records ----------------------------------------------------------------

/// The bytes thread `tid` appends as its `seq`-th record of `len` bytes. Records of 12 bytes or
/// more start with `tid`, `seq`, `len`; the rest is a stream derived from them, so a record
/// read back names its origin and can be regenerated and compared. Shorter ones are a pattern
/// of their length only.
fn payload(tid: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut r = Rng(if len < 12 {
        len as u64
    } else {
        (tid as u64) << 32 | seq as u64
    } ^ 0xA5A5_0000_1234);
    if len >= 12 {
        out.extend_from_slice(&tid.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    while out.len() < len {
        let w = r.next().to_le_bytes();
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&w[..n]);
    }
    out
}

/// Who appended `data`, if it verifies: `Some(Some((tid, seq)))`, or `Some(None)` for a valid
/// short record; `None` if the bytes are not any record this test can have appended.
fn origin(data: &[u8]) -> Option<Option<(u32, u32)>> {
    if data.len() < 12 {
        return (payload(0, 0, data.len()) == data).then_some(None);
    }
    let tid = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let seq = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let len = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
    (len == data.len() && payload(tid, seq, len) == data).then_some(Some((tid, seq)))
}

// ----- the shared scenario ---------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Geometry {
    segment_size: u64,
    slot_size: usize,
    slot_pool: usize,
    max_record: usize,
    flush_interval: Option<Duration>,
    /// `Options::max_unsynced`.
    max_unsynced: Option<u64>,
}

impl Geometry {
    /// Small fixed geometry of the regression tests: 32 KiB segments, 4 KiB slots, no flusher.
    const SMALL: Geometry = Geometry {
        segment_size: 32 << 10,
        slot_size: 4096,
        slot_pool: 3,
        max_record: 4096,
        flush_interval: None,
        max_unsynced: None,
    };

    fn random(rng: &mut Rng) -> Geometry {
        let slot_size = [2048usize, 4096, 8192][rng.below(3) as usize];
        let max_record = [4096usize, 16 << 10][rng.below(2) as usize];
        let min_seg = 64 + (max_record + 16).max(slot_size) as u64;
        let segment_size =
            (min_seg + rng.range(0, 3) * 16384).max([32u64 << 10, 64 << 10][rng.below(2) as usize]);
        let flush_interval = match rng.below(3) {
            0 => None,
            1 => Some(Duration::from_millis(1)),
            _ => Some(Duration::from_millis(10)),
        };
        Geometry {
            segment_size,
            slot_size,
            slot_pool: rng.range(3, 4) as usize,
            max_record,
            flush_interval,
            max_unsynced: None,
        }
    }

    /// The in-flight window of these options: the smallest `max_unsynced` they allow.
    fn window(&self) -> u64 {
        self.slot_pool as u64 * (self.slot_size as u64).max(2 * (self.max_record as u64 + 16))
    }

    fn options(&self, sim: &Arc<SimStorage>) -> Options {
        Options::default()
            .segment_size(self.segment_size)
            .slot_size(self.slot_size)
            .slot_pool(self.slot_pool)
            .max_record_size(self.max_record)
            .flush_interval(self.flush_interval)
            .max_unsynced(self.max_unsynced)
            .storage(sim.clone())
    }

    /// Log addresses per segment file.
    fn payload(&self) -> u64 {
        self.segment_size - 64
    }
}

fn dir() -> &'static std::path::Path {
    std::path::Path::new("/sim/log")
}

/// One append a thread made.
#[derive(Clone, Debug)]
struct Attempt {
    len: usize,
    durability: Durability,
    /// The Lsn, if `append` returned one.
    lsn: Option<Lsn>,
    /// The append returned `Ok` before the power cut (or fault check) began.
    acked_before_cut: bool,
    /// A `NoSync` append followed by `Log::wait(lsn, FullSync)` that returned `Ok` before the
    /// power cut: the record must survive as a `FullSync` one.
    waited_durable: bool,
}

impl Attempt {
    /// Acknowledged as durable before the power cut, by its append or by a wait.
    fn durable_before_cut(&self) -> bool {
        self.acked_before_cut && (self.durability == Durability::FullSync || self.waited_durable)
    }
}

fn random_len(rng: &mut Rng, g: &Geometry) -> usize {
    match rng.below(20) {
        0 => 0,
        1..=3 => rng.range(1, 16) as usize,
        4 => rng.range(g.slot_size as u64 / 2, g.max_record as u64) as usize, // unbuffered
        _ => rng.range(12, 1500) as usize,
    }
}

fn random_durability(rng: &mut Rng) -> Durability {
    match rng.below(10) {
        0..=4 => Durability::NoSync,
        5..=6 => Durability::WriteOnly,
        _ => Durability::FullSync,
    }
}

/// Sends on drop, so the watchdog hears about a worker even if it panics.
struct DoneGuard(mpsc::Sender<()>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Joins the workers; if they do not all finish within `limit` (a hang detector only), prints
/// the slot state and fails.
fn join_watched<T>(
    log: &Log,
    handles: Vec<JoinHandle<T>>,
    done: mpsc::Receiver<()>,
    limit: Duration,
) -> Vec<T> {
    for _ in 0..handles.len() {
        if done.recv_timeout(limit).is_err() {
            panic!(
                "appenders hung for {limit:?}; slot state:\n{}",
                log.debug_state()
            );
        }
    }
    handles
        .into_iter()
        .map(|h| h.join().expect("appender panicked"))
        .collect()
}

/// What one thread did.
type Trace = Vec<Attempt>;

/// Checks the recovered records against what the threads did. `must_keep(attempt)` says which
/// acknowledged records have to survive.
/// True if `from..to` of the log on `sim` holds only padding frames (each with its own address
/// and the padding flag), as the rest of a lane chunk cut short does.
fn padding_only(sim: &SimStorage, g: &Geometry, mut at: u64, to: u64) -> bool {
    let p = g.payload();
    while at < to {
        let mut base = at / p * p;
        if base + p - at < 16 {
            // Fewer than 16 bytes left in the segment: unused, no frame (docs/format.md). The
            // padding goes on at the next segment's start (a lane chunk cut short there); this
            // used to read past the segment's file and call such a log gapped (1 run of the
            // writeback property in 60, two suites at once, 2026-12-07).
            at = base + p;
            base = at;
        }
        let Some(bytes) = sim.read_file(&dir().join(format!("{base:016x}.seg"))) else {
            return false;
        };
        let off = (64 + at - base) as usize;
        let Some(h) = bytes.get(off..off + 16) else {
            return false;
        };
        let word = u32::from_le_bytes(h[8..12].try_into().unwrap());
        if u64::from_le_bytes(h[0..8].try_into().unwrap()) != at || word & 1 << 31 == 0 {
            return false;
        }
        at += 16 + u64::from(word & !(1 << 31));
    }
    at == to
}

fn verify_recovered(
    sim: &SimStorage,
    got: &[(Lsn, Vec<u8>)],
    traces: &[Trace],
    g: &Geometry,
    must_keep: impl Fn(&Attempt) -> bool,
) -> Result<(), String> {
    // Every record is one that was appended, at the lsn its append returned.
    let mut by_lsn: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut last_seq: HashMap<u32, u32> = HashMap::new();
    for (lsn, data) in got {
        by_lsn.insert(lsn.as_u64(), data);
        match origin(data) {
            None => {
                return Err(format!(
                    "record at {lsn} ({} bytes) was never appended",
                    data.len()
                ))
            }
            Some(None) => {}
            Some(Some((tid, seq))) => {
                let Some(a) = traces.get(tid as usize).and_then(|t| t.get(seq as usize)) else {
                    return Err(format!(
                        "record at {lsn} claims thread {tid} seq {seq}, never attempted"
                    ));
                };
                if a.len != data.len() {
                    return Err(format!(
                        "record at {lsn}: length {} but thread {tid} seq {seq} had {}",
                        data.len(),
                        a.len
                    ));
                }
                if let Some(want) = a.lsn {
                    if want != *lsn {
                        return Err(format!(
                            "thread {tid} seq {seq} was acknowledged at {want} but read at {lsn}"
                        ));
                    }
                }
                if let Some(prev) = last_seq.insert(tid, seq) {
                    if prev >= seq {
                        return Err(format!(
                            "thread {tid}: seq {seq} at {lsn} follows seq {prev} in log order"
                        ));
                    }
                }
            }
        }
    }
    // No gaps: each frame starts where the previous ends, at the next segment's start, or after
    // padding frames inside the segment (the rests of lane chunks cut short, docs/design.md,
    // "Lanes"), which the gap must consist of, as read from the files.
    let p = g.payload();
    let mut end: Option<u64> = None;
    for (lsn, data) in got {
        let l = lsn.as_u64();
        match end {
            None if l % p != 0 => {
                return Err(format!("first record at {l} is not at a segment start"))
            }
            Some(e) if l != e && l != (e / p + 1) * p && !padding_only(sim, g, e, l) => {
                return Err(format!(
                    "gap in the recovered log: a frame ends at {e}, the next starts at {l}"
                ))
            }
            _ => {}
        }
        end = Some(l + 16 + data.len() as u64);
    }
    let first = got.first().map_or(0, |(l, _)| l.as_u64());
    let end = end.unwrap_or(0);
    // Every acknowledged record inside the recovered range is there, byte-exact; every record
    // that must survive is inside it.
    for (tid, trace) in traces.iter().enumerate() {
        for (seq, a) in trace.iter().enumerate() {
            let Some(lsn) = a.lsn else { continue };
            let l = lsn.as_u64();
            let want = payload(tid as u32, seq as u32, a.len);
            if l >= first && l < end {
                if by_lsn.get(&l).copied() != Some(&want[..]) {
                    return Err(format!("acknowledged record t{tid}/s{seq} at {l} missing or different inside the recovered prefix ..{end}"));
                }
            } else if must_keep(a) && l >= first {
                let how = if a.waited_durable {
                    " + wait(FullSync)"
                } else {
                    ""
                };
                return Err(format!(
                    "{:?}{how}-acknowledged record t{tid}/s{seq} at {l} lost (recovered log ends at {end})",
                    a.durability
                ));
            }
        }
    }
    Ok(())
}

/// After recovery: more appends, a clean close, a reopen; everything must read back.
fn append_after_recovery(
    sim: &Arc<SimStorage>,
    g: &Geometry,
    recovered: Vec<(Lsn, Vec<u8>)>,
    rng: &mut Rng,
) {
    let log =
        Log::open(dir(), g.options(sim)).unwrap_or_else(|e| panic!("second open failed: {e}"));
    assert_eq!(
        read_all(&log),
        recovered,
        "reopening again changed the recovered records"
    );
    let mut expect = recovered;
    let tid = 1000;
    for seq in 0..rng.range(1, 40) as u32 {
        let data = payload(tid, seq, random_len(rng, g));
        let lsn = log
            .append(&data, random_durability(rng))
            .unwrap_or_else(|e| panic!("append after recovery: {e}"));
        if let Some((last, _)) = expect.last() {
            assert!(
                lsn > *last,
                "new lsn {lsn} not after the recovered end {last}"
            );
        }
        expect.push((lsn, data));
    }
    log.close().unwrap();
    let log = Log::open(dir(), g.options(sim)).unwrap_or_else(|e| panic!("third open failed: {e}"));
    assert_eq!(
        read_all(&log),
        expect,
        "records appended after recovery did not read back"
    );
    log.close().unwrap();
}

// ----- power cut -------------------------------------------------------------------------

/// How a power-cut case cuts power.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CutKind {
    /// `SimStorage::power_cut`: only synced bytes survive (maybe with a torn last write).
    Synced,
    /// `SimStorage::power_cut_with_writeback`: a random half of the unsynced pages survive too,
    /// in no order. The log runs with `max_unsynced` (one or two windows), which must make every
    /// such cut recoverable in the default mode.
    Writeback,
}

fn power_cut_case(seed: u64, totals: &[AtomicU64; 5], kind: CutKind) {
    let mut rng = Rng(seed);
    let mut g = Geometry::random(&mut rng);
    let threads = rng.range(4, 8) as usize;
    let mut per_thread: Vec<u64> = (0..threads).map(|_| rng.range(20, 150)).collect();
    let mut cut_after = rng.range(0, per_thread[0]);
    let tear = rng.chance(1, 2);
    // What a thread makes durable: FullSync appends, and a FullSync wait after a NoSync append.
    let (full_sync_in, wait_in) = match kind {
        CutKind::Synced => (None, 4),
        // Long unsynced runs: the bytes beyond the durable frontier must reach the bound.
        CutKind::Writeback => {
            g.max_unsynced = Some(g.window() * rng.range(1, 2));
            per_thread.iter_mut().for_each(|n| *n *= 3);
            cut_after = rng.range(per_thread[0] / 2, per_thread[0]);
            (Some(60), 60)
        }
    };
    let cut_power = move |sim: &SimStorage| match kind {
        CutKind::Synced => sim.power_cut(tear),
        CutKind::Writeback => sim.power_cut_with_writeback(seed),
    };

    let sim = SimStorage::new();
    let log = Arc::new(Log::open(dir(), g.options(&sim)).unwrap());
    let cut = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let handles: Vec<_> = (0..threads)
        .map(|tid| {
            let (log, sim, cut, g, done) = (
                log.clone(),
                sim.clone(),
                cut.clone(),
                g,
                DoneGuard(done_tx.clone()),
            );
            let mut rng = Rng(seed ^ (tid as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let n = per_thread[tid];
            std::thread::spawn(move || {
                let _done = done;
                let mut trace = Trace::new();
                for seq in 0..n as u32 {
                    if tid == 0 && seq as u64 == cut_after {
                        // SeqCst: an append that reads `false` afterwards completed before the cut.
                        cut.store(true, Ordering::SeqCst);
                        cut_power(&sim);
                    }
                    let len = random_len(&mut rng, &g);
                    let mut durability = random_durability(&mut rng);
                    if let Some(n) = full_sync_in {
                        durability = match rng.below(n) {
                            0 => Durability::FullSync,
                            1..=5 => Durability::WriteOnly,
                            _ => Durability::NoSync,
                        };
                    }
                    let mut res = log.append(&payload(tid as u32, seq, len), durability);
                    let acked_before_cut = res.is_ok() && !cut.load(Ordering::SeqCst);
                    // Now and then a NoSync record is made durable by a wait for it (which
                    // also covers every record below it).
                    let mut waited_durable = false;
                    if let (Ok(lsn), Durability::NoSync, 0) = (&res, durability, rng.below(wait_in))
                    {
                        let waited = log.wait(*lsn, Durability::FullSync);
                        waited_durable = waited.is_ok() && !cut.load(Ordering::SeqCst);
                        if let Err(e) = waited {
                            res = Err(e);
                        }
                    }
                    trace.push(Attempt {
                        len,
                        durability,
                        lsn: res.as_ref().ok().copied(),
                        acked_before_cut,
                        waited_durable,
                    });
                    if res.is_err() {
                        break;
                    }
                }
                if tid == 0 && !cut.load(Ordering::SeqCst) {
                    cut.store(true, Ordering::SeqCst);
                    cut_power(&sim);
                }
                trace
            })
        })
        .collect();
    drop(done_tx);
    let traces = join_watched(&log, handles, done_rx, Duration::from_secs(60));
    // Power is off: whatever the old process still does fails.
    assert!(
        log.append(b"after the cut", Durability::FullSync).is_err(),
        "a FullSync append succeeded after the cut"
    );
    totals[3].fetch_add(log.stats().lane_chunks, Ordering::Relaxed);
    totals[4].fetch_add(log.stats().unsynced_waits, Ordering::Relaxed);
    drop(Arc::try_unwrap(log).expect("log still shared"));

    let log = Log::open(dir(), g.options(&sim))
        .unwrap_or_else(|e| panic!("reopen after the power cut failed: {e}"));
    let got = read_all(&log);
    log.close().unwrap();
    let acked: usize = traces.iter().flatten().filter(|a| a.lsn.is_some()).count();
    let durable_acks = traces
        .iter()
        .flatten()
        .filter(|a| a.durable_before_cut())
        .count();
    totals[0].fetch_add(durable_acks as u64, Ordering::Relaxed);
    totals[1].fetch_add(got.len() as u64, Ordering::Relaxed);
    totals[2].fetch_add(
        traces.iter().map(|t| t.len() as u64).sum(),
        Ordering::Relaxed,
    );
    if let Err(e) = verify_recovered(&sim, &got, &traces, &g, Attempt::durable_before_cut) {
        panic!("{e}\n geometry {g:?}, {threads} threads, cut after {cut_after}, tear {tear}, {acked} acks, {} recovered", got.len());
    }
    append_after_recovery(&sim, &g, got, &mut rng);
}

/// Runs `cases` power-cut cases of `kind`; fails if none acknowledged a durable record before
/// its cut. Returns the totals: durable acks checked, records recovered, appends, lane chunks,
/// writes that waited for the unsynced bound.
fn power_cut_property(name: &str, cases: u64, kind: CutKind) -> [u64; 5] {
    let totals: [AtomicU64; 5] = Default::default();
    run_cases(name, cases, |seed| power_cut_case(seed, &totals, kind));
    let totals = totals.map(|t| t.into_inner());
    let [durable, recovered, attempts, chunks, waits] = totals;
    eprintln!("{name}: {attempts} appends, {durable} durable acks (FullSync appends and waits) before the cut checked, {recovered} records recovered, {chunks} lane chunks, {waits} writes waited for the unsynced bound");
    assert!(
        durable > 0 && recovered > 0,
        "the cases never acknowledged a FullSync record before the cut"
    );
    totals
}

#[test]
fn power_cut_keeps_every_full_sync_ack_and_a_gap_free_prefix() {
    power_cut_property("power_cut", 30, CutKind::Synced);
    // Small NoSync records of contending threads may go through lanes here (few do: most
    // records are durable or large); tests/lanes.rs has the power-cut test that relies on them.
}

// ----- power cuts with out-of-order writeback ----------------------------------------------

/// The power-cut property with a cut that also keeps a random half of the unsynced pages, on a
/// log bounded by `max_unsynced`: `open` in the default mode must always succeed, with every
/// FullSync ack and a gap-free prefix.
#[test]
fn power_cut_with_writeback_under_a_bound_opens_and_keeps_every_full_sync_ack() {
    let [.., waits] = power_cut_property("writeback_cut", 100, CutKind::Writeback);
    // Without writes that reached the bound, the cases would not test it.
    assert!(waits > 0, "no write ever waited for the bound");
}

/// While fdatasyncs are held back, `NoSync` appends stop once the bound is reached, instead of
/// writing more unsynced bytes: the files never hold more than `max_unsynced` bytes a power cut
/// could lose or reorder, and the writer that waits counts in `Stats::unsynced_waits`.
#[test]
fn writes_wait_for_an_fdatasync_rather_than_pass_the_bound() {
    let g = Geometry {
        max_unsynced: Some(Geometry::SMALL.window()),
        ..Geometry::SMALL
    };
    let bound = g.max_unsynced.unwrap();
    let sim = SimStorage::new();
    // Held fdatasyncs wait here; `waiting` counts them.
    let gate = Arc::new((
        parking_lot::Mutex::new((true, 0usize)),
        parking_lot::Condvar::new(),
    ));
    let most_unsynced = Arc::new(AtomicU64::new(0));
    let storage = {
        let (gate, sim, most) = (gate.clone(), sim.clone(), most_unsynced.clone());
        common::SyncHook::with_writes(
            sim.clone(),
            move |sync| {
                let (lock, cv) = &*gate;
                let mut g = lock.lock();
                g.1 += 1;
                cv.notify_all();
                while g.0 {
                    cv.wait(&mut g);
                }
                drop(g);
                sync()
            },
            move |write| {
                let res = write();
                most.fetch_max(sim.unsynced_bytes(), Ordering::SeqCst);
                res
            },
        )
    };
    // Opens the gate when dropped, also while a failed assertion unwinds: the log's threads
    // must finish their fdatasyncs for the log to close.
    struct OpenOnDrop(Arc<(parking_lot::Mutex<(bool, usize)>, parking_lot::Condvar)>);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0 .0.lock().0 = false;
            self.0 .1.notify_all();
        }
    }
    let log = Arc::new(Log::open(dir(), g.options(&sim).storage(storage)).unwrap());
    // Declared after the log, so dropped before it.
    let opener = OpenOnDrop(gate.clone());
    let total = 5 * bound;
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut seq = 0;
            while log.end_lsn().unwrap().as_u64() < total {
                log.append(&payload(0, seq, 1000), Durability::NoSync)
                    .unwrap();
                seq += 1;
            }
            log.flush().unwrap();
        })
    };
    // Wait until a writer waits for the bound with an fdatasync held. Nothing signals the
    // count, so this polls it every millisecond, for 20 s at most (a hang detector).
    {
        let (lock, cv) = &*gate;
        let mut st = lock.lock();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(st.1 > 0 && log.stats().unsynced_waits > 0) {
            assert!(
                Instant::now() < deadline,
                "no write waited for the bound in 20 s: {}",
                log.debug_state()
            );
            cv.wait_for(&mut st, Duration::from_millis(1));
        }
    }
    assert!(
        !appender.is_finished(),
        "the appender wrote {total} bytes with every fdatasync held"
    );
    assert!(sim.unsynced_bytes() <= bound);
    drop(opener);
    appender.join().unwrap();
    let most = most_unsynced.load(Ordering::SeqCst);
    assert!(
        most <= bound,
        "{most} unsynced bytes in the files at once, bound {bound}"
    );
    assert!(
        most > bound / 2,
        "the bound was never approached ({most} bytes)"
    );
    Arc::try_unwrap(log).unwrap().close().unwrap();
}

/// One thread: 5 FullSync records, then `NoSync` records of 1,000 bytes, 16 windows' worth,
/// written out by `flush`, then a power cut keeping a random half (by `seed`) of the unsynced
/// pages.
fn unsynced_run_then_writeback_cut(seed: u64, g: &Geometry) -> CutRun {
    let sim = SimStorage::new();
    let log = Log::open(dir(), g.options(&sim)).unwrap();
    let mut appended = BTreeMap::new();
    let mut acked = Vec::new();
    for seq in 0..5 {
        let data = payload(0, seq, 100);
        let lsn = log.append(&data, Durability::FullSync).unwrap();
        appended.insert(lsn, data.clone());
        acked.push((lsn, data));
    }
    let mut seq = 5;
    while log.end_lsn().unwrap().as_u64() < 16 * Geometry::SMALL.window() {
        let data = payload(0, seq, 1000);
        appended.insert(log.append(&data, Durability::NoSync).unwrap(), data);
        seq += 1;
    }
    log.flush().unwrap();
    sim.power_cut_with_writeback(seed);
    drop(log);
    CutRun {
        sim,
        appended,
        acked,
    }
}

/// What [`unsynced_run_then_writeback_cut`] left.
struct CutRun {
    sim: Arc<SimStorage>,
    /// Every record appended, by its Lsn.
    appended: BTreeMap<Lsn, Vec<u8>>,
    /// The FullSync acks.
    acked: Vec<(Lsn, Vec<u8>)>,
}

/// Why `max_unsynced` exists: without it, a power cut that wrote back unsynced pages out of
/// order can leave valid records more than the in-flight window after a hole, and the default
/// mode refuses the log (Corrupt). `KeepValidPrefix` opens it with every FullSync ack. With
/// the bound, the same runs open in the default mode.
#[test]
fn without_a_bound_writeback_can_leave_a_log_that_only_keep_valid_prefix_opens() {
    let seed = common::seed("writeback_refusal");
    let mut refused = 0;
    for case in 0..8 {
        let seed = seed.wrapping_add(case);
        let ctx = format!("seed {seed}: ");
        let g = Geometry::SMALL;
        let CutRun {
            sim,
            appended,
            acked,
        } = unsynced_run_then_writeback_cut(seed, &g);
        match Log::open(dir(), g.options(&sim)) {
            Ok(log) => check_acks_and_origins(&log, &acked, &appended, &ctx),
            Err(slotlog::Error::Corrupt { .. }) => {
                refused += 1;
                let opts = g
                    .options(&sim)
                    .recovery_mode(slotlog::RecoveryMode::KeepValidPrefix);
                let log = Log::open(dir(), opts).unwrap();
                check_acks_and_origins(&log, &acked, &appended, &ctx);
            }
            Err(e) => panic!("{ctx}open failed with {e}, not Corrupt"),
        }

        let bounded = Geometry {
            max_unsynced: Some(g.window()),
            ..g
        };
        let CutRun {
            sim,
            appended,
            acked,
        } = unsynced_run_then_writeback_cut(seed, &bounded);
        let log = Log::open(dir(), bounded.options(&sim))
            .unwrap_or_else(|e| panic!("{ctx}the bounded log did not open: {e}"));
        check_acks_and_origins(&log, &acked, &appended, &ctx);
        let got = read_all(&log);
        assert!(
            got.len() >= acked.len(),
            "{ctx}the bounded log lost records"
        );
    }
    eprintln!("writeback_refusal: {refused} of 8 unbounded runs refused, all bounded ones opened");
    assert!(
        refused > 0,
        "seed {seed}: no unbounded run was refused; the scenario no longer shows the hole"
    );
}

// ----- injected I/O errors ---------------------------------------------------------------------

fn fault_case(seed: u64, fault: Fault, fired: &AtomicU64) {
    let mut rng = Rng(seed);
    let mut g = Geometry::random(&mut rng);
    // One big segment and its prepared successor: no segment is created while the fault is
    // armed, so it fires in the log's own writes or fdatasyncs.
    g.segment_size = 4 << 20;
    let threads = rng.range(4, 8) as usize;
    let per_thread: Vec<u64> = (0..threads).map(|_| rng.range(20, 100)).collect();

    let sim = SimStorage::new();
    let log = Arc::new(Log::open(dir(), g.options(&sim)).unwrap());
    log.append(&payload(999, 0, 20), Durability::FullSync)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The preparer zero-fills a spare and installs it as the next segment.
    while log.stats().segments_recycled < 1 {
        assert!(
            Instant::now() < deadline,
            "the preparer never created the second segment"
        );
        std::thread::yield_now();
    }
    let first = (Lsn::ZERO, payload(999, 0, 20));
    let skip = match fault {
        Fault::SyncEio => rng.range(0, 12),
        _ => rng.range(0, 40),
    };
    sim.inject(fault, skip);

    let failed = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let handles: Vec<_> = (0..threads)
        .map(|tid| {
            let (log, failed, g, done) =
                (log.clone(), failed.clone(), g, DoneGuard(done_tx.clone()));
            let mut rng = Rng(seed ^ (tid as u64 + 7).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let n = per_thread[tid];
            std::thread::spawn(move || {
                let _done = done;
                let mut trace = Trace::new();
                for seq in 0..n as u32 {
                    let len = random_len(&mut rng, &g);
                    let durability = random_durability(&mut rng);
                    let failed_before = failed.load(Ordering::SeqCst);
                    let res = log.append(&payload(tid as u32, seq, len), durability);
                    if failed_before {
                        assert!(
                            res.is_err(),
                            "append succeeded after another append had failed"
                        );
                    }
                    trace.push(Attempt {
                        len,
                        durability,
                        lsn: res.as_ref().ok().copied(),
                        acked_before_cut: res.is_ok(),
                        waited_durable: false,
                    });
                    if let Err(e) = res {
                        assert!(e.is_poisoned(), "append failed with {e}, expected Poisoned");
                        failed.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                trace
            })
        })
        .collect();
    drop(done_tx);
    let mut traces = join_watched(&log, handles, done_rx, Duration::from_secs(60));
    let poisoned = failed.load(Ordering::SeqCst);
    if poisoned {
        fired.fetch_add(1, Ordering::Relaxed);
        assert!(
            log.append(b"later", Durability::NoSync).is_err(),
            "NoSync append accepted by a poisoned log"
        );
        assert!(log.flush().is_err(), "flush succeeded on a poisoned log");
        assert!(log.sync().is_err(), "sync succeeded on a poisoned log");
    }
    drop(Arc::try_unwrap(log).expect("log still shared"));
    // Reboot. Without a power cut (only if the fault has fired: an armed one would hit the
    // recovery) what was written must be there too.
    let cut = !poisoned || rng.chance(1, 2);
    if cut {
        sim.power_cut(rng.chance(1, 2));
    }
    let log = Log::open(dir(), g.options(&sim))
        .unwrap_or_else(|e| panic!("reopen after {fault:?} failed: {e}"));
    let got = read_all(&log);
    log.close().unwrap();
    assert_eq!(
        got.first(),
        Some(&first),
        "the record synced before the fault is gone"
    );
    // The first record, appended before the fault was armed, is "thread 999".
    traces.resize(1000, Trace::new());
    traces[999].push(Attempt {
        len: 20,
        durability: Durability::FullSync,
        lsn: Some(first.0),
        acked_before_cut: true,
        waited_durable: false,
    });
    // WriteOnly records survive a restart, but not an fdatasync's EIO: the pages it failed to
    // write count as clean from then on, and the disk never got them (as in Linux; recovery
    // reads what the disk holds). Then only FullSync acknowledgements are kept, as after a
    // power cut.
    let lost_writeback = fault == Fault::SyncEio && poisoned;
    let keep = |a: &Attempt| {
        a.durability == Durability::FullSync
            || (!cut && !lost_writeback && a.durability == Durability::WriteOnly)
    };
    if let Err(e) = verify_recovered(&sim, &got, &traces, &g, keep) {
        panic!("{e}\n {fault:?} skip {skip}, poisoned {poisoned}, power cut {cut}, geometry {g:?}");
    }
    append_after_recovery(&sim, &g, got, &mut rng);
}

fn fault_property(name: &str, quick: u64, fault: Fault) {
    let fired = AtomicU64::new(0);
    run_cases(name, quick, |seed| fault_case(seed, fault, &fired));
    let fired = fired.load(Ordering::Relaxed);
    eprintln!("{name}: the fault poisoned the log in {fired} cases");
    assert!(
        fired > 0,
        "{name}: the injected fault never reached the log; the test checks nothing"
    );
}

#[test]
fn sync_eio_poisons_every_append_and_recovery_keeps_full_sync_acks() {
    fault_property("sync_eio", 20, Fault::SyncEio);
}

#[test]
fn write_enospc_poisons_every_append_and_recovery_keeps_full_sync_acks() {
    fault_property("write_enospc", 20, Fault::WriteEnospc);
}

#[test]
fn short_write_poisons_every_append_and_recovery_keeps_full_sync_acks() {
    fault_property("short_write", 10, Fault::ShortWrite);
}

// ----- regressions -------------------------------------------------------------------------

/// A log that fdatasynced once and then only writes: the recycled files it installs after the
/// first segment made since that fdatasync get their new header made durable on its own, not a
/// full fdatasync that would first write back the dead records they still hold (50–90 ms per
/// 64 MiB on the preparer; docs/design.md, "Segment preparation"). Until 2026-12-07 any log
/// that had ever fdatasynced paid that writeback for every recycled file. Then FullSync records
/// land in those files and power is cut: every ack must survive, and no old record comes back.
#[test]
fn recycled_segments_are_not_fdatasynced_once_the_log_stops_syncing() {
    let sim = SimStorage::new();
    let opts = || recycling_options(&sim);
    let log = Log::open(dir(), opts()).unwrap();
    let mut appended: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
    let mut append = |tid: u32, seq: u32, durability: Durability| {
        let data = payload(tid, seq, 1000);
        let lsn = log.append(&data, durability).unwrap();
        appended.insert(lsn, data.clone());
        (lsn, data)
    };
    append(0, 0, Durability::FullSync);
    // WriteOnly records through five segments. The one segment made first after the fdatasync
    // (segment 2 or 3) is installed with a full fdatasync; none after it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 1u32;
    while log.end_lsn().unwrap().as_u64() < 5 * (32 << 10) {
        append(0, n, Durability::WriteOnly);
        n += 1;
    }
    assert!(log.truncate_front(log.end_lsn().unwrap()).unwrap() >= 4);
    // The files truncate_front kept for reuse, by the names a recycled install opens them under.
    let spares: Vec<String> = sim
        .list(dir())
        .unwrap()
        .into_iter()
        .filter(|name| name.ends_with(".seg.free"))
        .collect();
    assert!(spares.len() >= 4, "{spares:?}");
    let durable_writes = sim.durable_writes();
    let recycled = log.stats().segments_recycled;
    // Through three recycled segments (the preparer may be installing a fourth meanwhile).
    while log.stats().segments_recycled < recycled + 3 {
        assert!(Instant::now() < deadline, "{}", log.debug_state());
        append(1, n, Durability::WriteOnly);
        n += 1;
    }
    let s = log.stats();
    for name in &spares {
        assert_eq!(
            sim.syncs_of(&dir().join(name)),
            0,
            "recycled file {name} was installed with an fdatasync: {s:?}"
        );
    }
    assert!(sim.durable_writes() >= durable_writes + 3, "{s:?}");
    // FullSync records into the recycled files installed with their header alone (the one
    // being written and the preparer's next), then a power cut that tears the last write.
    let acked: Vec<(Lsn, Vec<u8>)> = (0..20)
        .map(|i| append(2, i, Durability::FullSync))
        .collect();
    sim.power_cut(true);
    drop(log);
    let log = Log::open(dir(), opts()).unwrap_or_else(|e| panic!("reopen failed: {e}"));
    check_acks_and_origins(&log, &acked, &appended, "");
    log.close().unwrap();
}

/// `SimStorage` with hooks for the `truncate_front` tests: the next `sync_dir` after arming, by
/// the thread that armed it (not the preparer's), first runs a closure, and while it runs (if
/// armed so), a `write_durable_at` (a recycled file's new header) cuts power right after it
/// completes;
/// that thread's next `sync_dir` can be made to fail once, and so can the n-th rename or
/// removal of a segment file (only `truncate_front` renames or removes those).
struct HookStorage {
    sim: Arc<SimStorage>,
    before_sync_dir: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    cut_on_durable_write: Arc<AtomicBool>,
    /// The next hook sets `cut_on_durable_write` while it runs.
    cut_during_hook: AtomicBool,
    cut: Arc<AtomicBool>,
    /// The next `sync_dir` fails (as if the process died before it), once.
    fail_sync_dir: AtomicBool,
    /// The thread whose `sync_dir` calls the two above apply to.
    armed_by: parking_lot::Mutex<Option<std::thread::ThreadId>>,
    /// The n-th rename or removal of a `*.seg` file from now fails (0: none).
    fail_seg_op: AtomicU64,
    /// The next rename or removal of a `*.seg` file takes effect and then reports an error.
    fail_after_seg_op: AtomicBool,
    /// Every rename of a `*.seg` file fails with `ENOSPC` (removals succeed).
    renames_out_of_space: AtomicBool,
}

impl HookStorage {
    fn new(sim: &Arc<SimStorage>) -> Arc<HookStorage> {
        Arc::new(HookStorage {
            sim: sim.clone(),
            before_sync_dir: parking_lot::Mutex::new(None),
            cut_on_durable_write: Arc::new(AtomicBool::new(false)),
            cut_during_hook: AtomicBool::new(false),
            cut: Arc::new(AtomicBool::new(false)),
            fail_sync_dir: AtomicBool::new(false),
            armed_by: parking_lot::Mutex::new(None),
            fail_seg_op: AtomicU64::new(0),
            fail_after_seg_op: AtomicBool::new(false),
            renames_out_of_space: AtomicBool::new(false),
        })
    }

    /// Runs `hook` inside this thread's next `sync_dir`.
    fn arm_before_sync_dir(&self, hook: Box<dyn FnOnce() + Send>) {
        *self.armed_by.lock() = Some(std::thread::current().id());
        *self.before_sync_dir.lock() = Some(hook);
    }

    /// As [`Self::arm_before_sync_dir`], and while `hook` runs, any thread's `write_durable_at`
    /// (an installer's header write into a recycled file: the preparer's too) cuts power right
    /// after it completes. Only for the test of that write: elsewhere the preparer's installs
    /// would cut power at random points of the hook (1 run in 60 of another test did).
    fn arm_before_sync_dir_cutting_at_header_writes(&self, hook: Box<dyn FnOnce() + Send>) {
        self.cut_during_hook.store(true, Ordering::SeqCst);
        self.arm_before_sync_dir(hook);
    }

    /// Fails this thread's next `sync_dir`.
    fn fail_next_sync_dir(&self) {
        *self.armed_by.lock() = Some(std::thread::current().id());
        self.fail_sync_dir.store(true, Ordering::SeqCst);
    }

    /// Counts a rename or removal of `path`; `Err` if it is the one armed to fail.
    fn seg_op(&self, path: &std::path::Path) -> std::io::Result<()> {
        if !path.to_string_lossy().ends_with(".seg") {
            return Ok(());
        }
        let n = self.fail_seg_op.load(Ordering::SeqCst);
        if n > 0 {
            self.fail_seg_op.store(n - 1, Ordering::SeqCst);
            if n == 1 {
                return Err(std::io::Error::other("injected rename/remove failure"));
            }
        }
        Ok(())
    }

    /// After a rename or removal of `path` took effect: `Err` if armed to report one.
    fn after_seg_op(&self, path: &std::path::Path) -> std::io::Result<()> {
        if path.to_string_lossy().ends_with(".seg")
            && self.fail_after_seg_op.swap(false, Ordering::SeqCst)
        {
            return Err(std::io::Error::other(
                "injected failure after the operation",
            ));
        }
        Ok(())
    }
}

struct HookFile {
    inner: Arc<dyn slotlog::storage::StorageFile>,
    sim: Arc<SimStorage>,
    cut_on_durable_write: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl slotlog::storage::StorageFile for HookFile {
    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> std::io::Result<()> {
        self.inner.write_at(offset, parts)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn write_durable_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_durable_at(offset, data)?;
        if self.cut_on_durable_write.load(Ordering::SeqCst) {
            self.sim.power_cut(false);
            self.cut.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn drop_cache(&self) -> std::io::Result<()> {
        self.inner.drop_cache()
    }
}

impl Storage for HookStorage {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn kind(&self, path: &std::path::Path) -> std::io::Result<Option<bool>> {
        self.sim.kind(path)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn open(
        &self,
        path: &std::path::Path,
        create: bool,
    ) -> std::io::Result<Arc<dyn slotlog::storage::StorageFile>> {
        Ok(Arc::new(HookFile {
            inner: self.sim.open(path, create)?,
            sim: self.sim.clone(),
            cut_on_durable_write: self.cut_on_durable_write.clone(),
            cut: self.cut.clone(),
        }))
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        if from.to_string_lossy().ends_with(".seg")
            && self.renames_out_of_space.load(Ordering::SeqCst)
        {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.seg_op(from)?;
        self.sim.rename(from, to)?;
        self.after_seg_op(from)
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.seg_op(path)?;
        self.sim.remove(path)?;
        self.after_seg_op(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        if *self.armed_by.lock() != Some(std::thread::current().id()) {
            return self.sim.sync_dir(dir);
        }
        if self.fail_sync_dir.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected directory fsync failure"));
        }
        let hook = self.before_sync_dir.lock().take();
        if let Some(hook) = hook {
            let cutting = self.cut_during_hook.swap(false, Ordering::SeqCst);
            self.cut_on_durable_write.store(cutting, Ordering::SeqCst);
            hook();
            self.cut_on_durable_write.store(false, Ordering::SeqCst);
        }
        self.sim.sync_dir(dir)
    }
    fn lock(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        self.sim.lock(path)
    }
}

/// `truncate_front` renames the files it keeps for reuse and fsyncs the directory once after
/// all renames. A spare handed to an installer before that fsync could get its new header made
/// durable while its new name is not: after a power cut it sits under its old `.seg` name with
/// a header for another base, and the log does not open. The hook runs appends inside
/// `truncate_front`'s directory fsync until the preparer installs the next segment, and cuts
/// power right after any recycled header write meanwhile. Found by review (2026-12-07); fails
/// with the spares offered before the fsync.
#[test]
fn truncate_front_offers_spares_only_after_their_names_are_durable() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Arc::new(Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap());
    let installed = |log: &Log| {
        let s = log.stats();
        s.segments_recycled + s.segments_sparse
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut appended = Vec::new();
    let mut n = 0u32;
    // Five segments, all durable; then records until one more segment was made, so that the
    // next one counts as made in a log that has not fdatasynced since (header-only install).
    while log.end_lsn().unwrap().as_u64() < 5 * (32 << 10) {
        let data = payload(0, n, 1000);
        appended.push((log.append(&data, Durability::WriteOnly).unwrap(), data));
        n += 1;
    }
    log.sync().unwrap();
    let synced = appended.len();
    let before = installed(&log);
    while installed(&log) == before {
        assert!(Instant::now() < deadline, "{}", log.debug_state());
        log.append(&payload(1, n, 1000), Durability::WriteOnly)
            .unwrap();
        n += 1;
    }
    let (inner_log, cut) = (log.clone(), hooks.cut.clone());
    hooks.arm_before_sync_dir_cutting_at_header_writes(Box::new(move || {
        let before = installed(&inner_log);
        let mut seq = 0;
        while !cut.load(Ordering::SeqCst) && installed(&inner_log) == before {
            assert!(Instant::now() < deadline, "{}", inner_log.debug_state());
            let appended = inner_log.append(&payload(2, seq, 1000), Durability::WriteOnly);
            if appended.is_err() {
                break;
            }
            seq += 1;
        }
    }));
    let payload_per_segment = (32 << 10) - 64;
    let _ = log.truncate_front(Lsn::from_u64(3 * payload_per_segment));
    if !hooks.cut.load(Ordering::SeqCst) {
        sim.power_cut(false);
    }
    let log = reopen_after_the_cut(log, &sim);
    // The cut may come before the renames are durable (the hook runs inside the first
    // directory fsync, and a recycled install's header write cuts at once), so the log may
    // start below the truncation point: every synced record from its start on must be there
    // (this used to expect the start at segment 3, and failed 3 runs in 100).
    let start = log.start_lsn().as_u64();
    assert!(
        start <= 3 * payload_per_segment,
        "the log starts at {start}"
    );
    let got = read_all(&log);
    let want: Vec<_> = appended[..synced]
        .iter()
        .filter(|(lsn, _)| lsn.as_u64() >= start)
        .cloned()
        .collect();
    assert!(
        got.len() >= want.len() && got[..want.len()] == want[..],
        "synced records lost: {} recovered, {} expected from {start}",
        got.len(),
        want.len(),
    );
    log.close().unwrap();
}

/// `truncate_front` takes a segment out of the list before it renames or removes it, and an
/// fdatasync covers only the segments in the list. A segment it removed with bytes written
/// but not durable (NoSync records at its end) used to be skipped by an fdatasync that ran
/// before the directory fsync, which moved the durable frontier over them anyway: a FullSync
/// append acknowledged then, and a power cut before the directory fsync brought the segment
/// back with a hole, and recovery cut the log there, acknowledged record and all. Found by
/// review (2026-12-07); lost the record on the code before the fix.
#[test]
fn truncate_front_never_lets_an_fdatasync_pass_unsynced_bytes_of_a_segment_it_removes() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Arc::new(Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap());
    let payload_per_segment = RECYCLING_PAYLOAD;
    let (mut appended, _) = durable_then_unsynced(&log, payload_per_segment - 3000);
    // Between segment 0's rename and the directory fsync: a FullSync append, then the cut.
    let late = Arc::new(parking_lot::Mutex::new(None));
    let (inner, cut, sim2, late2) = (log.clone(), hooks.cut.clone(), sim.clone(), late.clone());
    hooks.arm_before_sync_dir(Box::new(move || {
        let data = payload(1, 0, 500);
        if let Ok(lsn) = inner.append(&data, Durability::FullSync) {
            if !cut.load(Ordering::SeqCst) {
                *late2.lock() = Some((lsn, data));
            }
        }
        sim2.power_cut(false);
        cut.store(true, Ordering::SeqCst);
    }));
    let _ = log.truncate_front(Lsn::from_u64(payload_per_segment));
    assert!(
        hooks.cut.load(Ordering::SeqCst),
        "truncate_front never synced the directory"
    );
    let log = reopen_after_the_cut(log, &sim);
    let late = late
        .lock()
        .take()
        .expect("the FullSync append inside truncate_front failed");
    appended.insert(late.0, late.1.clone());
    // Only the late ack: segment 0's went with it if any directory fsync (the preparer's, say)
    // made its rename durable before the cut, as truncating it asked.
    check_acks_and_origins(&log, &[late], &appended, "");
    log.close().unwrap();
}

/// Drops the last handle of the log of the process that lost power, and opens the log again
/// (the reboot) with [`recycling_options`].
fn reopen_after_the_cut(log: Arc<Log>, sim: &Arc<SimStorage>) -> Log {
    drop(
        Arc::try_unwrap(log)
            .map_err(|_| "log still shared")
            .unwrap(),
    );
    Log::open(dir(), recycling_options(sim))
        .unwrap_or_else(|e| panic!("reopen after the power cut failed: {e}"))
}

/// Records by their Lsn.
type ByLsn = BTreeMap<Lsn, Vec<u8>>;
/// Acknowledged records, in order.
type Acks = Vec<(Lsn, Vec<u8>)>;

/// Log addresses per segment of [`recycling_options`].
const RECYCLING_PAYLOAD: u64 = (32 << 10) - 64;

/// FullSync records of 1,000 bytes up to `durable_to`, then NoSync ones 6,000 bytes further,
/// written out (`flush`) but not durable. Returns every record by Lsn, and the FullSync acks.
fn durable_then_unsynced(log: &Log, durable_to: u64) -> (ByLsn, Acks) {
    let mut appended = BTreeMap::new();
    let mut acked = Vec::new();
    let mut n = 0;
    while log.end_lsn().unwrap().as_u64() < durable_to {
        let data = payload(0, n, 1000);
        let lsn = log.append(&data, Durability::FullSync).unwrap();
        appended.insert(lsn, data.clone());
        acked.push((lsn, data));
        n += 1;
    }
    while log.end_lsn().unwrap().as_u64() < durable_to + 6000 {
        let data = payload(0, n, 1000);
        appended.insert(log.append(&data, Durability::NoSync).unwrap(), data);
        n += 1;
    }
    log.flush().unwrap();
    (appended, acked)
}

/// A process that died inside `truncate_front`, after renaming segment 0 (with written, not
/// durable NoSync records at its end) and before the directory fsync, left a rename a power
/// cut can undo. The next `open` took the file for a spare by its new name and did not
/// fdatasync it; a FullSync append was acknowledged; a power cut brought segment 0 back with a
/// hole, and recovery cut the log there, the acknowledged record with it. `open` now fsyncs
/// the directory before it reads it. Found by review (2026-12-07); lost the record before.
#[test]
fn open_makes_the_directory_it_recovers_from_durable() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap();
    let (mut appended, _) = durable_then_unsynced(&log, RECYCLING_PAYLOAD - 3000);
    hooks.fail_next_sync_dir();
    assert!(log
        .truncate_front(Lsn::from_u64(RECYCLING_PAYLOAD))
        .is_err());
    drop(log); // the process ends, without a power cut
    let log = Log::open(dir(), recycling_options(&sim)).unwrap();
    let data = payload(1, 0, 500);
    let lsn = log.append(&data, Durability::FullSync).unwrap();
    appended.insert(lsn, data.clone());
    // The acks in segment 0 went with it (truncated); this one must survive.
    let acked = vec![(lsn, data)];
    sim.power_cut(false);
    drop(log);
    let log = Log::open(dir(), recycling_options(&sim))
        .unwrap_or_else(|e| panic!("reopen after the power cut failed: {e}"));
    check_acks_and_origins(&log, &acked, &appended, "");
    log.close().unwrap();
}

/// Five segments of durable records.
fn five_durable_segments(log: &Log) -> BTreeMap<Lsn, Vec<u8>> {
    let mut appended = BTreeMap::new();
    let mut n = 0;
    while log.end_lsn().unwrap().as_u64() < 5 * RECYCLING_PAYLOAD {
        let data = payload(0, n, 1000);
        appended.insert(log.append(&data, Durability::WriteOnly).unwrap(), data);
        n += 1;
    }
    log.sync().unwrap();
    appended
}

/// After a reopen: every record at or above the log's new start is there.
fn check_durable_suffix(log: &Log, appended: &BTreeMap<Lsn, Vec<u8>>) {
    let got: BTreeMap<Lsn, Vec<u8>> = read_all(log).into_iter().collect();
    let start = log.start_lsn();
    let want: BTreeMap<Lsn, Vec<u8>> = appended
        .range(start..)
        .map(|(l, d)| (*l, d.clone()))
        .collect();
    assert_eq!(got, want, "records from {start:?} on differ");
}

/// Two `truncate_front` calls at once: the second removed segment 2 (durably) while the first
/// had renamed segment 0 and not yet segment 1, so a power cut left segments 1 and 3 without 2
/// between them, and `open` refused the log. They now run one at a time: the second waits.
/// (The hook gives the second call 1 s to finish before it cuts power; with the calls
/// serialised it cannot finish, so the test never depends on that time to pass.) Found by
/// review (2026-12-07); the log did not open before.
#[test]
fn concurrent_truncate_fronts_leave_a_contiguous_log() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Arc::new(Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap());
    let appended = five_durable_segments(&log);
    let (second, sim2) = (log.clone(), sim.clone());
    let (tx, rx) = mpsc::channel();
    let handle = Arc::new(parking_lot::Mutex::new(None));
    let handle2 = handle.clone();
    // Inside the first call's first directory fsync (segment 0 renamed, segment 1 not yet).
    hooks.arm_before_sync_dir(Box::new(move || {
        *handle2.lock() = Some(std::thread::spawn(move || {
            let _ = second.truncate_front(Lsn::from_u64(3 * RECYCLING_PAYLOAD));
            let _ = tx.send(());
        }));
        let _ = rx.recv_timeout(Duration::from_secs(1));
        sim2.power_cut(false);
    }));
    let _ = log.truncate_front(Lsn::from_u64(2 * RECYCLING_PAYLOAD));
    handle.lock().take().unwrap().join().unwrap();
    let log = reopen_after_the_cut(log, &sim);
    check_durable_suffix(&log, &appended);
    log.close().unwrap();
}

/// Five durable segments; `arm` injects a fault; `truncate_front` to the end of segment
/// `first_cut` runs into it and, if `start_after` is set, must fail and leave the log starting
/// there. Then `truncate_front` to the end of segment 3 must remove `second_removes` segments,
/// and the log, and after a clean reopen too, must start at segment 3 with every record from
/// there on.
fn truncate_through_a_fault(
    arm: impl FnOnce(&HookStorage),
    first_cut: u64,
    start_after: Option<(u64, &str)>,
    second_removes: usize,
) {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap();
    let appended = five_durable_segments(&log);
    arm(&hooks);
    let first = log.truncate_front(Lsn::from_u64(first_cut * RECYCLING_PAYLOAD));
    if let Some((start, why)) = start_after {
        assert!(first.is_err(), "the fault did not fail the call");
        assert_eq!(log.start_lsn().as_u64(), start, "{why}");
    }
    let removed = log
        .truncate_front(Lsn::from_u64(3 * RECYCLING_PAYLOAD))
        .unwrap_or_else(|e| panic!("truncation is stuck: {e}"));
    assert_eq!(removed, second_removes);
    let check = |log: Log| {
        assert_eq!(log.start_lsn().as_u64(), 3 * RECYCLING_PAYLOAD);
        check_durable_suffix(&log, &appended);
        log.close().unwrap();
    };
    check(log);
    check(Log::open(dir(), recycling_options(&sim)).unwrap());
}

/// A `truncate_front` whose second rename fails: segment 0 is gone, segments 1 and up are
/// still in place. It used to forget them all the same, so the next call removed segment 2
/// and left a gap that `open` refused, without any crash. They are now back in the log, and
/// the next call removes them in order. Found by review (2026-12-07).
#[test]
fn a_failed_truncate_front_keeps_the_segments_it_did_not_remove() {
    truncate_through_a_fault(
        |hooks| hooks.fail_seg_op.store(2, Ordering::SeqCst),
        2,
        Some((RECYCLING_PAYLOAD, "segment 1 left the log")),
        2,
    );
}

/// A `truncate_front` whose directory fsync after renaming segment 0 fails: every segment stays
/// in the log (segment 0's rename may not be durable), and the next call, finding segment 0's
/// name gone, finishes it and removes 1 and 2 in order. Found by review (2026-12-07: the branch
/// had no test; segments 1 and 2 left the log for good).
#[test]
fn a_failed_directory_fsync_in_truncate_front_keeps_the_later_segments() {
    truncate_through_a_fault(
        |hooks| hooks.fail_next_sync_dir(),
        3,
        Some((0, "a segment left the log before its removal was durable")),
        3,
    );
}

/// A segment leaves the log (`start_lsn`, iterators) only once its rename or removal is
/// durable. A call whose second rename failed used to take segments 0 to 2 out at its start and
/// give 1 and 2 back at its end: meanwhile `start_lsn` read the end of segment 2 and then went
/// back, and an iterator made then from segment 1 silently started at segment 3, although 1 and
/// 2 stayed in the log. Found by review (2026-12-07).
#[test]
fn a_failed_truncate_front_never_moves_start_lsn_back() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Arc::new(Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap());
    let appended = five_durable_segments(&log);
    let from_segment_1 = Lsn::from_u64(RECYCLING_PAYLOAD);
    let first_of_segment_1 = *appended.range(from_segment_1..).next().unwrap().0;
    hooks.fail_seg_op.store(2, Ordering::SeqCst);
    let during = Arc::new(parking_lot::Mutex::new(None));
    let (inner, during2) = (log.clone(), during.clone());
    // Inside the directory fsync after segment 0's rename, before segment 1's fails.
    hooks.arm_before_sync_dir(Box::new(move || {
        let first = inner
            .iter(from_segment_1)
            .unwrap()
            .next()
            .map(|r| r.unwrap().lsn());
        *during2.lock() = Some((inner.start_lsn(), first));
    }));
    assert!(log
        .truncate_front(Lsn::from_u64(3 * RECYCLING_PAYLOAD))
        .is_err());
    let (start_during, first_during) = during.lock().take().expect("the hook did not run");
    let start_after = log.start_lsn();
    assert_eq!(
        start_after.as_u64(),
        RECYCLING_PAYLOAD,
        "only segment 0 is removed"
    );
    assert!(
        start_during <= start_after,
        "start_lsn went back from {start_during:?} to {start_after:?}"
    );
    assert_eq!(
        first_during,
        Some(first_of_segment_1),
        "an iterator from segment 1 skipped records that stay in the log"
    );
    check_durable_suffix(&log, &appended);
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
}

/// A rename that takes effect and then reports an error (a network file system, a wrapping
/// `Storage`) used to put segment 0 back into the log under a name that no longer existed:
/// every later `truncate_front` failed at that name, and the log could never shrink again. It
/// now counts as done. Found by review (2026-12-07).
#[test]
fn a_rename_that_fails_after_taking_effect_does_not_stop_truncation() {
    truncate_through_a_fault(
        |hooks| hooks.fail_after_seg_op.store(true, Ordering::SeqCst),
        2,
        None,
        1,
    );
}

/// A disk so full that renaming a segment to a spare name fails with `ENOSPC` (the directory
/// would need a block for the new name) is when a caller truncates to free space: the segments
/// are removed instead of kept for reuse, and the call succeeds. It used to fail, and the log
/// could not shrink until space was freed some other way (noticed in review, 2026-12-07).
#[test]
fn truncate_front_removes_what_a_full_disk_will_not_rename() {
    let sim = SimStorage::new();
    let hooks = HookStorage::new(&sim);
    let log = Log::open(dir(), recycling_options(&sim).storage(hooks.clone())).unwrap();
    let appended = five_durable_segments(&log);
    hooks.renames_out_of_space.store(true, Ordering::SeqCst);
    let removed = log
        .truncate_front(Lsn::from_u64(3 * RECYCLING_PAYLOAD))
        .unwrap_or_else(|e| panic!("truncation stopped at a full disk: {e}"));
    assert_eq!(removed, 3);
    assert_eq!(log.start_lsn().as_u64(), 3 * RECYCLING_PAYLOAD);
    // Neither under their names nor kept as spares (the preparer's spares are `spare-new-`).
    let left: Vec<String> = sim.list(dir()).unwrap();
    for base in [0, RECYCLING_PAYLOAD, 2 * RECYCLING_PAYLOAD] {
        let hex = format!("{base:016x}");
        assert!(
            !left.iter().any(|name| name.contains(&hex)),
            "segment {base}'s file is still there: {left:?}"
        );
    }
    check_durable_suffix(&log, &appended);
    log.close().unwrap();
    let log = Log::open(dir(), recycling_options(&sim)).unwrap();
    assert_eq!(log.start_lsn().as_u64(), 3 * RECYCLING_PAYLOAD);
    check_durable_suffix(&log, &appended);
    log.close().unwrap();
}

/// `Log::wait`: a batch of NoSync appends made durable by one blocking wait for the last of
/// them survives a power cut; a second wait for it returns without an fdatasync; a wait beyond
/// the end covers everything appended before it.
#[test]
fn wait_makes_a_no_sync_batch_durable() {
    let sim = SimStorage::new();
    let g = Geometry::SMALL;
    let log = Log::open(dir(), g.options(&sim)).unwrap();
    let mut want = Vec::new();
    for seq in 0..100 {
        let data = payload(0, seq, 300);
        want.push((log.append(&data, Durability::NoSync).unwrap(), data));
    }
    let last = want.last().unwrap().0;
    assert_eq!(log.wait(last, Durability::FullSync).unwrap(), last);
    let syncs = log.stats().fdatasyncs;
    assert!(syncs >= 1);
    log.wait(want[10].0, Durability::FullSync).unwrap();
    log.wait(last, Durability::WriteOnly).unwrap();
    assert_eq!(
        log.stats().fdatasyncs,
        syncs,
        "a wait for durable records synced"
    );
    let data = payload(0, 100, 300);
    want.push((log.append(&data, Durability::NoSync).unwrap(), data));
    let far = Lsn::from_u64(u64::MAX);
    assert_eq!(log.wait(far, Durability::FullSync).unwrap(), far);
    log.wait(far, Durability::NoSync).unwrap();
    // Appended after the wait, never waited for: may be lost, must not be damaged.
    let unsynced = payload(0, 101, 300);
    let unsynced_lsn = log.append(&unsynced, Durability::NoSync).unwrap();
    drop(log);
    sim.power_cut(false);
    let log = Log::open(dir(), g.options(&sim)).unwrap();
    let got = read_all(&log);
    assert!(got.len() >= want.len(), "lost records: {got:?}");
    assert_eq!(
        &got[..want.len()],
        &want[..],
        "records a wait acknowledged as durable were lost"
    );
    assert!(
        got[want.len()..].is_empty() || got[want.len()..] == [(unsynced_lsn, unsynced)],
        "more came back than was appended: {:?}",
        &got[want.len()..]
    );
}

/// A process crash (the `Log` dropped without `close`: written, never fdatasynced), a reopen,
/// a `FullSync` append, then a power cut: everything the reopened log returned and then
/// acknowledged as durable must survive.
#[test]
fn recovery_after_a_process_crash_makes_the_whole_log_durable() {
    let sim = SimStorage::new();
    let g = Geometry::SMALL;
    let log = Log::open(dir(), g.options(&sim)).unwrap();
    let mut expect = Vec::new();
    for seq in 0..200 {
        let data = payload(0, seq, 1000);
        expect.push((log.append(&data, Durability::NoSync).unwrap(), data));
    }
    drop(log); // the process dies: its records are written, not synced
    let log = Log::open(dir(), g.options(&sim)).unwrap();
    assert_eq!(read_all(&log), expect);
    let data = payload(0, 200, 100);
    expect.push((log.append(&data, Durability::FullSync).unwrap(), data));
    drop(log);
    sim.power_cut(false);
    let log = Log::open(dir(), g.options(&sim))
        .unwrap_or_else(|e| panic!("reopen after the power cut: {e}"));
    assert_eq!(
        read_all(&log),
        expect,
        "records acknowledged as durable were lost"
    );
}

/// `slot_pool(2)` is below the documented minimum of 3: a clean `InvalidOptions`, no panic.
#[test]
fn slot_pool_of_two_is_accepted_or_rejected_cleanly() {
    let sim = SimStorage::new();
    let opts = Options::default()
        .segment_size(256 << 10)
        .slot_size(8 << 10)
        .slot_pool(2)
        .max_record_size(8 << 10);
    let sim2 = sim.clone();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Log::open(dir(), opts.storage(sim2)).map(|l| l.close())
    })) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(
            matches!(e, slotlog::Error::InvalidOptions(_)),
            "unexpected error {e}"
        ),
        Err(_) => panic!("Log::open panicked on slot_pool(2) instead of returning InvalidOptions"),
    }
}

/// Segments recycled by `truncate_front` while their old records are still unsynced: in a log
/// that has not fdatasynced since the previous segment was made, the new header is made durable
/// on its own (`write_durable_at`), not with an fdatasync of the whole file. After a power cut
/// the log must open, and every FullSync ack written into the recycled files must be there; the
/// old records they held must not come back.
#[test]
fn power_cut_after_recycling_unsynced_segments_keeps_full_sync_acks() {
    run_cases("recycled_power_cut", 20, recycled_power_cut_case);
}

/// After a power cut and reopen: every FullSync ack in `acked` reads back byte-exact, and every
/// record read back is one appended at that very address (`appended`), so no old record of a
/// recycled file comes back. `context` prefixes the failure messages.
fn check_acks_and_origins(
    log: &Log,
    acked: &[(Lsn, Vec<u8>)],
    appended: &BTreeMap<Lsn, Vec<u8>>,
    context: &str,
) {
    let got: BTreeMap<Lsn, Vec<u8>> = read_all(log).into_iter().collect();
    for (lsn, data) in acked {
        assert_eq!(
            got.get(lsn),
            Some(data),
            "{context}FullSync ack at {lsn:?} lost or damaged"
        );
    }
    for (lsn, data) in &got {
        assert_eq!(
            appended.get(lsn),
            Some(data),
            "{context}recovered {lsn:?} (origin {:?}) was not appended there",
            origin(data)
        );
    }
}

/// 32 KiB segments, four of them kept for reuse, no flusher: the recycled-segment tests.
fn recycling_options(sim: &Arc<SimStorage>) -> Options {
    Options::default()
        .segment_size(32 << 10)
        .slot_size(4096)
        .slot_pool(4)
        .max_record_size(4096)
        .recycle_segments(4)
        .flush_interval(None)
        .storage(sim.clone())
}

fn recycled_power_cut_case(seed: u64) {
    {
        let mut rng = Rng(seed);
        let tear = rng.chance(1, 2);
        let sim = SimStorage::new();
        let opts = || recycling_options(&sim);
        let log = Log::open(dir(), opts()).unwrap();
        // Five segments of WriteOnly records: written, never synced.
        let mut appended: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
        let mut n = 0u32;
        while log.end_lsn().unwrap().as_u64() < 5 * (32 << 10) {
            let data = payload(0, n, rng.range(12, 1500) as usize);
            appended.insert(log.append(&data, Durability::WriteOnly).unwrap(), data);
            n += 1;
        }
        let cut_at = log.end_lsn().unwrap();
        assert!(log.truncate_front(cut_at).unwrap() >= 4, "seed {seed}");
        // Records that land in the recycled files: FullSync ones (the log then fdatasyncs,
        // and installs recycled files with a full fdatasync), or WriteOnly ones only (a log
        // that never fdatasyncs: only `write_durable_at` makes each new header durable, and
        // the old records stay unsynced in the page cache).
        let full_sync = rng.chance(1, 2);
        let mut acked = Vec::new();
        let recycled_before = log.stats().segments_recycled;
        let mut m = 0u32;
        while log.stats().segments_recycled < recycled_before + 2 {
            assert!(
                m < 10_000,
                "seed {seed}: no recycled segment installed: {:?}\n{}",
                log.stats(),
                log.debug_state()
            );
            let data = payload(1, m, rng.range(12, 1500) as usize);
            m += 1;
            let durability = if full_sync {
                Durability::FullSync
            } else {
                Durability::WriteOnly
            };
            let lsn = log.append(&data, durability).unwrap();
            appended.insert(lsn, data.clone());
            if full_sync {
                acked.push((lsn, data));
            }
        }
        // WriteOnly records into two more segments, and no fdatasync after their creation:
        // recycled files while spares last, after that sparse ones (a log that fdatasynced
        // gets its next zero-filled spare only after a new fdatasync). After FullSync records
        // the first of them is installed with a full fdatasync, the second (no fdatasync since
        // the first was made) with its header made durable alone.
        let installed = |st: slotlog::Stats| st.segments_recycled + st.segments_sparse;
        let installed_before = installed(log.stats());
        let extra = rng.range(0, 20);
        let mut k = 0;
        while installed(log.stats()) < installed_before + 2 || k < extra {
            assert!(
                k < 10_000,
                "seed {seed}: no segment installed: {:?}\n{}",
                log.stats(),
                log.debug_state()
            );
            k += 1;
            let data = payload(2, n, rng.range(12, 1500) as usize);
            appended.insert(log.append(&data, Durability::WriteOnly).unwrap(), data);
            n += 1;
        }
        sim.power_cut(tear);
        drop(log);

        let log = Log::open(dir(), opts()).unwrap_or_else(|e| {
            panic!("seed {seed}, tear {tear}, full_sync {full_sync}: reopen failed: {e}")
        });
        // Records below `cut_at` may remain in the segment `truncate_front` kept, but every
        // record read back must be one appended at that very address: no old record of a
        // recycled file comes back.
        let context = format!("seed {seed}, tear {tear}, truncated at {cut_at:?}: ");
        check_acks_and_origins(&log, &acked, &appended, &context);
        log.close().unwrap();
    }
}

/// An fdatasync fails with `EIO`; the log is reopened without a reboot (the failed pages are
/// still cached, clean, and not on disk), appends a FullSync record, and loses power. The
/// record acknowledged after the reopen must survive. Recovery used to read the failed bytes
/// from the cache, take them for records and acknowledge new ones after them; on disk they were
/// a hole, and the power cut cut the acknowledged record behind it (found by review,
/// 2026-12-07, with the simulator's `SyncEio` made to keep failed pages clean as Linux does).
#[test]
fn full_sync_acks_after_a_reopen_that_followed_an_eio_survive_power_loss() {
    let sim = SimStorage::new();
    let options = || {
        Options::default()
            .segment_size(1 << 20)
            .max_record_size(128 << 10)
            .flush_interval(None)
            .storage(sim.clone())
    };
    let log = Log::open(dir(), options()).unwrap();
    let first = log.append(&[1u8; 100], Durability::FullSync).unwrap();
    sim.inject(Fault::SyncEio, 0);
    assert!(
        log.append(&[2u8; 64 << 10], Durability::FullSync).is_err(),
        "the append whose fdatasync failed was acknowledged"
    );
    drop(log); // a restart of the process, not of the machine
    let log = Log::open(dir(), options()).unwrap();
    let after = log.append(&[3u8; 100], Durability::FullSync).unwrap();
    log.close().unwrap();
    sim.power_cut(false);
    let log = Log::open(dir(), options()).unwrap();
    let got: Vec<(Lsn, u8)> = read_all(&log)
        .into_iter()
        .map(|(lsn, data)| (lsn, data[0]))
        .collect();
    log.close().unwrap();
    assert_eq!(
        got,
        vec![(first, 1), (after, 3)],
        "acknowledged: {first:?} and {after:?}"
    );
}
