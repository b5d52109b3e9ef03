//! A load probe for A/B measurements: runs one point (durability level x threads x record
//! size) for slotlog and any of the in-process baselines, alternating the systems round by
//! round so that they share the machine's noise, and prints the median appends/s and CPU µs
//! per append of each.
//!
//! ```text
//! cargo run --release --example load -- LEVEL THREADS SIZE [ROUNDS] [MS] [SYSTEMS]
//! cargo run --release --example load -- full 64 512 5 1000 slotlog,b1,b4
//! ```
//!
//! LEVEL is `no`, `write` or `full`; SYSTEMS is a comma list of name fragments (default
//! `slotlog`; `slotlog-nolanes` adds slotlog with `Options::lanes(0)`, `slotlog-bounded` one with
//! `Options::max_unsynced`). To compare two builds of slotlog, build this example at both commits and run the
//! two binaries alternately. Set `SLOTLOG_BENCH_DIR` to a scratch directory on a real disk.
//! `SLOTLOG_BENCH_SLOT_KB` and `SLOTLOG_BENCH_POOL` set slotlog's slot size and pool,
//! `SLOTLOG_BENCH_B2_KB` the mutex buffer's size (for A/B runs of those settings). Before every
//! round (not timed) it calls `syncfs` on the scratch file system, so that no round pays for the
//! writeback of the one before it.

use std::sync::Arc;
use std::time::Duration;

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Durability, Wal};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let level = match arg(0, "full").as_str() {
        "no" => Durability::NoSync,
        "write" => Durability::WriteOnly,
        "full" => Durability::FullSync,
        other => panic!("LEVEL must be no, write or full, not {other}"),
    };
    let threads: usize = arg(1, "64").parse().expect("THREADS");
    let size: usize = arg(2, "512").parse().expect("SIZE");
    let rounds: usize = arg(3, "5").parse().expect("ROUNDS");
    let ms: u64 = arg(4, "1000").parse().expect("MS");
    let wanted: Vec<String> = arg(5, "slotlog").split(',').map(String::from).collect();

    let dir = common::bench_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).join("load");
    std::fs::create_dir_all(&dir)?;
    let slotlog = Arc::new(common::Slotlog::open(&dir.join("slotlog"), level)?);
    let mut systems: Vec<Arc<dyn Wal>> = vec![slotlog.clone()];
    if wanted.iter().any(|w| w == "slotlog-nolanes") {
        // The same log without lanes, alternating with the default one in this process.
        systems.push(Arc::new(common::Slotlog::open_named(
            &dir.join("slotlog-nolanes"),
            level,
            "slotlog-nolanes",
            |o| o.lanes(0),
        )?));
    }
    let mut bounded = None;
    if wanted.iter().any(|w| w == "slotlog-bounded") {
        // The same log with `Options::max_unsynced`: the in-flight window (the smallest bound
        // the options allow), or `SLOTLOG_BENCH_MAX_UNSYNCED_MB` if that is more.
        let mb = std::env::var("SLOTLOG_BENCH_MAX_UNSYNCED_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let log = Arc::new(common::Slotlog::open_named(
            &dir.join("slotlog-bounded"),
            level,
            "slotlog-bounded",
            |o| {
                let bound = o.in_flight_window().max(mb << 20);
                o.max_unsynced(Some(bound))
            },
        )?);
        bounded = Some(log.clone());
        systems.push(log);
    }
    systems.extend(common::baselines(&dir)?);
    systems.retain(|s| wanted.iter().any(|w| s.name().contains(w.as_str())));

    let mut rates = vec![Vec::new(); systems.len()];
    let mut cpus = vec![Vec::new(); systems.len()];
    for round in 0..rounds {
        for (i, wal) in systems.iter().enumerate() {
            // Not timed: no round pays for the writeback of the one before it (or of an earlier
            // process), which on 2 cores takes CPU from the appenders.
            common::sync_file_system(&dir)?;
            // The counters of whichever slotlog runs this round.
            let counted = match &bounded {
                Some(b) if Arc::ptr_eq(wal, &(b.clone() as Arc<dyn Wal>)) => b.clone(),
                _ => slotlog.clone(),
            };
            let before = counted.log.stats();
            let p = common::run_timed(
                wal,
                threads,
                size,
                level,
                Duration::from_millis(ms),
                u64::MAX,
                false,
            );
            let after = counted.log.stats();
            wal.reset();
            eprintln!(
                "round {round} {:<24} {:>12.0} appends/s {:>8.2} cpu-µs/append",
                wal.name(),
                p.rate(),
                p.cpu_per_million()
            );
            if Arc::ptr_eq(wal, &(counted.clone() as Arc<dyn Wal>)) {
                eprintln!("        {}", protocol_counters(&before, &after, p.wall));
            }
            rates[i].push(p.rate());
            cpus[i].push(p.cpu_per_million());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, wal) in systems.iter().enumerate() {
        println!(
            "{:<24} median {:>12.0} appends/s {:>8.2} cpu-µs/append ({} rounds of {} ms, {} threads, {} B, {:?})",
            wal.name(),
            median(&mut rates[i]),
            median(&mut cpus[i]),
            rounds,
            ms,
            threads,
            size,
            level
        );
    }
    Ok(())
}

/// What the protocol did per append during one round of `wall` seconds: join retries, parks,
/// records per write and per fdatasync, how long fdatasyncs ran — the counters that explain a
/// rate.
fn protocol_counters(a: &slotlog::Stats, b: &slotlog::Stats, wall: f64) -> String {
    let appends = (b.appends - a.appends).max(1) as f64;
    let per = |x: u64, y: u64| (y - x) as f64 / appends;
    let records_per = |what: &str, x: u64, y: u64| match y - x {
        0 => format!("no {what}"),
        n => format!("{:.1} records per {what}", appends / n as f64),
    };
    let sync_time = common::fdatasync_time(a, b, wall).map_or(String::new(), |(us, share)| {
        format!(
            ", {us:.0} µs per fdatasync, one running {:.0}% of the round",
            share * 100.0
        )
    });
    format!(
        "per append: {:.3} join retries, {:.3} parks ({:.3} as followers), {:.3} pool waits, \
         {:.4} lane chunks; {}, {}{sync_time} (in the round: {} parks, {} pool waits, {} writes waited \
         for max_unsynced; segments: {} recycled, {} \
         zero-filled, {} made sparse, {} installed by a writer)",
        per(a.cas_retries, b.cas_retries),
        per(a.parks, b.parks),
        per(a.follower_parks, b.follower_parks),
        per(a.pool_waits, b.pool_waits),
        per(a.lane_chunks, b.lane_chunks),
        records_per("write", a.writes, b.writes),
        records_per("fdatasync", a.fdatasyncs, b.fdatasyncs),
        b.parks - a.parks,
        b.pool_waits - a.pool_waits,
        b.unsynced_waits - a.unsynced_waits,
        b.segments_recycled - a.segments_recycled,
        b.segments_created - a.segments_created,
        b.segments_sparse - a.segments_sparse,
        b.segments_unprepared - a.segments_unprepared,
    )
}
