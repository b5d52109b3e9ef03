//! Crash loop: a child process appends from several threads with mixed durability and reports
//! every acknowledged append on stdout; the test kills it with SIGKILL at a seeded-random
//! acknowledgement count, reopens the log and checks that every `WriteOnly`/`FullSync`
//! acknowledgement survived byte-exact at its `Lsn`, that `NoSync` ones are intact where they
//! survived, that no record is corrupt, and that the log is a stable, growing prefix across
//! cycles.
//!
//! The child is this test binary, re-run with `CHILD_ENV` set (see `crash_child_process`).
//! `SLOTLOG_TEST_SEED` replays a run; `SLOTLOG_CRASH_CYCLES` changes the number of cycles.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use slotlog::{Durability, Log, Lsn, Options};

mod common;
use common::Rng;

const CHILD_ENV: &str = "SLOTLOG_CRASH_CHILD";
const THREADS: u64 = 4;
/// Appends per child thread at most, so that an orphaned child ends by itself.
const CHILD_CAP: u64 = 50_000;
const MAX_RECORD: usize = 48 << 10;

fn options() -> Options {
    Options::default()
        .segment_size(1 << 20)
        .slot_size(16 << 10)
        .slot_pool(4)
        .max_record_size(MAX_RECORD)
}

/// Record ids: cycle, thread and the thread's append counter.
fn id_of(cycle: u64, thread: u64, i: u64) -> u64 {
    (cycle << 40) | (thread << 32) | i
}

/// The length of record `id`, derived from the id: mostly small, some over half a slot
/// (unbuffered), a few near the maximum.
fn len_of(id: u64) -> usize {
    let r = Rng(id ^ 0x5151).next();
    match r % 64 {
        0 => MAX_RECORD - (r >> 8) as usize % 1024,
        1..=3 => (8 << 10) + (r >> 8) as usize % (24 << 10),
        _ => 16 + (r >> 8) as usize % 600,
    }
}

/// A self-verifying record: `[id u64][len u32]` then bytes derived from the id; everything
/// follows from the id, so a reader can check any record it finds byte for byte.
fn payload(id: u64) -> Vec<u8> {
    let len = len_of(id);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut r = Rng(id);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Checks a record byte for byte and returns its id.
fn verify(lsn: Lsn, data: &[u8], ctx: &str) -> u64 {
    assert!(
        data.len() >= 12,
        "{ctx}: record at {lsn:?} of {} bytes is not one of ours",
        data.len()
    );
    let id = u64::from_le_bytes(data[..8].try_into().unwrap());
    let want = payload(id);
    assert!(
        data == &want[..],
        "{ctx}: record at {lsn:?} (id {id:#x}, {} bytes) is corrupt",
        data.len()
    );
    id
}

const DURABILITIES: [Durability; 3] = [
    Durability::NoSync,
    Durability::WriteOnly,
    Durability::FullSync,
];

// ----- the child ----------------------------------------------------------------------------

/// Not a test on its own: the body of the child process of `crash_loop`, which runs this
/// binary with `CHILD_ENV=<dir>,<cycle>,<seed>`. Without it, returns at once.
#[test]
fn crash_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let dir = parts.next().unwrap().to_owned();
    let cycle: u64 = parts.next().unwrap().parse().unwrap();
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            std::process::exit(3); // the parent is gone
        }
    };
    let log = match Log::open(&dir, options()) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            say(format!("ERR open: {e}"));
            std::process::exit(2);
        }
    };
    say("\nREADY".into());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (cycle << 8) ^ t);
                for i in 0..CHILD_CAP {
                    let id = id_of(cycle, t, i);
                    // Durable appends are rarer: each costs an fdatasync.
                    let d = match rng.below(10) {
                        0..=4 => 0,
                        5..=7 => 1,
                        _ => 2,
                    };
                    match log.append(&payload(id), DURABILITIES[d]) {
                        Ok(lsn) => {
                            let mut out = std::io::stdout().lock();
                            if writeln!(out, "ACK {} {d} {id}", lsn.as_u64())
                                .and_then(|_| out.flush())
                                .is_err()
                            {
                                std::process::exit(3);
                            }
                        }
                        Err(e) => {
                            println!("ERR append: {e}");
                            std::process::exit(2);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::process::exit(0);
}

// ----- the parent ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Ack {
    lsn: Lsn,
    durability: Durability,
    id: u64,
}

/// Runs one child until it has printed `kill_after` acknowledgements (0: until it opened the
/// log; `None`: not at all, it dies wherever it is, maybe inside `open`), kills it with
/// SIGKILL and returns every acknowledgement it printed before it died.
fn run_child(dir: &Path, cycle: u64, seed: u64, kill_after: Option<u64>, ctx: &str) -> Vec<Ack> {
    let stderr_path = dir.with_extension(format!("child-{cycle}.stderr"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{},{cycle},{seed}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut errors = Vec::new();
    let mut ready = false;
    let mut killed = kill_after.is_none();
    if killed {
        child.kill().unwrap();
    }
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break; // a line cut short by the kill was never a full acknowledgement
        }
        let l = line.trim_end();
        if l == "READY" {
            ready = true;
        } else if let Some(rest) = l.strip_prefix("ACK ") {
            let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            acks.push(Ack {
                lsn: Lsn::from_u64(f[0]),
                durability: DURABILITIES[f[1] as usize],
                id: f[2],
            });
        } else if l.contains("ERR") {
            errors.push(l.to_owned());
        }
        if !killed && ready && acks.len() as u64 >= kill_after.unwrap() {
            child.kill().unwrap(); // SIGKILL; the lines already in the pipe still count
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    assert!(
        errors.is_empty(),
        "{ctx}: the child failed: {errors:?}\n{stderr}"
    );
    assert!(
        killed,
        "{ctx}: the child ended before it was killed ({status}, {} acks):\n{stderr}",
        acks.len()
    );
    acks
}

#[test]
fn crash_loop() {
    let seed = common::seed("crash_loop");
    let cycles: u64 = std::env::var("SLOTLOG_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    eprintln!("crash_loop: {cycles} cycles");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");

    // What the previous verification read: the log must keep it as its prefix.
    let mut history: Vec<(Lsn, u64)> = Vec::new();
    // Every acknowledgement of every cycle.
    let mut durable_acks: BTreeMap<Lsn, u64> = BTreeMap::new();
    let mut total_acks = 0usize;
    for cycle in 0..cycles {
        let kill_after = match rng.below(12) {
            0 => None,
            1 => Some(0),
            2 | 3 => Some(1 + rng.below(30)),
            _ => Some(1 + rng.below(1500)),
        };
        let ctx = format!("seed {seed} cycle {cycle} (killed after {kill_after:?} acks)");
        let acks = run_child(&dir, cycle, rng.next(), kill_after, &ctx);
        assert!(acks.len() as u64 >= kill_after.unwrap_or(0), "{ctx}");
        total_acks += acks.len();

        let log = Log::open(&dir, options())
            .unwrap_or_else(|e| panic!("{ctx}: open after the crash: {e}"));
        let mut records: Vec<(Lsn, u64)> = Vec::with_capacity(history.len() + acks.len() + 64);
        for r in log.iter(Lsn::ZERO).unwrap() {
            let r = r.unwrap_or_else(|e| panic!("{ctx}: reading the log: {e}"));
            records.push((r.lsn(), verify(r.lsn(), r.data(), &ctx)));
        }
        log.close().unwrap();

        // A stable prefix: nothing read before changed or disappeared.
        assert!(
            records.len() >= history.len(),
            "{ctx}: the log shrank from {} to {} records",
            history.len(),
            records.len()
        );
        if let Some(i) = history.iter().zip(&records).position(|(a, b)| a != b) {
            panic!(
                "{ctx}: record {i} changed from {:?} to {:?}",
                history[i], records[i]
            );
        }
        for w in records.windows(2) {
            assert!(w[0].0 < w[1].0, "{ctx}: records out of order: {w:?}");
        }
        let by_lsn: HashMap<Lsn, u64> = records.iter().copied().collect();
        let mut ids: Vec<u64> = records.iter().map(|r| r.1).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), records.len(), "{ctx}: a record appears twice");

        // This cycle's acknowledgements.
        let end = records.last().map(|r| r.0);
        for ack in &acks {
            assert_eq!(ack.id >> 40, cycle, "{ctx}");
            match (by_lsn.get(&ack.lsn), ack.durability) {
                (Some(&id), _) => assert_eq!(
                    id, ack.id,
                    "{ctx}: a different record at acknowledged {ack:?}"
                ),
                (None, Durability::NoSync) => {
                    // Lost with the process: then everything after it is lost too.
                    assert!(
                        end.map_or(true, |e| e < ack.lsn),
                        "{ctx}: NoSync {ack:?} missing inside the log (ends {end:?})"
                    );
                }
                (None, d) => panic!(
                    "{ctx}: acknowledged {d:?} append lost: {ack:?}; the log ends at {end:?}"
                ),
            }
            if ack.durability != Durability::NoSync {
                durable_acks.insert(ack.lsn, ack.id);
            }
        }
        // Every earlier cycle's durable acknowledgements, once more.
        for (lsn, id) in &durable_acks {
            assert_eq!(
                by_lsn.get(lsn),
                Some(id),
                "{ctx}: acknowledged record {id:#x} at {lsn:?} lost"
            );
        }
        // Each child thread's records are a gap-free run from its first append, in Lsn order.
        let mut next = [0u64; THREADS as usize];
        for &(lsn, id) in &records[history.len()..] {
            assert_eq!(
                id >> 40,
                cycle,
                "{ctx}: record {id:#x} of an earlier cycle appears at {lsn:?} after the old end"
            );
            let t = ((id >> 32) & 0xff) as usize;
            assert_eq!(
                id & 0xffff_ffff,
                next[t],
                "{ctx}: thread {t}'s records skip from {} at {lsn:?}",
                next[t]
            );
            next[t] += 1;
        }
        if acks.iter().any(|a| a.durability != Durability::NoSync) {
            assert!(
                records.len() > history.len(),
                "{ctx}: a durable acknowledgement but no new record"
            );
        }
        eprintln!(
            "cycle {cycle}: {} acks, {} records (+{}), log end {:?}",
            acks.len(),
            records.len(),
            records.len() - history.len(),
            end
        );
        history = records;
    }
    assert!(
        total_acks > 0 && !durable_acks.is_empty(),
        "seed {seed}: nothing was acknowledged"
    );
    assert!(
        history.len() as u64 >= cycles,
        "seed {seed}: the log did not grow: {} records",
        history.len()
    );
}
