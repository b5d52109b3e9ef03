//! The recovery fuzzing property as a seeded test: thousands of random mutations of valid logs
//! (bit flips, garbage, zero runs, truncations, extensions, copied headers and frames, deleted
//! and renamed files, headers rebuilt with valid checksums and odd geometry) go through `open`
//! and `iter`. Opening must fail with `Error::Corrupt` or return only records that are
//! byte-exact the ones appended at their `Lsn`, consecutive, and followed by working appends.
//! The harness is `fuzz/src/lib.rs`, which the libFuzzer target in `fuzz/` uses too.
//!
//! Seed: `SLOTLOG_SEED` (default fixed, printed); `SLOTLOG_CASES` sets the number of cases
//! (default 3000, or 100,000 with `SLOTLOG_LONG=1`). A failure prints the case's input bytes
//! as hex; `SLOTLOG_SEED=<case seed> SLOTLOG_CASES=1` reruns just that case.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use harness::Outcome;

mod common;
use common::{read_all, Rng};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A random harness input: a few mutations, with offsets biased towards frame and header
/// boundaries so that the damage lands where recovery decides things.
fn random_input(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let len = 2 + (r.next() % 96) as usize;
    let mut v: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
    // Mostly 1-4 mutations.
    if v.len() > 2 && r.next() % 4 != 0 {
        v[2] = 1 + (r.next() % 4) as u8;
    }
    v
}

#[test]
fn unmutated_logs_recover_completely() {
    for base in harness::bases() {
        // The first segment file's base: `truncated` starts after its removed segment.
        let first_base = base
            .files
            .iter()
            .filter_map(|(n, _)| {
                n.strip_suffix(".seg")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
            })
            .min()
            .unwrap();
        let outcome = harness::run(base, slotlog::RecoveryMode::TolerateTornTail, &base.files);
        match base.name {
            "torn" => assert!(
                matches!(outcome, Outcome::Opened(n) if n >= 39),
                "{}: {outcome:?}",
                base.name
            ),
            _ => assert_eq!(
                outcome,
                Outcome::Opened(base.records.range(first_base..).count()),
                "{}",
                base.name
            ),
        }
    }
}

#[test]
fn random_damage_never_yields_a_wrong_record() {
    let long = std::env::var("SLOTLOG_LONG").is_ok_and(|v| v == "1");
    let base_seed = env_u64("SLOTLOG_SEED").unwrap_or(0x000F_0220_0000);
    let cases = env_u64("SLOTLOG_CASES").unwrap_or(if long { 100_000 } else { 3000 });
    eprintln!("recovery_fuzz: base seed {base_seed} (SLOTLOG_SEED), {cases} cases");
    let (mut corrupt, mut opened, mut records) = (0u64, 0u64, 0u64);
    for i in 0..cases {
        let seed = base_seed.wrapping_add(i);
        let input = random_input(seed);
        let outcome = std::panic::catch_unwind(|| harness::check(&input)).unwrap_or_else(|_| {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("case {i} failed: SLOTLOG_SEED={seed} SLOTLOG_CASES=1, input {hex}")
        });
        match outcome {
            Outcome::Corrupt => corrupt += 1,
            Outcome::Opened(n) => {
                opened += 1;
                records += n as u64;
            }
        }
    }
    eprintln!(
        "recovery_fuzz: {opened} opened ({records} records verified), {corrupt} refused as Corrupt"
    );
    assert!(
        opened > cases / 10 && corrupt > cases / 20,
        "the mutations hardly vary the outcome: {opened} opened, {corrupt} corrupt"
    );
}

// ----- regressions found by the fuzzer ------------------------------------------------------

fn sim_options(
    sim: &std::sync::Arc<slotlog::storage::SimStorage>,
    segment_size: u64,
    slot_size: usize,
) -> slotlog::Options {
    slotlog::Options::default()
        .segment_size(segment_size)
        .slot_size(slot_size)
        .slot_pool(3)
        .max_record_size(1024)
        .flush_interval(None)
        .storage(sim.clone())
}

/// A segment header with a valid checksum and a window near `u64::MAX`, and damage in the
/// first segment: recovery adds the window to the damage address.
#[test]
fn huge_window_in_a_valid_header_does_not_overflow() {
    let base = &harness::bases()[0];
    let mut files = base.files.clone();
    let seg0 = &mut files[0].1;
    let h = |at: usize| u64::from_le_bytes(seg0[at..at + 8].try_into().unwrap());
    let header = harness::segment_header(h(16), h(24), h(32), u64::MAX - 5, h(48));
    seg0[..64].copy_from_slice(&header);
    seg0[64 + 2000..64 + 2100].fill(0xEE);
    let outcome = harness::run(base, slotlog::RecoveryMode::TolerateTornTail, &files);
    assert_ne!(outcome, Outcome::Opened(0));
}

/// A log whose segments were made with a small slot size (so a small segment size), reopened
/// with a larger slot size: the last segment's room is smaller than one slot, and the first
/// slot's prefill is larger than the log's end address (`activate` computes `start - prefill`).
#[test]
fn reopen_with_a_larger_slot_than_the_segment_room() {
    use slotlog::{Durability, Log, Lsn};
    let sim = slotlog::storage::SimStorage::new();
    let dir = std::path::Path::new("/sim/grow");
    let log = Log::open(dir, sim_options(&sim, 64 + 4096, 2048)).unwrap();
    let a = log.append(b"first", Durability::FullSync).unwrap();
    log.close().unwrap();
    let log = Log::open(dir, sim_options(&sim, 64 + 16384, 16384)).unwrap();
    let b = log.append(b"second", Durability::FullSync).unwrap();
    log.close().unwrap();
    let log = Log::open(dir, sim_options(&sim, 64 + 16384, 16384)).unwrap();
    let got: Vec<(Lsn, Vec<u8>)> = read_all(&log);
    assert_eq!(got, vec![(a, b"first".to_vec()), (b, b"second".to_vec())]);
}

/// Everything before the last segment truncated, and the log ends exactly at that segment's
/// base (its first record was lost in a power cut): `iter(Lsn::ZERO)` moves to the segment's
/// base, which is the end, and must stop there instead of reading the frame at the end.
#[test]
fn iter_on_a_log_that_ends_at_its_first_segment_base() {
    use slotlog::{Durability, Log, Lsn};
    let sim = slotlog::storage::SimStorage::new();
    let dir = std::path::Path::new("/sim/empty-tail");
    let opts = || sim_options(&sim, 64 + 8192, 2048);
    let log = Log::open(dir, opts()).unwrap();
    // Fill segment 0 with durable records, then one unsynced record starts segment 1.
    let mut last = Lsn::ZERO;
    while last.as_u64() < 8192 - 1200 {
        last = log.append(&[7u8; 1000], Durability::FullSync).unwrap();
    }
    let tail = log.append(&[9u8; 1000], Durability::WriteOnly).unwrap();
    assert_eq!(
        tail.as_u64(),
        8192,
        "the unsynced record should start segment 1"
    );
    assert_eq!(log.truncate_front(tail).unwrap(), 1);
    sim.power_cut(false);
    drop(log);
    let log = Log::open(dir, opts()).unwrap();
    let got: slotlog::Result<Vec<_>> = log.iter(Lsn::ZERO).unwrap().collect();
    assert_eq!(got.unwrap_or_else(|e| panic!("iter failed: {e}")).len(), 0);
}
