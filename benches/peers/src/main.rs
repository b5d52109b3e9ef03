//! The benchmark report: calibrators, slotlog vs the four in-process baselines vs crates.io
//! WALs, latency percentiles, CPU per append, the MuopDB scenario, and the targets. Writes
//! `docs/performance.md` and `docs/img/*.png`. Run it with `benches/run-report.sh`.
//!
//! Environment (all optional):
//! - `SLOTLOG_REPORT_FULL=1`: threads 1..128, 5 repeats, 1 s points (the final sweep).
//! - `SLOTLOG_REPORT_THREADS=1,2,8,32,64`, `SLOTLOG_REPORT_REPEATS=3`, `SLOTLOG_REPORT_POINT_MS=300`,
//!   `SLOTLOG_REPORT_POINT_MB=512` (byte budget of one point; 2048 in the full sweep): override
//!   single knobs. The budget ends the fastest points before their time: slotlog's NoSync
//!   128 B points run ~150–250 ms with 512 MiB (~40 ms with the 128 MiB used until 2026-12-07,
//!   too short next to the release of 64 threads and within two segments).
//! - `SLOTLOG_BENCH_DIR`: scratch directory on a real disk (default `target/bench-data`).
//! - `SLOTLOG_REPORT_OUT`: where to write `performance.md` and `img/` (default `docs`).

mod charts;
mod checksum;
#[path = "../../common/mod.rs"]
mod common;
mod muop_async;
mod peers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{level_name, Durability, Point, Wal};
use hdrhistogram::Histogram;

const CMD: &str = "benches/run-report.sh";

struct Cfg {
    threads: Vec<usize>,
    repeats: usize,
    point: Duration,
    point_bytes: u64,
    full: bool,
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

impl Cfg {
    fn from_env() -> Cfg {
        let full = std::env::var_os("SLOTLOG_REPORT_FULL").is_some();
        let threads = std::env::var("SLOTLOG_REPORT_THREADS")
            .ok()
            .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_else(|| {
                if full {
                    vec![1, 2, 4, 8, 16, 32, 64, 128]
                } else {
                    vec![1, 2, 8, 32, 64]
                }
            });
        Cfg {
            threads,
            repeats: env_or("SLOTLOG_REPORT_REPEATS", if full { 5 } else { 3 }),
            point: Duration::from_millis(env_or(
                "SLOTLOG_REPORT_POINT_MS",
                if full { 1000 } else { 300 },
            )),
            point_bytes: env_or::<u64>("SLOTLOG_REPORT_POINT_MB", if full { 2048 } else { 512 })
                << 20,
            full,
        }
    }
}

/// The record size the sweep uses for each level (the sizes the targets name).
fn sweep_size(d: Durability) -> usize {
    match d {
        Durability::NoSync => 128,
        Durability::WriteOnly => 4096,
        Durability::FullSync => 512,
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `ratio(a[rep], b[rep])` for every repeat that has both.
fn paired_ratios(
    a: &BTreeMap<usize, f64>,
    b: &BTreeMap<usize, f64>,
    ratio: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    a.iter()
        .filter_map(|(rep, &x)| b.get(rep).map(|&y| ratio(x, y)))
        .collect()
}

/// (median, lowest, highest, count) of per-repeat ratios; `None` if there are none.
fn ratio_stats(mut ratios: Vec<f64>) -> Option<(f64, f64, f64, usize)> {
    if ratios.is_empty() {
        return None;
    }
    let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&mut ratios), lo, hi, ratios.len()))
}

fn fmt_rate(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        charts::human(v)
    }
}

fn fmt_dur(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The file system under `dir`: its type, device and mount point, and for ext4 whether it has
/// a journal (fdatasync costs differ: with one, a sync that changes metadata commits it).
fn file_system(dir: &Path) -> String {
    let df = cmd_out(
        "df",
        &["--output=source,fstype,target", &dir.to_string_lossy()],
    );
    let Some([source, fstype, target]) = df
        .lines()
        .last()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .and_then(|f| <[&str; 3]>::try_from(f).ok())
    else {
        return "file system unknown".into();
    };
    let mut out = format!("{fstype} on {source}, mounted at {target}");
    if fstype == "ext4" {
        // jbd2 lists one directory per journal, named after the device ("vda-8").
        let dev = source.rsplit('/').next().unwrap_or(source);
        let journaled = std::fs::read_dir("/proc/fs/jbd2").is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{dev}-"))
            })
        });
        out.push_str(if journaled {
            ", with a journal"
        } else {
            ", without a journal (no jbd2 entry)"
        });
    }
    out
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

// ----- calibrators ---------------------------------------------------------------------------

struct Calib {
    sync_lat: f64,
    /// write + fdatasync of 4 KiB by file state: (grows the file, sparse hole, fallocated).
    /// Why slotlog zero-fills or reuses segments (docs/design.md, "Segment preparation").
    sync_lat_by_state: (f64, f64, f64),
    sync_cpu: f64,
    memcpy_bw: f64,
    pwrite_bw: f64,
    /// The same 4 KiB writes into a new sparse file of the same size: every write lands in a
    /// page the page cache must first allocate. What a log pays while it grows into new
    /// segments rather than recycled ones.
    pwrite_new_bw: f64,
    fetch_add: BTreeMap<usize, f64>,
    /// CPU seconds per woken thread when 64 parked threads are woken together: (one
    /// `FUTEX_WAKE` for all of them on a shared word, one `FUTEX_WAKE` per thread on its own
    /// word). The floor under any FullSync append that parks: two cores run at most
    /// 2 / this many parked appends per second.
    wake_cpu: (f64, f64),
    /// write + fdatasync of 4 KiB from 1, 2 and 4 threads at once, each in its own 8 MiB of
    /// one pre-written file: fdatasyncs per second in total. Whether the device completes
    /// concurrent fdatasyncs faster than one at a time (why slotlog still runs one at a time:
    /// docs/performance-analysis.md, "Two fdatasyncs at once").
    concurrent_syncs: Vec<(usize, f64)>,
}

/// The file of the write+fdatasync and pwrite calibrators: 64 MiB, written in 16 KiB writes
/// (like slotlog's zero-filled segments) and cached.
fn calibrator_file(dir: &Path, name: &str) -> std::io::Result<common::PreFile> {
    common::PreFile::create(&dir.join(name), 64 << 20, common::SMALL_WRITES_FILL)
}

/// write + fdatasync of 4 KiB at successive offsets of a pre-written file: the median latency
/// of up to `samples` (at most 4 s) and the CPU seconds of one.
fn sync_latency(f: &common::PreFile, samples: usize) -> std::io::Result<(f64, f64)> {
    write_sync_latency(samples, |off, block| {
        f.write_at(off, &[block])?;
        f.sync()
    })
}

/// `write_and_sync(offset, 4 KiB)` at offsets 0, 4 KiB, 8 KiB, ...: the median latency of up
/// to `samples` calls (at most 4 s) and the CPU seconds of one.
fn write_sync_latency(
    samples: usize,
    mut write_and_sync: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<(f64, f64)> {
    let block = common::record_bytes(4096, 7);
    let mut lats = Vec::new();
    let cpu0 = common::cpu_seconds();
    let t_all = Instant::now();
    let mut i = 0u64;
    while lats.len() < samples && t_all.elapsed() < Duration::from_secs(4) {
        let t0 = Instant::now();
        write_and_sync(i * 4096, &block)?;
        lats.push(t0.elapsed().as_secs_f64());
        i += 1;
    }
    let cpu = (common::cpu_seconds() - cpu0) / lats.len() as f64;
    Ok((median(&mut lats), cpu))
}

/// Page-cache pwrite bandwidth of one thread: 4 KiB writes over the 64 MiB of a cached,
/// pre-written file, the median of three passes; then fdatasync, so that the writeback is not
/// left to whatever runs next.
fn pwrite_bandwidth(f: &common::PreFile) -> std::io::Result<f64> {
    let block = common::record_bytes(4096, 7);
    let mut bws = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let total: u64 = 64 << 20;
        let mut off = 0;
        while off < total {
            f.write_at(off, &[&block])?;
            off += 4096;
        }
        bws.push(total as f64 / t0.elapsed().as_secs_f64());
    }
    f.sync()?;
    Ok(median(&mut bws))
}

/// The calibrators the targets use, measured at the start and again at the end of the run.
struct IoCalib {
    sync_lat: f64,
    sync_cpu: f64,
    pwrite_bw: f64,
    pwrite_new_bw: f64,
}

fn io_calibrators(dir: &Path) -> std::io::Result<IoCalib> {
    let f = calibrator_file(dir, "calib.dat")?;
    let (sync_lat, sync_cpu) = sync_latency(&f, 400)?;
    let pwrite_bw = pwrite_bandwidth(&f)?;
    let block = common::record_bytes(4096, 7);
    // the same into new pages: a new sparse file each time, sized first like a segment
    let mut bws = Vec::new();
    for rep in 0..3 {
        let path = dir.join(format!("calib-new-{rep}.dat"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let total: u64 = 64 << 20;
        file.set_len(total)?;
        let t0 = Instant::now();
        let mut off = 0;
        while off < total {
            file.write_all_at(&block, off)?;
            off += 4096;
        }
        bws.push(total as f64 / t0.elapsed().as_secs_f64());
        drop(file);
        std::fs::remove_file(&path)?;
    }
    let pwrite_new_bw = median(&mut bws);
    Ok(IoCalib {
        sync_lat,
        sync_cpu,
        pwrite_bw,
        pwrite_new_bw,
    })
}

fn calibrate(dir: &Path, threads: &[usize]) -> std::io::Result<Calib> {
    let IoCalib {
        sync_lat,
        sync_cpu,
        pwrite_bw,
        pwrite_new_bw,
    } = io_calibrators(dir)?;
    let f = calibrator_file(dir, "calib.dat")?;
    // memcpy bandwidth, one thread
    let src = common::record_bytes(32 << 20, 3);
    let mut dst = vec![0u8; 32 << 20];
    let mut bws = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..4 {
            dst.copy_from_slice(std::hint::black_box(&src));
        }
        std::hint::black_box(&dst);
        bws.push((4 * src.len()) as f64 / t0.elapsed().as_secs_f64());
    }
    let memcpy_bw = median(&mut bws);
    // contended fetch_add at each thread count
    let mut fetch_add = BTreeMap::new();
    for &t in threads {
        let ctr = Arc::new(AtomicU64::new(0));
        let per = (4_000_000 / t as u64).max(1000);
        let run = common::run_gated(
            t,
            |_| {
                for _ in 0..per {
                    ctr.fetch_add(1, Ordering::AcqRel);
                }
            },
            |_| {},
        );
        fetch_add.insert(t, (per * t as u64) as f64 / run.wall().as_secs_f64());
    }
    let wake_cpu = (wake_cpu(64, true), wake_cpu(64, false));
    let concurrent_syncs = [1, 2, 4]
        .into_iter()
        .map(|t| Ok((t, concurrent_sync_rate(&f, t)?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let sync_lat_by_state = (
        sync_lat_on(dir, FileState::Grows)?,
        sync_lat_on(dir, FileState::Sparse)?,
        sync_lat_on(dir, FileState::Fallocated)?,
    );
    Ok(Calib {
        sync_lat,
        sync_lat_by_state,
        sync_cpu,
        memcpy_bw,
        pwrite_bw,
        pwrite_new_bw,
        fetch_add,
        wake_cpu,
        concurrent_syncs,
    })
}

/// fdatasyncs per second in total when `threads` threads each write 4 KiB and fdatasync in a
/// loop (600 in all), in disjoint 8 MiB ranges of the pre-written file `f`.
fn concurrent_sync_rate(f: &common::PreFile, threads: usize) -> std::io::Result<f64> {
    let per = 600 / threads as u64;
    let block = common::record_bytes(4096, 11);
    let run = common::run_gated(
        threads,
        |j| -> std::io::Result<()> {
            for i in 0..per {
                f.write_at(((j as u64) << 23) + i * 4096, &[&block])?;
                f.sync()?;
            }
            Ok(())
        },
        |_| {},
    );
    let secs = run.wall().as_secs_f64();
    run.results.into_iter().collect::<std::io::Result<()>>()?;
    Ok((per * threads as u64) as f64 / secs)
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: FUTEX_WAIT reads the aligned 4-byte word, which outlives the call; FUTEX_WAKE
    // uses its address only as a key. A null timeout means none.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// CPU seconds per woken thread: `threads` threads park on a futex; a driver thread wakes all
/// of them (`shared`: one FUTEX_WAKE on one word; otherwise one FUTEX_WAKE per thread on its own
/// word), waits until every one has checked in, and repeats for 2,000 rounds.
fn wake_cpu(threads: usize, shared: bool) -> f64 {
    const ROUNDS: u32 = 2000;
    let gen = Arc::new(AtomicU32::new(0));
    let own: Arc<Vec<AtomicU32>> = Arc::new((0..threads).map(|_| AtomicU32::new(0)).collect());
    let arrived = Arc::new(AtomicU32::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (gen, own, arrived) = (gen.clone(), own.clone(), arrived.clone());
            std::thread::spawn(move || {
                for r in 1..=ROUNDS {
                    let word = if shared { &*gen } else { &own[i] };
                    loop {
                        let g = word.load(Ordering::SeqCst);
                        if g >= r {
                            break;
                        }
                        futex(word, libc::FUTEX_WAIT, g);
                    }
                    if arrived.fetch_add(1, Ordering::SeqCst) + 1 == threads as u32 * r {
                        futex(&arrived, libc::FUTEX_WAKE, 1);
                    }
                }
            })
        })
        .collect();
    let cpu0 = common::cpu_seconds();
    for r in 1..=ROUNDS {
        if shared {
            gen.store(r, Ordering::SeqCst);
            futex(&gen, libc::FUTEX_WAKE, i32::MAX as u32);
        } else {
            for w in own.iter() {
                w.store(r, Ordering::SeqCst);
                futex(w, libc::FUTEX_WAKE, 1);
            }
        }
        loop {
            let a = arrived.load(Ordering::SeqCst);
            if a >= threads as u32 * r {
                break;
            }
            futex(&arrived, libc::FUTEX_WAIT, a);
        }
    }
    let cpu = common::cpu_seconds() - cpu0;
    hs.into_iter().for_each(|h| h.join().unwrap());
    cpu / (ROUNDS as f64 * threads as f64)
}

#[derive(Clone, Copy)]
enum FileState {
    /// Every write appends past the end of the file.
    Grows,
    /// The file was extended with `set_len`: writes fill holes.
    Sparse,
    /// The file was `fallocate`d: writes land on unwritten extents.
    Fallocated,
}

/// Median latency of 4 KiB write + fdatasync into a new 64 MiB file in `state` (compare with
/// the pre-written file of `calibrate`).
fn sync_lat_on(dir: &Path, state: FileState) -> std::io::Result<f64> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("calib-state.dat");
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    match state {
        FileState::Grows => {}
        FileState::Sparse => file.set_len(64 << 20)?,
        FileState::Fallocated => {
            // SAFETY: fallocate on a descriptor we own, mode 0 (allocate), in-range arguments.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 64 << 20) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    file.sync_all()?;
    let (lat, _) = write_sync_latency(300, |off, block| {
        file.write_all_at(block, off)?;
        file.sync_data()
    })?;
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(lat)
}

// ----- the sweep -----------------------------------------------------------------------------

type Key = (Durability, String, usize);

/// Segment files made new between two snapshots of one log's stats (sparse, or zero-filled by
/// the preparer) instead of reusing one.
fn new_segment_files(a: &slotlog::Stats, b: &slotlog::Stats) -> u64 {
    (b.segments_sparse - a.segments_sparse) + (b.segments_created - a.segments_created)
}

fn open_systems(root: &Path, d: Durability, rep: usize) -> Vec<Arc<dyn Wal>> {
    let mut v: Vec<Arc<dyn Wal>> = Vec::new();
    match common::Slotlog::open(&root.join(format!("slotlog-{}-{rep}", level_name(d))), d) {
        Ok(s) => v.push(Arc::new(s)),
        Err(e) => eprintln!("  slotlog failed to open: {e}"),
    }
    v.extend(common::baselines(&root.join("baselines")).expect("baselines"));
    v.extend(peers::open_peers(
        &root.join(format!("peers-{}", level_name(d))),
        d,
    ));
    v
}

fn main() {
    let cfg = Cfg::from_env();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root");
    let out = std::env::var_os("SLOTLOG_REPORT_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("docs"));
    let root = common::bench_dir(&repo).join("report");
    std::fs::create_dir_all(&root).expect("bench dir");
    std::fs::create_dir_all(out.join("img")).expect("img dir");
    charts::register_font().expect("font for the charts");
    let started = Instant::now();
    let cores = common::cores();
    let load_before = read_trim("/proc/loadavg");
    let levels = common::LEVELS;
    let n_points: usize = cfg.repeats * cfg.threads.len() * 20;
    eprintln!(
        "slotlog report: threads {:?}, {} repeats, {} ms points, scratch {} (~{} sweep points; expect ~{} s)",
        cfg.threads,
        cfg.repeats,
        cfg.point.as_millis(),
        root.display(),
        n_points,
        (n_points as f64 * (cfg.point.as_secs_f64() + 0.15) + 60.0) as u64
    );

    eprintln!("[calibrators]");
    let cal = calibrate(&root, &cfg.threads).expect("calibrators");
    let crc = checksum::measure();
    for (len, fast, one, crate_) in &crc {
        eprintln!("  checksum {len:>5} B: crc32fast {fast:.1} ns, CRC32C one stream {one:.1} ns, crc32c crate {crate_:.1} ns");
    }
    eprintln!(
        "  write+fdatasync 4 KiB {}, memcpy {:.1} GB/s, pwrite {:.2} GB/s ({:.2} into new pages)",
        fmt_dur(cal.sync_lat),
        cal.memcpy_bw / 1e9,
        cal.pwrite_bw / 1e9,
        cal.pwrite_new_bw / 1e9
    );

    // results[(level, system, threads)] = points over repeats
    // results[(level, system, threads)][repeat] = the point
    let mut results: BTreeMap<Key, BTreeMap<usize, Point>> = BTreeMap::new();
    // slotlog's counters per (level, threads), one entry per repeat: records per write, pool
    // waits per second, parks per append, records per fdatasync, the share of the point's wall
    // time an fdatasync ran, mean fdatasync µs (NaN without fdatasyncs).
    let mut protocol: BTreeMap<(Durability, usize), Vec<[f64; 7]>> = BTreeMap::new();
    let mut names: BTreeMap<Durability, Vec<String>> = BTreeMap::new();
    // The calibrators of the two targets that compare a point with one, measured again beside
    // that point in every repeat, just before and just after slotlog's point (the mean of the
    // two medians): write+fdatasync latency at FullSync 1 thread, pwrite bandwidth at
    // WriteOnly 2 threads. The start and end calibrators are minutes away, and the disk's
    // latency drifts by more than the margin of a target between them (80.8 µs at the start and
    // 107.1 µs at the end of the run of 2026-12-07 03:41).
    let beside_file = calibrator_file(&root, "calib-beside.dat").expect("calibrator file");
    let measure_beside = |d: Durability, t: usize| -> Option<f64> {
        match (d, t) {
            (Durability::FullSync, 1) => sync_latency(&beside_file, 300).ok().map(|x| x.0),
            (Durability::WriteOnly, 2) => pwrite_bandwidth(&beside_file).ok(),
            _ => None,
        }
    };
    // beside[level][repeat] = the mean of the two readings around slotlog's point
    let mut beside: BTreeMap<Durability, BTreeMap<usize, f64>> = BTreeMap::new();
    let mut done = 0;
    for rep in 0..cfg.repeats {
        for &d in &levels {
            let systems = open_systems(&root, d, rep);
            names.insert(d, systems.iter().map(|s| s.name()).collect());
            for &t in &cfg.threads {
                let calib_before = measure_beside(d, t);
                for s in &systems {
                    let before = s.stats();
                    let p = common::run_timed(
                        s,
                        t,
                        sweep_size(d),
                        d,
                        cfg.point,
                        cfg.point_bytes,
                        false,
                    );
                    if let (Some(a), Some(b)) = (before, s.stats()) {
                        let appends = (b.appends - a.appends).max(1) as f64;
                        let syncs = (b.fdatasyncs - a.fdatasyncs) as f64;
                        let (sync_us, sync_share) =
                            common::fdatasync_time(&a, &b, p.wall).unwrap_or((f64::NAN, f64::NAN));
                        let new_files = new_segment_files(&a, &b);
                        protocol.entry((d, t)).or_default().push([
                            appends / (b.writes - a.writes).max(1) as f64,
                            (b.pool_waits - a.pool_waits) as f64 / p.wall,
                            (b.parks - a.parks) as f64 / appends,
                            if syncs > 0.0 {
                                appends / syncs
                            } else {
                                f64::NAN
                            },
                            sync_share,
                            sync_us,
                            new_files as f64,
                        ]);
                        eprintln!(
                            "  slotlog segments: {} reused, {} new",
                            b.segments_recycled - a.segments_recycled,
                            new_files
                        );
                    }
                    s.reset();
                    // Not timed: the next point must not pay for this one's writeback.
                    let _ = common::sync_file_system(&root);
                    done += 1;
                    eprintln!(
                        "[{done}/{n_points} {:>4.0}s] rep {rep} {:<9} {:>5} B {:>3} thr {:<20} {:>9}/s  cpu {:.2} s/M",
                        started.elapsed().as_secs_f64(),
                        level_name(d),
                        sweep_size(d),
                        t,
                        s.name(),
                        fmt_rate(p.rate()),
                        p.cpu_per_million()
                    );
                    // The second calibrator reading right after slotlog's point, so that the two
                    // readings bracket it (slotlog runs first).
                    if s.name() == "slotlog" {
                        if let (Some(a), Some(b)) = (calib_before, measure_beside(d, t)) {
                            eprintln!("  calibrator beside slotlog's point: {a:.3e} then {b:.3e}");
                            beside.entry(d).or_default().insert(rep, (a + b) / 2.0);
                        }
                    }
                    results.entry((d, s.name(), t)).or_default().insert(rep, p);
                }
            }
            drop(systems);
            let _ = std::fs::remove_dir_all(root.join(format!("slotlog-{}-{rep}", level_name(d))));
            let _ = std::fs::remove_dir_all(root.join(format!("peers-{}", level_name(d))));
        }
    }
    // One measure of a point, by repeat (empty if the point was not run).
    let per_repeat =
        |d: Durability, name: &str, t: usize, f: fn(&Point) -> f64| -> BTreeMap<usize, f64> {
            results
                .get(&(d, name.to_string(), t))
                .map(|ps| ps.iter().map(|(&rep, p)| (rep, f(p))).collect())
                .unwrap_or_default()
        };
    let med = |d: Durability, name: &str, t: usize| -> f64 {
        median(
            &mut per_repeat(d, name, t, Point::rate)
                .into_values()
                .collect::<Vec<_>>(),
        )
    };
    let med_cpu = |d: Durability, name: &str, t: usize| -> f64 {
        median(
            &mut per_repeat(d, name, t, Point::cpu_per_million)
                .into_values()
                .collect::<Vec<_>>(),
        )
    };
    // The range over repeats of a ratio of two points, each repeat's pair measured back to back
    // (same repeat, same level): how far one repeat's reading of a target can swing.
    let spread = |d: Durability, (a, ta): (&str, usize), (b, tb): (&str, usize)| -> String {
        let ratios = paired_ratios(
            &per_repeat(d, a, ta, Point::rate),
            &per_repeat(d, b, tb, Point::rate),
            |x, y| x / y,
        );
        match ratio_stats(ratios) {
            Some((_, lo, hi, n)) if n >= 2 => format!(" (repeats {lo:.2}–{hi:.2}×)"),
            _ => String::new(),
        }
    };

    // ----- latency percentiles ------------------------------------------------------------
    eprintln!("[latency] 2 and 64 threads per level");
    let lat_threads = [2usize, 64];
    let mut lat: BTreeMap<Key, (f64, f64, f64, u64)> = BTreeMap::new();
    for &d in &levels {
        let systems = open_systems(&root, d, 99);
        for &t in &lat_threads {
            for s in &systems {
                let p = common::run_timed(s, t, sweep_size(d), d, cfg.point, cfg.point_bytes, true);
                s.reset();
                let _ = common::sync_file_system(&root);
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
                for &ns in &p.lat_ns {
                    let _ = h.record(ns.max(1));
                }
                let q = |x: f64| h.value_at_quantile(x) as f64 * 1e-9;
                let row = (q(0.5), q(0.99), q(0.999), h.len());
                eprintln!(
                    "  {:<9} {:>3} thr {:<20} p50 {} p99 {} p99.9 {} ({} samples)",
                    level_name(d),
                    t,
                    s.name(),
                    fmt_dur(row.0),
                    fmt_dur(row.1),
                    fmt_dur(row.2),
                    row.3
                );
                lat.insert((d, s.name(), t), row);
            }
        }
        drop(systems);
        let _ = std::fs::remove_dir_all(root.join(format!("slotlog-{}-99", level_name(d))));
        let _ = std::fs::remove_dir_all(root.join(format!("peers-{}", level_name(d))));
    }

    // ----- CPU while waiting ---------------------------------------------------------------
    eprintln!("[cpu] slotlog FullSync 512 B at 1 and 64 threads with fdatasync counts");
    let cpu_run = |t: usize, d: Durability| {
        let dir = root.join("slotlog-cpu");
        let s = Arc::new(common::Slotlog::open(&dir, Durability::FullSync).expect("slotlog"));
        let before = s.log.stats();
        let w: Arc<dyn Wal> = s.clone();
        let p = common::run_timed(
            &w,
            t,
            512,
            d,
            cfg.point.max(Duration::from_millis(500)),
            cfg.point_bytes,
            false,
        );
        let after = s.log.stats();
        drop(w);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
        (
            p,
            after.fdatasyncs - before.fdatasyncs,
            after.parks - before.parks,
        )
    };
    let (copy_pt, _, _) = cpu_run(1, Durability::NoSync);
    let per_append_work = copy_pt.cpu / copy_pt.appends.max(1) as f64;
    let (p64, syncs64, parks64) = cpu_run(64, Durability::FullSync);
    let work64 = p64.appends as f64 * per_append_work + syncs64 as f64 * cal.sync_cpu;
    let cpu_excess = (p64.cpu - work64) / p64.wall;
    // The same load from tokio tasks instead of threads (`muop_async::sustained`).
    let task_runs: Vec<(usize, Point, u64, u64, f64)> = [64usize, 1000]
        .iter()
        .map(|&n| {
            let dir = root.join("slotlog-cpu-tasks");
            let s = Arc::new(common::Slotlog::open(&dir, Durability::FullSync).expect("slotlog"));
            let before = s.log.stats();
            let p = muop_async::sustained(
                &s.log,
                n,
                512,
                cfg.point.max(Duration::from_millis(500)),
            );
            let after = s.log.stats();
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
            let _ = common::sync_file_system(&root);
            let syncs = after.fdatasyncs - before.fdatasyncs;
            let work = p.appends as f64 * per_append_work + syncs as f64 * cal.sync_cpu;
            let excess = (p.cpu - work) / p.wall;
            eprintln!(
                "  {n} tokio tasks: {}/s, {syncs} fdatasyncs, {} parks, {:.3} CPU-s/s, excess {excess:.3}",
                fmt_rate(p.rate()),
                after.parks - before.parks,
                p.cpu / p.wall
            );
            (n, p, syncs, after.parks - before.parks, excess)
        })
        .collect();
    eprintln!(
        "  64 thr: {} appends, {} fdatasyncs, {} parks, {:.3} CPU-s in {:.3} s wall; work estimate {:.3} CPU-s; excess {:.3} CPU-s/s",
        p64.appends, syncs64, parks64, p64.cpu, p64.wall, work64, cpu_excess
    );

    // ----- MuopDB scenario -----------------------------------------------------------------
    eprintln!("[muopdb] 1000 threads x one 561 B FullSync append");
    let muop_reps = cfg.repeats.max(3);
    let mut muop_slot = Vec::new();
    let mut muop_b4 = Vec::new();
    let mut muop_floor = Vec::new();
    let mut muop_null = Vec::new();
    let (mut muop_task_slot, mut muop_task_b4, mut muop_task_null) =
        (Vec::new(), Vec::new(), Vec::new());
    let floor_file =
        common::PreFile::create(&root.join("floor.dat"), 64 << 20, 1 << 20).expect("floor file");
    let floor_buf = common::record_bytes(561_000, 5);
    for r in 0..muop_reps {
        let dir = root.join("slotlog-muop");
        let sl = Arc::new(common::Slotlog::open(&dir, Durability::FullSync).expect("slotlog"));
        let s: Arc<dyn Wal> = sl.clone();
        muop_slot.push(common::run_count(&s, 1000, 561, Durability::FullSync, 1000).as_secs_f64());
        let st = sl.log.stats();
        eprintln!(
            "  slotlog stats: fdatasyncs {} writes {} slots_closed {} parks {} cas_retries {} pool_waits {}",
            st.fdatasyncs, st.writes, st.slots_closed, st.parks, st.cas_retries, st.pool_waits
        );
        drop(s);
        drop(sl);
        let _ = std::fs::remove_dir_all(&dir);
        let b4: Arc<dyn Wal> =
            Arc::new(common::WriteGroups::open(&root.join("baselines/b4.dat")).expect("b4"));
        muop_b4.push(common::run_count(&b4, 1000, 561, Durability::FullSync, 1000).as_secs_f64());
        drop(b4);
        let null: Arc<dyn Wal> = Arc::new(common::NullWal);
        muop_null
            .push(common::run_count(&null, 1000, 561, Durability::FullSync, 1000).as_secs_f64());
        let t0 = Instant::now();
        floor_file
            .write_at((r as u64 % 8) * 1_000_000, &[&floor_buf])
            .expect("floor write");
        floor_file.sync().expect("floor sync");
        muop_floor.push(t0.elapsed().as_secs_f64());
        eprintln!(
            "  rep {r}: slotlog {} b4 {} floor {}",
            fmt_dur(*muop_slot.last().unwrap()),
            fmt_dur(*muop_b4.last().unwrap()),
            fmt_dur(*muop_floor.last().unwrap())
        );
        // The same scenario with 1,000 tokio tasks (`muop_async.rs`).
        let sl = Arc::new(common::Slotlog::open(&dir, Durability::FullSync).expect("slotlog"));
        muop_task_slot.push(muop_async::slotlog(&sl.log).as_secs_f64());
        let st = sl.log.stats();
        drop(sl);
        let _ = std::fs::remove_dir_all(&dir);
        let b4: Arc<dyn Wal> =
            Arc::new(common::WriteGroups::open(&root.join("baselines/b4.dat")).expect("b4"));
        muop_task_b4.push(muop_async::blocking(&b4).as_secs_f64());
        drop(b4);
        muop_task_null.push(muop_async::harness().as_secs_f64());
        eprintln!(
            "  rep {r}, tokio tasks: slotlog {} ({} fdatasyncs, {} parks) b4 via spawn_blocking {} harness {}",
            fmt_dur(*muop_task_slot.last().unwrap()),
            st.fdatasyncs,
            st.parks,
            fmt_dur(*muop_task_b4.last().unwrap()),
            fmt_dur(*muop_task_null.last().unwrap())
        );
    }
    let (m_slot, m_b4, m_floor, m_null) = (
        median(&mut muop_slot),
        median(&mut muop_b4),
        median(&mut muop_floor),
        median(&mut muop_null),
    );
    let (mt_slot, mt_b4, mt_null) = (
        median(&mut muop_task_slot),
        median(&mut muop_task_b4),
        median(&mut muop_task_null),
    );
    // The scenario's time net of the harness (thread release and join), floored at the floor.
    let net = |t: f64| (t - m_null).max(m_floor);
    // The fdatasync and pwrite calibrators again at the end: the tables and the FullSync scaling
    // target use the faster of the two medians (the stricter bar), the document shows both; the
    // FullSync 1-thread and WriteOnly targets use the calibrators measured beside their points. (One start-of-run pwrite median
    // read 1.07 GB/s where the others read 3.4-4.7, which turned the WriteOnly bar into 274%.)
    let cal_end = io_calibrators(&root).expect("calibrators");
    let sync_lat_start = cal.sync_lat;
    let pwrite_start = (cal.pwrite_bw, cal.pwrite_new_bw);
    let cal = Calib {
        sync_lat: cal.sync_lat.min(cal_end.sync_lat),
        pwrite_bw: cal.pwrite_bw.max(cal_end.pwrite_bw),
        pwrite_new_bw: cal.pwrite_new_bw.max(cal_end.pwrite_new_bw),
        ..cal
    };
    let load_after = read_trim("/proc/loadavg");
    let elapsed = started.elapsed().as_secs_f64();

    // ----- charts --------------------------------------------------------------------------
    eprintln!("[charts] {}", out.join("img").display());
    let tmin = *cfg.threads.iter().min().unwrap() as f64;
    let tmax = *cfg.threads.iter().max().unwrap() as f64;
    let xr = (tmin.log2() - 0.2, tmax.log2() + 0.2);
    let ticks = (tmax.log2() - tmin.log2()) as usize + 1;
    let mut images = BTreeMap::new();
    for &d in &levels {
        let series: Vec<charts::Series> = names[&d]
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    cfg.threads
                        .iter()
                        .map(|&t| ((t as f64).log2(), med(d, n, t)))
                        .collect(),
                )
            })
            .collect();
        let file = format!("throughput-{}.png", level_name(d).to_lowercase());
        let title = format!(
            "{} appends/s, {} B records (median of {})",
            level_name(d),
            sweep_size(d),
            cfg.repeats
        );
        charts::line_chart(
            &out.join("img").join(&file),
            &title,
            "threads (log2; > cores is oversubscribed)",
            "appends per second (log)",
            xr,
            ticks,
            &|x| format!("{}", 2f64.powf(x).round()),
            &charts::human,
            &series,
        )
        .expect("chart");
        images.insert(d, file);
        let latr = &lat;
        let lseries: Vec<charts::Series> = names[&d]
            .iter()
            .flat_map(|n| {
                lat_threads.iter().filter_map(move |&t| {
                    latr.get(&(d, n.clone(), t)).map(|r| {
                        (
                            format!("{n} @{t}"),
                            vec![(0.0, r.0), (1.0, r.1), (2.0, r.2)],
                        )
                    })
                })
            })
            .collect();
        let lfile = format!("latency-{}.png", level_name(d).to_lowercase());
        charts::line_chart(
            &out.join("img").join(&lfile),
            &format!(
                "{} append latency, {} B records, 2 and 64 threads",
                level_name(d),
                sweep_size(d)
            ),
            "percentile",
            "seconds (log)",
            (-0.2, 2.2),
            3,
            &|x| {
                ["p50", "p99", "p99.9"]
                    .get(x.round() as usize)
                    .unwrap_or(&"")
                    .to_string()
            },
            &|y| fmt_dur(y),
            &lseries,
        )
        .expect("chart");
    }

    // ----- targets -------------------------------------------------------------------------
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    let fs = Durability::FullSync;
    let mut tgt = |name: String, measured: String, ok: bool| targets.push((name, measured, ok));
    let t32 = if cfg.threads.contains(&32) {
        32
    } else {
        *cfg.threads.iter().filter(|&&t| t <= 32).max().unwrap_or(&1)
    };
    let s32 = med(fs, "slotlog", t32);
    let b1 = med(fs, "b1 sync-on-write", t32);
    tgt(
        format!("FullSync 512 B, {t32} thr: ≥ 10× sync-on-write"),
        format!(
            "{:.1}×{}",
            s32 / b1,
            spread(fs, ("slotlog", t32), ("b1 sync-on-write", t32))
        ),
        s32 >= 10.0 * b1,
    );
    let best_peer = ["raft-engine", "okaywal", "wal-db"]
        .iter()
        .map(|p| (p, med(fs, p, t32)))
        .filter(|x| !x.1.is_nan())
        .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    if let Some((p, v)) = best_peer {
        tgt(
            format!("FullSync 512 B, {t32} thr: ≥ 2× best peer ({p})"),
            format!("{:.2}×{}", s32 / v, spread(fs, ("slotlog", t32), (p, t32))),
            s32 >= 2.0 * v,
        );
    }
    let cap1 = 1.0 / cal.sync_lat;
    // slotlog's point against the calibrator measured beside it, repeat by repeat: the median
    // ratio and its range. `ratio(rate, calibrator)` of one repeat.
    let against_beside = |d: Durability, t: usize, ratio: fn(f64, f64) -> f64| {
        ratio_stats(paired_ratios(
            &per_repeat(d, "slotlog", t, Point::rate),
            beside.get(&d)?,
            ratio,
        ))
    };
    if cfg.threads.contains(&1) {
        let s1 = med(fs, "slotlog", 1);
        let name = "FullSync 1 thr: ≥ 0.9 × 1/(write+fdatasync measured beside it)".to_string();
        let against_ends = format!("{:.2}× against the start/end calibrator", s1 / cap1);
        match against_beside(fs, 1, |rate, lat| rate * lat) {
            Some((r, lo, hi, _)) => tgt(
                name,
                format!("{r:.2}× (repeats {lo:.2}–{hi:.2}×); {against_ends}"),
                r >= 0.9,
            ),
            None => tgt(
                name,
                format!("not measured beside it; {against_ends}"),
                false,
            ),
        }
    }
    let worst = cfg
        .threads
        .iter()
        .filter(|&&t| t <= 64)
        .map(|&t| (t, med(fs, "slotlog", t) / (t as f64 * cap1)))
        .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    if let Some((t, r)) = worst {
        tgt(
            "FullSync T ≤ 64 thr: ≥ 0.5 × T/(write+fdatasync)".into(),
            format!("worst {r:.2}× at {t} thr"),
            r >= 0.5,
        );
    }
    let ns = Durability::NoSync;
    if cfg.threads.contains(&2) {
        let s2 = med(ns, "slotlog", 2);
        let b2 = med(ns, "b2 mutex buffer", 2);
        tgt(
            "NoSync 128 B, 2 thr: ≥ mutex buffer".into(),
            format!(
                "{:.2}×{}",
                s2 / b2,
                spread(ns, ("slotlog", 2), ("b2 mutex buffer", 2))
            ),
            s2 >= b2,
        );
        tgt(
            "NoSync 128 B, 2 thr: ≥ 20 M appends/s".into(),
            format!("{}/s", fmt_rate(s2)),
            s2 >= 20e6,
        );
        if cfg.threads.contains(&64) {
            let s64 = med(ns, "slotlog", 64);
            let b64 = med(ns, "b2 mutex buffer", 64);
            tgt(
                "NoSync 128 B, 64 thr: ≥ 1.5× mutex buffer".into(),
                format!(
                    "{:.2}×{}",
                    s64 / b64,
                    spread(ns, ("slotlog", 64), ("b2 mutex buffer", 64))
                ),
                s64 >= 1.5 * b64,
            );
            tgt(
                "NoSync 128 B, 64 thr: ≥ 0.8× slotlog at 2 thr".into(),
                format!(
                    "{:.2}×{}",
                    s64 / s2,
                    spread(ns, ("slotlog", 64), ("slotlog", 2))
                ),
                s64 >= 0.8 * s2,
            );
        }
        let w2 = med(Durability::WriteOnly, "slotlog", 2) * 4096.0;
        let name =
            "WriteOnly 4 KiB, 2 thr: ≥ 70% of page-cache pwrite measured beside it".to_string();
        let against_ends = format!(
            "{:.2} GB/s; {:.0}% of the start/end calibrator, {:.0}% of pwrite into new pages",
            w2 / 1e9,
            100.0 * w2 / cal.pwrite_bw,
            100.0 * w2 / cal.pwrite_new_bw
        );
        match against_beside(Durability::WriteOnly, 2, |rate, bw| rate * 4096.0 / bw) {
            Some((r, lo, hi, _)) => tgt(
                name,
                format!(
                    "{:.0}% (repeats {:.0}–{:.0}%); {against_ends}",
                    100.0 * r,
                    100.0 * lo,
                    100.0 * hi
                ),
                r >= 0.7,
            ),
            None => tgt(
                name,
                format!("not measured beside it; {against_ends}"),
                false,
            ),
        }
    }
    tgt(
        "MuopDB: ≤ 3× floor".into(),
        format!(
            "{:.2}× raw; {:.2}× net of the harness ({}); with tokio tasks instead of threads (not the target's setup): {:.2}×",
            m_slot / m_floor,
            net(m_slot) / m_floor,
            fmt_dur(m_null),
            mt_slot / m_floor
        ),
        m_slot <= 3.0 * m_floor,
    );
    tgt(
        "MuopDB: ≥ 5× faster than write groups (b4)".into(),
        format!(
            "{:.2}× raw; {:.2}× net of the harness; with tokio tasks (b4 through `spawn_blocking`): {:.2}×",
            m_b4 / m_slot,
            net(m_b4) / net(m_slot),
            mt_b4 / mt_slot
        ),
        m_b4 >= 5.0 * m_slot,
    );
    tgt(
        "FullSync 64 thr: ≤ 0.1 CPU-s per wall-s beyond the work".into(),
        format!("{cpu_excess:.3}"),
        cpu_excess <= 0.1,
    );

    // ----- the document --------------------------------------------------------------------
    let mut md = String::new();
    let w = &mut md;
    let now = cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let loaded = load_before
        .split(' ')
        .next()
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or(0.0)
        > 0.5 * cores as f64;
    let _ = writeln!(w, "# Performance\n");
    let _ = writeln!(
        w,
        "Generated by `{CMD}` (the runner is `benches/peers/src/main.rs`) on {now} in {elapsed:.0} s: \
threads {:?}, {} repeat(s) per point ({}), {} ms per point, at most {} MiB per point. Every number is the \
**median** over the repeats, and every ratio compares systems measured side by side in this one run. \
Re-running the command regenerates this file and the charts; `SLOTLOG_REPORT_FULL=1 {CMD}` runs the full sweep \
(threads 1–128, 5 repeats, 1 s points).\n",
        cfg.threads,
        cfg.repeats,
        if cfg.full { "full sweep" } else { "short sweep" },
        cfg.point.as_millis(),
        cfg.point_bytes >> 20
    );
    if loaded {
        let _ = writeln!(
            w,
            "> **These figures were taken while the machine was loaded** (load average {load_before} before, \
{load_after} after, on {cores} cores: other builds were running). Treat them as noisy; the ratios are still \
side by side.\n"
        );
    }
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| CPU | {cpu_model}, {cores} cores |");
    let mem = read_trim("/proc/meminfo");
    let _ = writeln!(
        w,
        "| memory | {} |",
        mem.lines()
            .next()
            .unwrap_or("?")
            .replace("MemTotal:", "")
            .trim()
    );
    let _ = writeln!(
        w,
        "| kernel | {} |",
        read_trim("/proc/sys/kernel/osrelease")
    );
    let _ = writeln!(
        w,
        "| scratch directory | `{}` ({}) |",
        root.display(),
        file_system(&root)
    );
    let _ = writeln!(
        w,
        "| load average before / after | {load_before} / {load_after} |"
    );
    let _ = writeln!(w, "| rustc | {} |\n", cmd_out("rustc", &["--version"]));

    let _ = writeln!(
        w,
        "## Calibrators\n\nMeasured in the same run (command: `{CMD}`).\n"
    );
    let _ = writeln!(w, "| calibrator | value |\n|---|---|");
    let _ = writeln!(w, "| write + fdatasync of 4 KiB on a pre-written file (median latency) | {} (→ {}/s from one thread) |", fmt_dur(cal.sync_lat), fmt_rate(cap1));
    let _ = writeln!(
        w,
        "| write + fdatasync median at the start / at the end (the row above and the FullSync scaling target use the faster) | {} / {} |",
        fmt_dur(sync_lat_start),
        fmt_dur(cal_end.sync_lat)
    );
    let per_repeat_list = |d: Durability, show: &dyn Fn(f64) -> String| -> String {
        let v: Vec<String> = beside
            .get(&d)
            .into_iter()
            .flat_map(|by_rep| by_rep.values().map(|&x| show(x)))
            .collect();
        if v.is_empty() {
            "(not run)".into()
        } else {
            v.join(" / ")
        }
    };
    let _ = writeln!(
        w,
        "| write + fdatasync beside the FullSync 1-thread point, per repeat (its target uses these) | {} |",
        per_repeat_list(fs, &fmt_dur)
    );
    let (grow, sparse, falloc) = cal.sync_lat_by_state;
    let _ = writeln!(
        w,
        "| write + fdatasync of 4 KiB when the write grows the file / fills a sparse hole / lands on `fallocate`d extents (median; why slotlog zero-fills or reuses segments) | {} / {} / {} ({:.2}× / {:.2}× / {:.2}× the pre-written file) |",
        fmt_dur(grow),
        fmt_dur(sparse),
        fmt_dur(falloc),
        grow / cal.sync_lat,
        sparse / cal.sync_lat,
        falloc / cal.sync_lat
    );
    let _ = writeln!(
        w,
        "| CPU time of one write + fdatasync | {} |",
        fmt_dur(cal.sync_cpu)
    );
    let _ = writeln!(
        w,
        "| memcpy bandwidth, one thread | {:.2} GB/s |",
        cal.memcpy_bw / 1e9
    );
    let _ = writeln!(
        w,
        "| page-cache pwrite bandwidth, 4 KiB writes, one thread | {:.2} GB/s |",
        cal.pwrite_bw / 1e9
    );
    let _ = writeln!(
        w,
        "| the same into new pages (a new sparse file) | {:.2} GB/s |",
        cal.pwrite_new_bw / 1e9
    );
    let _ = writeln!(
        w,
        "| pwrite medians at the start / at the end, pre-written file and new pages (the rows above use the faster) | {:.2} / {:.2} GB/s, {:.2} / {:.2} GB/s |",
        pwrite_start.0 / 1e9,
        cal_end.pwrite_bw / 1e9,
        pwrite_start.1 / 1e9,
        cal_end.pwrite_new_bw / 1e9
    );
    let _ = writeln!(
        w,
        "| pwrite beside the WriteOnly 2-thread point, per repeat (its target uses these) | {} |",
        per_repeat_list(Durability::WriteOnly, &|bw| format!("{:.2} GB/s", bw / 1e9))
    );
    for (t, v) in &cal.fetch_add {
        let _ = writeln!(
            w,
            "| contended `fetch_add` on one word, {t} thr | {}/s |",
            fmt_rate(*v)
        );
    }
    let _ = writeln!(
        w,
        "| CPU per parked thread woken, 64 thr: one futex wake for all / one each | {} / {} |",
        fmt_dur(cal.wake_cpu.0),
        fmt_dur(cal.wake_cpu.1)
    );
    let rates: Vec<String> = cal
        .concurrent_syncs
        .iter()
        .map(|(t, r)| format!("{t} thr {}/s", fmt_rate(*r)))
        .collect();
    let _ = writeln!(
        w,
        "| write + fdatasync of 4 KiB from threads at once, one file, fdatasyncs per second in total | {} |",
        rates.join(", ")
    );
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "## Checksum\n\nCommand: `{CMD}` (`benches/peers/src/checksum.rs`). CPU per record of the frame checksum (continue from the log's seed over the 12 header bytes, then the record; best of 3 loops): crc32fast (CRC-32/IEEE) against hardware CRC32C — one chain of SSE4.2 `crc32` instructions, and the `crc32c` crate (three interleaved chains). slotlog checksums records of at most 256 B with the one-stream CRC32C where the CPU has the instruction and everything else with crc32fast (`docs/format.md`, \"Checksum kinds\"); the table shows where the two cross.\n"
    );
    let _ = writeln!(
        w,
        "| record | crc32fast | CRC32C, one stream | `crc32c` crate |\n|---:|---:|---:|---:|"
    );
    for (len, fast, one, crate_) in crc {
        let _ = writeln!(
            w,
            "| {len} B | {fast:.1} ns | {one:.1} ns | {crate_:.1} ns |"
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "## Targets\n\nFrom this run (command: `{CMD}`). Nothing is adjusted after the fact. A target compares medians over the repeats; \"repeats a–b×\" is the range of the same ratio taken repeat by repeat (both points of a repeat run back to back), so a target whose range spans its bar is a coin toss on this machine. Why a target is missed and what would close it: [performance-analysis.md](performance-analysis.md), written by hand for the committed run.\n"
    );
    let _ = writeln!(w, "| target | measured | |\n|---|---|---|");
    for (n, m, ok) in &targets {
        let _ = writeln!(
            w,
            "| {n} | {m} | {} |",
            if *ok { "met" } else { "**missed**" }
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Throughput\n");
    let _ = writeln!(
        w,
        "Appends per second across all threads (threads are spawned before the clock and released together from a start gate). \
Thread counts above {cores} (the core count) are oversubscribed (marked *). `cpu` is CPU seconds (getrusage, \
whole process: user + system) per million appends. \"–\": the system has no such level.\n"
    );
    for &d in &levels {
        let _ = writeln!(w, "### {} — {} B records\n", level_name(d), sweep_size(d));
        let _ = writeln!(w, "![{} throughput](img/{})\n", level_name(d), images[&d]);
        let _ = writeln!(
            w,
            "Command: `{CMD}` (chart `docs/img/{}` and this table).\n",
            images[&d]
        );
        let mut hdr = "| system |".to_string();
        let mut sep = "|---|".to_string();
        for &t in &cfg.threads {
            let _ = write!(hdr, " {t}{} |", if t > cores { "*" } else { "" });
            sep.push_str("---:|");
        }
        let _ = writeln!(w, "{hdr} cpu s/M @2 | cpu s/M @max |\n{sep}---:|---:|");
        let tlast = *cfg.threads.last().unwrap();
        for n in &names[&d] {
            let mut row = format!("| {n} |");
            for &t in &cfg.threads {
                let _ = write!(row, " {} |", fmt_rate(med(d, n, t)));
            }
            let _ = writeln!(
                w,
                "{row} {:.2} | {:.2} |",
                med_cpu(d, n, 2),
                med_cpu(d, n, tlast)
            );
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(
        w,
        "### slotlog's protocol counters\n\nFrom `Log::stats` around each slotlog point above \
         (median over the repeats): records per `pwrite` (how much a slot write batches), pool \
         waits per second (a rotation that found the next pool entry still being written; every \
         appender waits for it), parks per append, and for FullSync records per fdatasync, the \
         share of the point's time an fdatasync was running (`Stats::fdatasync_nanos`; one runs \
         at a time, so 100% would keep the device syncing without a gap) and the mean fdatasync, \
         and the segment files the point made new rather than reusing one (sparse or \
         zero-filled; its appends then write into new page-cache pages, which cost several times \
         a rewrite on this VM). Same command.\n"
    );
    let _ = writeln!(
        w,
        "| level | threads | records per write | pool waits/s | parks per append | records per fdatasync | fdatasync running | mean fdatasync | new segment files (max) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for ((d, t), v) in &protocol {
        let col = |i: usize| {
            let mut xs: Vec<f64> = v.iter().map(|x| x[i]).filter(|x| !x.is_nan()).collect();
            (!xs.is_empty()).then(|| median(&mut xs))
        };
        let show = |i: usize, f: &dyn Fn(f64) -> String| col(i).map_or("–".into(), f);
        let _ = writeln!(
            w,
            "| {} | {t} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            level_name(*d),
            show(0, &|x| format!("{x:.1}")),
            show(1, &|x| format!("{x:.0}")),
            show(2, &|x| format!("{x:.3}")),
            show(3, &|x| format!("{x:.1}")),
            show(4, &|x| format!("{:.0}%", x * 100.0)),
            show(5, &|x| format!("{x:.0} µs")),
            show(6, &|x| format!("{x:.0}")),
            v.iter().map(|x| x[6] as u64).max().unwrap_or(0),
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Latency\n");
    let _ = writeln!(w, "Per-append latency (hdrhistogram, every append timed) at 2 and 64 threads, same record sizes. Command: `{CMD}`.\n");
    for &d in &levels {
        let lfile = format!("latency-{}.png", level_name(d).to_lowercase());
        let _ = writeln!(w, "### {}\n\n![{} latency](img/{lfile})\n\nCommand: `{CMD}` (chart `docs/img/{lfile}` and this table).\n", level_name(d), level_name(d));
        let _ = writeln!(
            w,
            "| system | threads | p50 | p99 | p99.9 | samples |\n|---|---:|---:|---:|---:|---:|"
        );
        for n in &names[&d] {
            for &t in &lat_threads {
                if let Some(r) = lat.get(&(d, n.clone(), t)) {
                    let _ = writeln!(
                        w,
                        "| {n} | {t} | {} | {} | {} | {} |",
                        fmt_dur(r.0),
                        fmt_dur(r.1),
                        fmt_dur(r.2),
                        r.3
                    );
                }
            }
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "## CPU while waiting\n\nCommand: `{CMD}`. slotlog, FullSync, 512 B, 64 threads, one point of {} ms:\n", cfg.point.max(Duration::from_millis(500)).as_millis());
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(
        w,
        "| appends / wall time | {} / {:.3} s ({}/s) |",
        p64.appends,
        p64.wall,
        fmt_rate(p64.rate())
    );
    let _ = writeln!(
        w,
        "| fdatasyncs / parks (`Log::stats`) | {syncs64} / {parks64} |"
    );
    let _ = writeln!(
        w,
        "| CPU seconds used (whole process) | {:.3} ({:.3} CPU-s per wall-s) |",
        p64.cpu,
        p64.cpu / p64.wall
    );
    let _ = writeln!(
        w,
        "| the work: appends × CPU per NoSync append at 1 thread ({}) + fdatasyncs × CPU per write+fdatasync ({}) | {:.3} CPU-s |",
        fmt_dur(per_append_work),
        fmt_dur(cal.sync_cpu),
        work64
    );
    let _ = writeln!(
        w,
        "| beyond the work, per wall second | **{cpu_excess:.3} CPU-s/s** |\n"
    );
    let _ = writeln!(w, "### Threads or tasks\n\nThe same FullSync 512 B load from tokio tasks on a 2-worker runtime, each looping on `Log::append_async` (`benches/peers/src/muop_async.rs`, `sustained`), against the 64-thread point above; same command, same \"work\" estimate. A waiting task holds no thread: the driver thread runs the fdatasyncs and calls the wakers, so the parks are the driver's and the workers' own, not one per append.\n");
    let _ = writeln!(w, "| waiters | appends/s | CPU-µs per append | fdatasyncs | records per fdatasync | parks | beyond the work |\n|---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        w,
        "| 64 threads, `append` | {} | {:.1} | {syncs64} | {:.1} | {parks64} | {cpu_excess:.3} CPU-s/s |",
        fmt_rate(p64.rate()),
        p64.cpu / p64.appends.max(1) as f64 * 1e6,
        p64.appends as f64 / syncs64.max(1) as f64
    );
    for (n, p, syncs, parks, excess) in &task_runs {
        let _ = writeln!(
            w,
            "| {n} tasks, `append_async` | {} | {:.1} | {syncs} | {:.1} | {parks} | {excess:.3} CPU-s/s |",
            fmt_rate(p.rate()),
            p.cpu / p.appends.max(1) as f64 * 1e6,
            p.appends as f64 / (*syncs).max(1) as f64
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## The MuopDB scenario\n\nCommand: `{CMD}`. 1,000 threads released together from a start gate each append one 561-byte record with FullSync; time from the release until the last append returned (threads spawned before). Floor: one write of 561,000 bytes + one fdatasync on a pre-written file. \"Harness only\" runs the same driver with an append that does nothing: on 2 cores, waking 1,000 parked threads and joining them costs about as much as everything else, so the targets are shown both raw and net of it (time − harness, at least the floor). Median of {muop_reps}.\n");
    floor_table(
        w,
        m_floor,
        &[
            (
                "harness only: the same 1,000 threads released and joined, append a no-op".into(),
                m_null,
            ),
            ("slotlog".into(), m_slot),
            (
                format!(
                    "b4 write groups (max {} records, {} µs timeout)",
                    common::GROUP_MAX,
                    common::GROUP_TIMEOUT.as_micros()
                ),
                m_b4,
            ),
        ],
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "### With tokio tasks

The same scenario as MuopDB runs it (`benches/peers/src/muop_async.rs`, same command): 1,000 tokio tasks on a runtime with 2 worker threads each append one 561-byte FullSync record; timed from the first spawn until the last task finished. slotlog awaits `Log::append_async` (a waiting task holds no thread: one driver thread runs the fdatasyncs and calls the wakers). b4 is called as a tokio service calls a blocking WAL, through `spawn_blocking` (tokio's pool of up to 512 threads). Median of {muop_reps}.\n");
    floor_table(
        w,
        m_floor,
        &[
            (
                "harness only: 1,000 tasks spawned and joined around a no-op".into(),
                mt_null,
            ),
            ("slotlog, `append_async`".into(), mt_slot),
            ("b4 write groups through `spawn_blocking`".into(), mt_b4),
        ],
    );
    let _ = writeln!(w, "| b4 / slotlog | {:.2}× | |\n", mt_b4 / mt_slot);

    w.push_str(STATIC_TEXT);
    std::fs::write(out.join("performance.md"), md).expect("write performance.md");
    eprintln!(
        "wrote {} and {} charts in {:.0} s",
        out.join("performance.md").display(),
        6,
        started.elapsed().as_secs_f64()
    );
    for (n, m, ok) in &targets {
        eprintln!("  {:<8} {n}: {m}", if *ok { "met" } else { "MISSED" });
    }
}

/// A MuopDB table: time and multiple of the floor, the floor first.
fn floor_table(w: &mut String, floor: f64, rows: &[(String, f64)]) {
    let _ = writeln!(w, "| | time | × floor |\n|---|---:|---:|");
    let _ = writeln!(w, "| floor | {} | 1.00 |", fmt_dur(floor));
    for (label, t) in rows {
        let _ = writeln!(w, "| {label} | {} | {:.2} |", fmt_dur(*t), t / floor);
    }
}

const STATIC_TEXT: &str = r#"## What is measured

**slotlog**: `Log::open(dir, Options::default().segment_size(64 << 20).recycle_segments(4))` — the defaults
(1 MiB slots, pool of 4, 10 ms flusher), not tuned per point. One log per level and repeat, reused across the
thread counts; between points `sync()` + `truncate_front(end)` recycles the segments. While a point runs, a
checkpointer thread (as in an engine that checkpoints) calls `truncate_front` whenever the log holds more than
256 MiB, so slotlog keeps the same footprint as the baselines' 256 MiB wrap-around files and, like them,
rewrites page-cache pages it wrote before. Without it slotlog grew into new pages all run long, and on this VM
a write into a new page-cache page costs several times a rewrite of a cached one (compare the two pwrite
calibrators): NoSync 128 B at 2 threads measured 4.3–6.4 M/s without the checkpointer against 9.5–13.5 M/s with
it, WriteOnly 4 KiB 215–243k/s against 322–361k/s (`examples/load`, alternating builds). For the same reason
each slotlog log is warmed up after `open`, like the baselines' files, which are zero-filled and synced before
their first point: 320 MiB of 4 KiB records at the level of the points that follow (the checkpointer recycles
along the way), `truncate_front` to the end, `syncfs`; so the first point of a level also rewrites cached,
allocated pages (WriteOnly 4 KiB at 2 threads, first 500 ms after open: 267k/s cold, 462k/s warm). The level
matters because the page cache sizes a folio by the write that creates it, and small writes into large folios
cost up to twice as much ([Folio size](performance-analysis.md#folio-size)); for the same reason each baseline's
file is made anew in every run, in writes the size of its own (16 KiB for the per-append and per-group systems
and the calibrators, the buffer's size for the mutex buffer). FullSync points are not warmed (their first
segment is zero-filled by `open`, in 16 KiB writes): warmed with NoSync records, FullSync 512 B at 32 threads
ran at 42–47k/s against 59–75k/s unwarmed, most likely because of the 1 MiB folios. A log that is new, or grows
without checkpoints, runs in the "pwrite into new pages" regime of the calibrators instead. The peer crates
grow their files as they normally do.

**Between points** (not timed) the runner calls `syncfs` on the scratch file system: a point that left gigabytes of
dirty pages (a peer that grows its file at 2 GB/s) otherwise made the next point — slotlog's, which comes first —
share the CPU with their writeback. In the full sweep before this, slotlog's WriteOnly 4 KiB 2-thread points ran at
12–13 CPU-µs per append and 122–309k/s, against ~5 µs and 285–391k/s with nothing being written back.

**Calibrators beside a point.** The two targets that compare one point with a calibrator (FullSync 1 thread
against write + fdatasync, WriteOnly 2 threads against pwrite) use that calibrator measured again in every
repeat, just before and just after slotlog's point (slotlog runs first), and take the median over repeats of the
per-repeat ratio (repeats paired by number). The disk's latency drifts by more than such a target's margin within one run (write + fdatasync read
80.8 µs at the start and 107.1 µs at the end of the run of 2026-12-07 03:41 UTC, which judged a slotlog measured
in between against the faster one). The start and end calibrators are still shown, with the ratio against them.

**Baselines** (`benches/common/mod.rs`, in the same process, framing every record like slotlog: 16-byte header
with CRC32; files pre-written with zeros so fdatasync flushes data only, like slotlog's pre-zeroed segments):

1. **b1 sync-on-write** — `Mutex<File>`: write the frame, and for FullSync `fdatasync`, under the lock.
   NoSync behaves as WriteOnly (there is no buffer).
2. **b2 mutex buffer** (LevelDB-like) — `parking_lot::Mutex<Vec<u8>>`; the buffer is written when it reaches
   256 KiB (1 MiB measured no faster: `SLOTLOG_BENCH_B2_KB=1024` in `examples/load`, NoSync 128 B at 2 and 64
   threads); a WriteOnly/FullSync append writes the buffer (and fdatasyncs) under the lock before returning.
3. **b3 background sync** — appends write to the page cache under a mutex; a thread fdatasyncs every 100 ms
   and wakes the FullSync waiters it covered.
4. **b4 write groups** (RocksDB `JoinBatchGroup`, MuopDB write groups) — the first appender of an open group
   leads it: waits for the previous group's I/O, then up to 100 µs or 128 members / 1 MiB, writes the group
   with one write and, if any member wants FullSync, one fdatasync, then wakes the followers. NoSync appends
   only join the group.

All baselines give the same guarantees as slotlog's levels (WriteOnly: this record and all before it are in the
page cache; FullSync: an fdatasync covering them finished).

**Peers from crates.io** (`benches/peers/src/peers.rs`, a separate crate with its own workspace, so `cargo test`
and CI never build them), each used as its documentation recommends:

| peer | WriteOnly | FullSync | differences in semantics |
|---|---|---|---|
| raft-engine 0.4 (`default-features = false`, `Config::default()`) | `Engine::write(batch, false)` | `Engine::write(batch, true)` | One `LogBatch` with one key/value `put` per append (region = thread). Writes form leader/follower write groups; the leader fdatasyncs (Linux; fsync elsewhere). Batches ≥ 8 KiB are LZ4-compressed by default (records here are incompressible). It also keeps a memtable index. No NoSync level. |
| okaywal 0.3 (`LogVoid` checkpointer) | – | `begin_entry` / `write_chunk` / `commit` | Every commit is durable: `commit` returns after an fdatasync (`sync_data`) that queued commits share; new segment files also fsync the directory. No NoSync or WriteOnly level. |
| wal-db 1.1 (`Wal::open`) | `append` | `append_and_sync` | `append` reserves its range with one atomic add and writes it, so on return *this* record is in the page cache but an earlier, concurrent one may not be yet (slotlog's WriteOnly covers every record before it). `append_and_sync` waits for a group-committed fdatasync covering the record. The file grows with each append (no pre-allocation), so its fdatasync also flushes the file size. No NoSync level. |

RocksDB is left out: building it (C++) takes about 30 minutes on this machine. Baseline 4 models its write groups.

**Drivers**: `threads` threads are spawned and parked at a start gate (`common::run_gated`); once all are parked,
the driver reads the clock and the CPU time, then releases them; each appends records of the point's size
(incompressible bytes) until the point's time or byte budget runs out, then reads the clock itself; throughput
counts every append of every thread over the wall time from the release until the last thread finished. (Until
2026-12-07 the driver read the clock after releasing the threads, and 64 woken appenders could keep it off the CPU
for milliseconds: short points read too fast. See \"The clock of a point\" in performance-analysis.md.) Latency runs time
every append with `Instant::now()` and feed an hdrhistogram. CPU is `getrusage(RUSAGE_SELF)` (all threads of the
process, background threads included).

**Criterion** (`cargo bench --bench append`): the same systems minus the peers over threads {1,…,128} × sizes
{64 B, 128 B, 1 KiB, 16 KiB} × the three levels, `Throughput::Elements` (one element = one append across all
threads; bytes/s = elements/s × size); `SLOTLOG_BENCH_QUICK=1` shortens it, `SLOTLOG_BENCH_SYSTEMS=slotlog,b4`
filters systems, e.g. `SLOTLOG_BENCH_QUICK=1 cargo bench --bench append -- FullSync`.

**Charts** are drawn with the [plotters](https://crates.io/crates/plotters) crate (bitmap backend, PNG encoder,
ab_glyph text with the system's DejaVu Sans font). It is a dependency of the report crate `benches/peers` only,
not of slotlog or its tests.
"#;
