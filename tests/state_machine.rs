//! A proptest state machine: random sequences of append / sync / flush / read / crash (power
//! cut + reopen) / clean reopen / unclean reopen (drop without close) / truncate_front, run
//! against a reference model.
//!
//! The model is the list of acknowledged records in log order and how many of them are
//! durable (a `FullSync` append, `sync`, a clean `close` or a recovery makes everything before
//! it durable). After a power cut the log must hold exactly a prefix of the model that
//! contains every durable record, byte for byte at the same `Lsn`s; after a clean or unclean
//! reopen it must hold all of it.
//!
//! 64 cases by default, 10,000 with `SLOTLOG_LONG=1` (`PROPTEST_CASES` overrides both).
//! Failures are saved to `tests/state_machine.proptest-regressions` and replayed first.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use slotlog::storage::SimStorage;
use slotlog::{Durability, Log, Lsn, Options};

const SEGMENT_SIZE: u64 = 8 << 10;
const SLOT_SIZE: usize = 1024;
const MAX_RECORD: usize = 1024;

#[derive(Clone, Debug)]
enum Op {
    Append { len: usize, durability: Durability },
    Sync,
    Flush,
    Read,
    Crash { tear: bool },
    Reopen,
    ReopenUnclean,
    Truncate { pick: prop::sample::Index },
}

fn op() -> impl Strategy<Value = Op> {
    let durability = prop_oneof![
        Just(Durability::NoSync),
        Just(Durability::WriteOnly),
        Just(Durability::FullSync)
    ];
    let len = prop_oneof![4 => 0usize..200, 1 => 200usize..=MAX_RECORD];
    prop_oneof![
        20 => (len, durability).prop_map(|(len, durability)| Op::Append { len, durability }),
        2 => Just(Op::Sync),
        2 => Just(Op::Flush),
        1 => Just(Op::Read),
        3 => any::<bool>().prop_map(|tear| Op::Crash { tear }),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReopenUnclean),
        1 => any::<prop::sample::Index>().prop_map(|pick| Op::Truncate { pick }),
    ]
}

fn options(sim: &Arc<SimStorage>) -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .slot_size(SLOT_SIZE)
        .slot_pool(3)
        .max_record_size(MAX_RECORD)
        .recycle_segments(1)
        .flush_interval(None) // deterministic: only the test's operations write
        .storage(sim.clone())
}

fn dir() -> &'static Path {
    Path::new("/sim/sm")
}

/// Record `seq`'s bytes: a pattern of `seq` and `len`, so that any two records differ.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// While `true`, [`read_all`] steps around a known bug (the first case saved in
/// `state_machine.proptest-regressions`; `iter_on_a_log_that_ends_at_its_first_segment_base`
/// in `tests/recovery_fuzz.rs`): on a log whose end is exactly the base of its first segment
/// file, `iter(Lsn::ZERO)` reads the frame at the end and fails with `Corrupt` at offset 64.
const WORK_AROUND_ITER_AT_FIRST_BASE: bool = false;

fn read_from(log: &Log, from: Lsn) -> slotlog::Result<Vec<(Lsn, Vec<u8>)>> {
    log.iter(from)?
        .map(|r| r.map(|r| (r.lsn(), r.into_data())))
        .collect()
}

fn read_all(log: &Log) -> Result<Vec<(Lsn, Vec<u8>)>, TestCaseError> {
    let mut res = read_from(log, Lsn::ZERO);
    if let (
        true,
        Err(slotlog::Error::Corrupt {
            path, offset: 64, ..
        }),
    ) = (WORK_AROUND_ITER_AT_FIRST_BASE, &res)
    {
        let end = log
            .end_lsn()
            .map_err(|e| TestCaseError::fail(format!("end_lsn: {e}")))?;
        if path.file_name().and_then(|n| n.to_str()) == Some(&format!("{:016x}.seg", end.as_u64()))
        {
            res = read_from(log, end);
        }
    }
    res.map_err(|e| TestCaseError::fail(format!("reading failed: {e}")))
}

fn open(sim: &Arc<SimStorage>) -> Result<Log, TestCaseError> {
    Log::open(dir(), options(sim)).map_err(|e| TestCaseError::fail(format!("open failed: {e}")))
}

struct Model {
    /// Acknowledged records still in the log, in log order.
    records: Vec<(Lsn, Vec<u8>)>,
    /// `records[..durable]` survive a power cut.
    durable: usize,
    next_seq: u64,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = SimStorage::new();
    let mut log = open(&sim)?;
    let mut m = Model {
        records: Vec::new(),
        durable: 0,
        next_seq: 0,
    };
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Append { len, durability } => {
                let data = payload(m.next_seq, len);
                m.next_seq += 1;
                let lsn = log
                    .append(&data, durability)
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                if let Some((last, _)) = m.records.last() {
                    prop_assert!(lsn > *last, "{}: lsn {} not after {}", ctx, lsn, last);
                }
                m.records.push((lsn, data));
                if durability == Durability::FullSync {
                    m.durable = m.records.len();
                }
            }
            Op::Sync => {
                log.sync()
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                m.durable = m.records.len();
            }
            Op::Flush => log
                .flush()
                .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?,
            Op::Read => {
                log.flush()
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                prop_assert_eq!(read_all(&log)?, m.records.clone(), "{}", ctx);
            }
            Op::Crash { tear } => {
                sim.power_cut(tear);
                drop(log);
                log = open(&sim)?;
                let got = read_all(&log)?;
                let k = got.len();
                prop_assert!(
                    k <= m.records.len(),
                    "{}: {} records recovered, only {} acknowledged",
                    ctx,
                    k,
                    m.records.len()
                );
                prop_assert!(
                    k >= m.durable,
                    "{}: {} records recovered, {} were durable",
                    ctx,
                    k,
                    m.durable
                );
                prop_assert_eq!(
                    &got[..],
                    &m.records[..k],
                    "{}: not a prefix of the acknowledged records",
                    ctx
                );
                m.records.truncate(k);
                m.durable = k;
            }
            Op::Reopen => {
                log.close()
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: close: {e}")))?;
                log = open(&sim)?;
                prop_assert_eq!(read_all(&log)?, m.records.clone(), "{}", ctx);
                m.durable = m.records.len();
            }
            Op::ReopenUnclean => {
                drop(log); // writes what is buffered, no fdatasync: a process crash
                log = open(&sim)?;
                prop_assert_eq!(read_all(&log)?, m.records.clone(), "{}", ctx);
                // Recovery makes what it kept durable.
                m.durable = m.records.len();
            }
            Op::Truncate { pick } => {
                if m.records.is_empty() {
                    continue;
                }
                let (to, _) = m.records[pick.index(m.records.len())];
                log.flush()
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                log.truncate_front(to)
                    .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                // Whole segments before the one holding `to` go; everything from there stays.
                let payload = SEGMENT_SIZE - 64;
                let keep_from = to.as_u64() / payload * payload;
                let got = read_all(&log)?;
                let removed = m
                    .records
                    .iter()
                    .take_while(|(l, _)| l.as_u64() < keep_from)
                    .count();
                prop_assert_eq!(
                    &got[..],
                    &m.records[removed..],
                    "{}: truncate_front({}) kept the wrong records",
                    ctx,
                    to
                );
                m.records.drain(..removed);
                m.durable = m.durable.saturating_sub(removed);
            }
        }
    }
    log.close()
        .map_err(|e| TestCaseError::fail(format!("final close: {e}")))?;
    let log = open(&sim)?;
    prop_assert_eq!(
        read_all(&log)?,
        m.records,
        "after the final close and reopen"
    );
    Ok(())
}

fn config() -> Config {
    let long = std::env::var("SLOTLOG_LONG").is_ok_and(|v| v == "1");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 10_000 } else { 64 });
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn log_matches_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
