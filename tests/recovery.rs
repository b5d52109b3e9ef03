//! Recovery on real files: torn tails of every shape are cut and the log continues after them;
//! a hole inside the in-flight window cuts the log there for good; damage further back fails
//! `open` with `Error::Corrupt` naming the file and offset, unless `KeepValidPrefix` is asked for.

use std::any::Any;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use slotlog::storage::{OsStorage, Storage, StorageFile};
use slotlog::{Durability, Error, Log, Lsn, Options, RecoveryMode};

mod common;
use common::{payload, read_all, seed, Rng};

const SEGMENT_SIZE: u64 = 64 << 10;
const PAYLOAD: u64 = SEGMENT_SIZE - 64;
const SLOT_SIZE: usize = 4 << 10;
const SLOT_POOL: usize = 4;

/// Small segments; records up to 6000 bytes, so that some are unbuffered (over half a slot).
fn torn_options() -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .slot_size(SLOT_SIZE)
        .slot_pool(SLOT_POOL)
        .max_record_size(6000)
}

/// The in-flight window of `torn_options`: slot_pool * max(slot_size, 2 * (max_record + 16)).
const TORN_WINDOW: u64 = SLOT_POOL as u64 * 2 * (6000 + 16);

const SMALL_MAX_RECORD: usize = 1000;
/// The in-flight window of `window_options`: slot_pool * max(slot_size, 2 * (max_record + 16)).
const WINDOW: u64 = SLOT_POOL as u64 * SLOT_SIZE as u64;

/// A small in-flight window (16 KiB), for the tests that damage the log further back than it.
fn window_options() -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .slot_size(SLOT_SIZE)
        .slot_pool(SLOT_POOL)
        .max_record_size(SMALL_MAX_RECORD)
}

type Records = Vec<(Lsn, Vec<u8>)>;

/// Opens the log, reads every record and closes it.
fn reopen_and_read(dir: &Path, options: Options) -> Records {
    let log = Log::open(dir, options).unwrap();
    let records = read_all(&log);
    log.close().unwrap();
    records
}

fn summary(records: &[(Lsn, Vec<u8>)]) -> String {
    let first = records.first().map(|r| r.0);
    let last = records.last().map(|r| r.0);
    format!("{} records, {first:?}..={last:?}", records.len())
}

/// Asserts equality without printing megabytes of record data.
#[track_caller]
fn assert_records(got: &[(Lsn, Vec<u8>)], want: &[(Lsn, Vec<u8>)], what: &str) {
    if got != want {
        let i = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {}, want {}; first difference at index {i}: got {:?}, want {:?}",
            summary(got),
            summary(want),
            got.get(i).map(|r| (r.0, r.1.len())),
            want.get(i).map(|r| (r.0, r.1.len()))
        );
    }
}

/// Appends records of `max_record` bytes or less, with mixed durability, from `ids` on, until
/// the log reaches `until` bytes; returns them.
fn append_until(log: &Log, rng: &mut Rng, ids: &mut u64, max_record: usize, until: u64) -> Records {
    let mut out = Vec::new();
    while log.end_lsn().unwrap().as_u64() < until {
        let len = if rng.below(8) == 0 {
            12 + rng.below(max_record as u64 - 11)
        } else {
            12 + rng.below(500)
        };
        let data = payload(*ids, len as usize);
        *ids += 1;
        let d = [
            Durability::NoSync,
            Durability::WriteOnly,
            Durability::FullSync,
        ][rng.below(3) as usize];
        out.push((log.append(&data, d).unwrap(), data));
    }
    out
}

fn append_n(log: &Log, rng: &mut Rng, ids: &mut u64, max_record: usize, n: usize) -> Records {
    (0..n)
        .map(|_| {
            let len = 12 + rng.below(max_record as u64 - 11).min(rng.below(1200));
            let data = payload(*ids, len as usize);
            *ids += 1;
            (log.append(&data, Durability::WriteOnly).unwrap(), data)
        })
        .collect()
}

/// The segment file holding address `lsn` and the file offset of `lsn` in it.
fn locate(dir: &Path, lsn: Lsn) -> (PathBuf, u64) {
    locate_in(dir, lsn, PAYLOAD)
}

/// [`locate`] in a log whose segments hold `payload` bytes each.
fn locate_in(dir: &Path, lsn: Lsn, payload: u64) -> (PathBuf, u64) {
    let base = lsn.as_u64() / payload * payload;
    (
        dir.join(format!("{base:016x}.seg")),
        64 + lsn.as_u64() - base,
    )
}

fn frame_len(data: &[u8]) -> u64 {
    16 + data.len() as u64
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

// ----- torn tails ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The file ends in the middle of the record's data.
    TruncateMidData,
    /// The file ends in the middle of the record's header.
    TruncateMidHeader,
    /// The file ends where the record starts.
    TruncateAtStart,
    /// One bit of the record's data flipped.
    FlipDataBit,
    /// One bit of the record's length field flipped.
    FlipLengthBit,
    /// One bit of the record's stored address flipped.
    FlipAddressBit,
    /// The record's checksum field flipped.
    FlipChecksum,
    /// The whole frame zeroed.
    Zero,
    /// The whole frame overwritten with random bytes.
    GarbageOver,
    /// Random bytes after the record, which itself stays intact.
    GarbageAfter,
}

const ALL_DAMAGE: [Damage; 10] = [
    Damage::TruncateMidData,
    Damage::TruncateMidHeader,
    Damage::TruncateAtStart,
    Damage::FlipDataBit,
    Damage::FlipLengthBit,
    Damage::FlipAddressBit,
    Damage::FlipChecksum,
    Damage::Zero,
    Damage::GarbageOver,
    Damage::GarbageAfter,
];

/// Applies `damage` to the record at `lsn`; returns whether the record survives it.
fn apply(dir: &Path, lsn: Lsn, data: &[u8], damage: Damage, rng: &mut Rng) -> bool {
    let (path, off) = locate(dir, lsn);
    let frame = frame_len(data);
    let o = off as usize;
    match damage {
        Damage::TruncateMidData => truncate(&path, off + 16 + 1 + rng.below(data.len() as u64 - 1)),
        Damage::TruncateMidHeader => truncate(&path, off + 1 + rng.below(15)),
        Damage::TruncateAtStart => truncate(&path, off),
        Damage::FlipDataBit => modify(&path, |b| {
            b[o + 16 + rng.below(data.len() as u64) as usize] ^= 1 << rng.below(8)
        }),
        Damage::FlipLengthBit => modify(&path, |b| {
            b[o + 8 + rng.below(4) as usize] ^= 1 << rng.below(8)
        }),
        Damage::FlipAddressBit => {
            modify(&path, |b| b[o + rng.below(8) as usize] ^= 1 << rng.below(8))
        }
        Damage::FlipChecksum => modify(&path, |b| {
            b[o + 12..o + 16].iter_mut().for_each(|x| *x ^= 0xa5)
        }),
        Damage::Zero => modify(&path, |b| b[o..o + frame as usize].fill(0)),
        Damage::GarbageOver => modify(&path, |b| {
            b[o..o + frame as usize]
                .iter_mut()
                .for_each(|x| *x = rng.next() as u8)
        }),
        Damage::GarbageAfter => modify(&path, |b| {
            let end = (o + frame as usize + 1 + rng.below(3000) as usize).min(b.len());
            b[o + frame as usize..end]
                .iter_mut()
                .for_each(|x| *x = rng.next() as u8);
        }),
    }
    matches!(damage, Damage::GarbageAfter)
}

/// Writes a log, damages its tail (one of the last `depth` records) in every way, reopens,
/// checks the prefix, appends, reopens and checks the new records follow the old ones.
fn torn_tail_case(damage: Damage, seed: u64, big_last: bool, depth: u64) {
    let ctx = format!("{damage:?} seed {seed} big_last {big_last} depth {depth}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = 0;
    let log = Log::open(dir.path(), torn_options()).unwrap();
    let until = 2 * PAYLOAD + rng.below(PAYLOAD);
    let mut written = append_until(&log, &mut rng, &mut ids, 6000, until);
    let last_len = if big_last {
        2100 + rng.below(3900)
    } else {
        12 + rng.below(200)
    };
    let data = payload(ids, last_len as usize);
    ids += 1;
    written.push((log.append(&data, Durability::WriteOnly).unwrap(), data));
    log.close().unwrap();
    assert_records(
        &reopen_and_read(dir.path(), torn_options()),
        &written,
        &format!("{ctx}: undamaged"),
    );

    // Damage one of the last `depth` records that lie inside the in-flight window of the last
    // one (the tail a crash can tear). Garbage after a record only makes sense after the last.
    let last_lsn = written.last().unwrap().0;
    let candidates: Vec<usize> = (written.len().saturating_sub(depth as usize)..written.len())
        .filter(|&i| written[i].0.as_u64() + TORN_WINDOW > last_lsn.as_u64())
        .filter(|&i| !matches!(damage, Damage::GarbageAfter) || i == written.len() - 1)
        .collect();
    let victim = candidates[rng.below(candidates.len() as u64) as usize];
    let (lsn, data) = written[victim].clone();
    let survives = apply(dir.path(), lsn, &data, damage, &mut rng);
    let mut expect: Records = if survives {
        written.clone()
    } else {
        written[..victim].to_vec()
    };
    // Where the log must continue: at the cut, or after the intact last record.
    let cut = if survives {
        last_lsn.as_u64() + frame_len(&written.last().unwrap().1)
    } else {
        lsn.as_u64()
    };

    let log = Log::open(dir.path(), torn_options())
        .unwrap_or_else(|e| panic!("{ctx}: open after damage: {e}"));
    assert_records(&read_all(&log), &expect, &format!("{ctx}: after damage"));
    let new = append_n(&log, &mut rng, &mut ids, 6000, 40);
    let room = (cut / PAYLOAD + 1) * PAYLOAD - cut;
    let continue_at = if frame_len(&new[0].1) <= room {
        cut
    } else {
        (cut / PAYLOAD + 1) * PAYLOAD
    };
    assert_eq!(
        new[0].0.as_u64(),
        continue_at,
        "{ctx}: the log does not continue where the valid prefix ends"
    );
    expect.extend(new.iter().cloned());
    assert_records(
        &read_all(&log),
        &expect,
        &format!("{ctx}: after appends, before close"),
    );
    log.close().unwrap();
    assert_records(
        &reopen_and_read(dir.path(), torn_options()),
        &expect,
        &format!("{ctx}: after appends and reopen"),
    );
    // And once more, after appending in a second session.
    let log = Log::open(dir.path(), torn_options()).unwrap();
    let more = append_n(&log, &mut rng, &mut ids, 6000, 10);
    drop(log); // no close: dropping writes what is buffered
    expect.extend(more);
    assert_records(
        &reopen_and_read(dir.path(), torn_options()),
        &expect,
        &format!("{ctx}: third session"),
    );
}

#[test]
fn torn_last_record_is_cut_and_the_log_continues() {
    let seed = seed("torn_last_record_is_cut_and_the_log_continues");
    let mut rng = Rng(seed);
    for damage in ALL_DAMAGE {
        for big_last in [false, true] {
            torn_tail_case(damage, rng.next(), big_last, 1);
        }
    }
}

#[test]
fn torn_record_among_the_last_few_is_cut_and_the_log_continues() {
    let seed = seed("torn_record_among_the_last_few_is_cut_and_the_log_continues");
    let mut rng = Rng(seed);
    for damage in ALL_DAMAGE {
        torn_tail_case(damage, rng.next(), rng.below(2) == 0, 8);
    }
}

#[test]
fn empty_and_header_only_logs_reopen() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path(), torn_options())
        .unwrap()
        .close()
        .unwrap();
    let log = Log::open(dir.path(), torn_options()).unwrap();
    assert!(read_all(&log).is_empty());
    let a = log.append(b"first record!", Durability::FullSync).unwrap();
    assert_eq!(a, Lsn::ZERO);
    log.close().unwrap();
    // The first segment cut right after its header.
    truncate(&dir.path().join(format!("{:016x}.seg", 0)), 64);
    let log = Log::open(dir.path(), torn_options()).unwrap();
    assert!(read_all(&log).is_empty());
    let b = log.append(b"again", Durability::FullSync).unwrap();
    assert_eq!(b, Lsn::ZERO);
    log.close().unwrap();
    assert_eq!(
        reopen_and_read(dir.path(), torn_options()),
        vec![(b, b"again".to_vec())]
    );
}

// ----- holes inside the in-flight window ----------------------------------------------------

/// Writes about `until` bytes with the small window; returns the records (log closed).
fn build_window_log(dir: &Path, rng: &mut Rng, ids: &mut u64, until: u64) -> Records {
    let log = Log::open(dir, window_options()).unwrap();
    let records = append_until(&log, rng, ids, SMALL_MAX_RECORD, until);
    log.close().unwrap();
    records
}

/// Zeroes the record at `hole` (with valid records after it, inside the window), opens, and
/// checks the log is cut at the hole, that later appends are read after it, and that the old
/// records after the hole never come back.
fn hole_case(seed: u64, hole_bytes_before_end: u64, new_records: usize, across_segment: bool) {
    let ctx = format!("seed {seed} hole {hole_bytes_before_end} before the end, {new_records} new, across {across_segment}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = 0;
    // End either mid-segment or a little way into the next one.
    let until = if across_segment {
        3 * PAYLOAD + hole_bytes_before_end / 2
    } else {
        2 * PAYLOAD + PAYLOAD / 2
    };
    let written = build_window_log(dir.path(), &mut rng, &mut ids, until);
    let (last_lsn, _) = written.last().unwrap().clone();
    // The first record within `hole_bytes_before_end` of the last one, but never the last
    // record itself (a last record longer than that would leave nothing after the hole).
    let h = written
        .iter()
        .position(|(l, _)| l.as_u64() + hole_bytes_before_end > last_lsn.as_u64())
        .unwrap()
        .min(written.len() - 2);
    assert!(h + 1 < written.len(), "{ctx}: no record after the hole");
    let (hole_lsn, hole_data) = written[h].clone();
    if across_segment {
        assert!(
            written[h + 1..]
                .iter()
                .any(|(l, _)| l.as_u64() / PAYLOAD != hole_lsn.as_u64() / PAYLOAD),
            "{ctx}: no survivor in the next segment"
        );
    }
    let (path, off) = locate(dir.path(), hole_lsn);
    modify(&path, |b| {
        b[off as usize..(off + frame_len(&hole_data)) as usize].fill(0)
    });

    let log =
        Log::open(dir.path(), window_options()).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
    let mut expect = written[..h].to_vec();
    assert_records(&read_all(&log), &expect, &format!("{ctx}: cut at the hole"));
    let new = append_n(&log, &mut rng, &mut ids, SMALL_MAX_RECORD, new_records);
    if let Some(first) = new.first() {
        assert!(first.0 >= hole_lsn, "{ctx}");
    }
    expect.extend(new);
    log.close().unwrap();
    assert_records(
        &reopen_and_read(dir.path(), window_options()),
        &expect,
        &format!("{ctx}: after reopen"),
    );
    // The old records after the hole are gone from the files, not only from the iterator.
    let files = segment_files(dir.path());
    for (lsn, data) in &written[h + 1..] {
        if expect.iter().any(|(l, _)| l == lsn) {
            continue; // overwritten by a new record at the same address
        }
        let (path, off) = locate(dir.path(), *lsn);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((_, bytes)) = files.iter().find(|(n, _)| *n == name) {
            let at = off as usize..(off + frame_len(data)) as usize;
            // docs/format.md: the address word's top bit names the checksum kind.
            let address = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap()) & !(1 << 63);
            let still_there = bytes.get(at.start..at.start + 8).map(address) == Some(lsn.as_u64())
                && bytes.get(at.start + 8..at.start + 12)
                    == Some(&(data.len() as u32).to_le_bytes()[..])
                && bytes.get(at.start + 16..at.end) == Some(&data[..]);
            assert!(
                !still_there,
                "{ctx}: the old record at {lsn:?} is still in {name}"
            );
        }
    }
    // A third session: the log keeps going.
    let log = Log::open(dir.path(), window_options()).unwrap();
    let more = append_n(&log, &mut rng, &mut ids, SMALL_MAX_RECORD, 5);
    log.close().unwrap();
    expect.extend(more);
    assert_records(
        &reopen_and_read(dir.path(), window_options()),
        &expect,
        &format!("{ctx}: third session"),
    );
}

#[test]
fn hole_inside_the_window_cuts_the_log_for_good() {
    let seed = seed("hole_inside_the_window_cuts_the_log_for_good");
    let mut rng = Rng(seed);
    for (before_end, new_records) in [
        (600, 1),
        (3000, 2),
        (8000, 0),
        (8000, 3),
        (WINDOW - 2000, 1),
        (WINDOW - 2000, 80),
    ] {
        hole_case(rng.next(), before_end, new_records, false);
    }
}

#[test]
fn hole_with_survivors_in_the_next_segment_cuts_the_log_for_good() {
    let seed = seed("hole_with_survivors_in_the_next_segment_cuts_the_log_for_good");
    let mut rng = Rng(seed);
    for (before_end, new_records) in [(6000, 1), (12000, 3), (12000, 200)] {
        hole_case(rng.next(), before_end, new_records, true);
    }
}

/// The real file system, except that the `fail_at`-th removal of a segment file fails (the
/// ones before it go through): an `open` stopped partway through removing segments, where a
/// crash could stop it too.
struct FailingSegmentRemoval {
    fail_at: usize,
    removals: AtomicUsize,
}

impl Storage for FailingSegmentRemoval {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsStorage.create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<bool>> {
        OsStorage.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsStorage.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        OsStorage.open(path, create)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsStorage.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        if path.extension().is_some_and(|e| e == "seg")
            && self.removals.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at
        {
            return Err(io::Error::other("injected: removal failed"));
        }
        OsStorage.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        OsStorage.lock(path)
    }
}

/// A hole with survivors in the two segments after it: `open` cuts the log at the hole and
/// removes those segments. If it stops after removing one of them (here the second removal
/// fails), the files left must still be a log the next `open` recovers the same way, not one
/// with a segment missing in the middle. Found by review (2026-12-07): segments were removed
/// lowest first, and the next `open` refused the gap as corruption.
#[test]
fn recovery_stopped_while_removing_segments_leaves_a_log_that_opens() {
    // 8 KiB segments under the 16 KiB window: survivors of a hole can lie two segments on.
    const SEGMENT: u64 = 8 << 10;
    const SEGMENT_PAYLOAD: u64 = SEGMENT - 64;
    let options = || window_options().segment_size(SEGMENT);
    let seed = seed("recovery_stopped_while_removing_segments_leaves_a_log_that_opens");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = 0;
    let log = Log::open(dir.path(), options()).unwrap();
    let written = append_until(
        &log,
        &mut rng,
        &mut ids,
        SMALL_MAX_RECORD,
        5 * SEGMENT_PAYLOAD + 1000,
    );
    log.close().unwrap();
    let segment_of = |l: Lsn| l.as_u64() / SEGMENT_PAYLOAD;
    let (last_lsn, _) = written.last().unwrap().clone();
    // The last record of the segment two before the last record's: the records after it fill
    // the next segment and start the one after, within ~10 KiB of it (inside the window).
    let h = written
        .iter()
        .rposition(|(l, _)| segment_of(*l) + 2 == segment_of(last_lsn))
        .unwrap();
    let (hole_lsn, hole_data) = written[h].clone();
    assert!(
        last_lsn.as_u64() - hole_lsn.as_u64() < 12_000,
        "seed {seed}: the hole lies too far back"
    );
    let later: std::collections::BTreeSet<u64> = written[h + 1..]
        .iter()
        .map(|(l, _)| segment_of(*l))
        .filter(|&s| s > segment_of(hole_lsn))
        .collect();
    assert!(
        later.len() >= 2,
        "seed {seed}: survivors in {later:?}, want two segments after the hole's"
    );
    let (path, off) = locate_in(dir.path(), hole_lsn, SEGMENT_PAYLOAD);
    modify(&path, |b| {
        b[off as usize..(off + frame_len(&hole_data)) as usize].fill(0)
    });

    let failing = Arc::new(FailingSegmentRemoval {
        fail_at: 2,
        removals: AtomicUsize::new(0),
    });
    match Log::open(dir.path(), options().storage(failing.clone())) {
        Err(Error::Io { .. }) => {}
        other => panic!("seed {seed}: open with a failing removal: {other:?}"),
    }
    assert_eq!(failing.removals.load(Ordering::SeqCst), 2, "seed {seed}");
    let log = Log::open(dir.path(), options())
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after the stopped recovery: {e}"));
    assert_records(
        &read_all(&log),
        &written[..h],
        &format!("seed {seed}: cut at the hole"),
    );
    log.close().unwrap();
}

/// A process that allows larger records than the one that made a segment appends into that
/// segment; reopened with the first process's options, every acknowledged record is still read.
/// Each segment header names the largest record (and the in-flight window) a reader must allow,
/// and `open` raises both in the segments it will append to. Found by review (2026-12-07): the
/// header kept the creator's limit, and the reopen cut the log at the first longer record.
#[test]
fn records_longer_than_the_segment_makers_limit_survive_a_reopen_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let larger = || window_options().max_record_size(5 * SMALL_MAX_RECORD);
    // The first session leaves segment 0 and the preparer's segment 1, both made with the
    // smaller limit, so that the second one appends only into segments it did not make.
    let log = Log::open(dir.path(), window_options()).unwrap();
    log.append(b"first", Durability::WriteOnly).unwrap();
    common::wait_for_segments(&log, 2);
    log.close().unwrap();
    let log = Log::open(dir.path(), larger()).unwrap();
    let written: Records = std::iter::once((Lsn::ZERO, b"first".to_vec()))
        .chain((0..6).map(|i| {
            let data = payload(i, 3 * SMALL_MAX_RECORD);
            (log.append(&data, Durability::FullSync).unwrap(), data)
        }))
        .collect();
    let s = log.stats();
    assert_eq!(
        s.segments_recycled + s.segments_sparse,
        0,
        "the second session made no segment"
    );
    log.close().unwrap();
    assert_records(
        &reopen_and_read(dir.path(), window_options()),
        &written,
        "reopened with the smaller limit",
    );
    // Appends of that session stay readable too (the raised header is kept).
    let log = Log::open(dir.path(), window_options()).unwrap();
    let more = log
        .append(&payload(6, SMALL_MAX_RECORD), Durability::FullSync)
        .unwrap();
    log.close().unwrap();
    let all = reopen_and_read(dir.path(), larger());
    assert_eq!(all.len(), written.len() + 1);
    assert_eq!(all.last().map(|r| r.0), Some(more));
}

/// A session with larger segments than the one before appends a record too large for the rest
/// of the current segment: it goes whole at the next segment's base. The earlier session's
/// preparer had made that next segment already, at its own smaller size; `open` must not keep
/// it, or the acknowledged record crosses its end and the next read cuts it. Found by review
/// (2026-12-07).
#[test]
fn a_larger_segment_size_never_places_a_record_across_an_older_segments_end() {
    let dir = tempfile::tempdir().unwrap();
    let smaller = || {
        Options::default()
            .segment_size(1 << 20)
            .slot_size(64 << 10)
            .max_record_size(64 << 10)
    };
    let larger = || smaller().segment_size(4 << 20).max_record_size(2 << 20);
    let log = Log::open(dir.path(), smaller()).unwrap();
    let mut written: Records = vec![(
        log.append(b"first", Durability::FullSync).unwrap(),
        b"first".to_vec(),
    )];
    // The preparer makes segment 1 (1 MiB) while the writer is in segment 0.
    common::wait_for_segments(&log, 2);
    log.close().unwrap();

    let log = Log::open(dir.path(), larger()).unwrap();
    for (id, len) in [(1, 100), (2, 1_500_000), (3, 100)] {
        let data = payload(id, len);
        written.push((log.append(&data, Durability::FullSync).unwrap(), data));
    }
    log.close().unwrap();
    // The big record could not fit in the rest of segment 0: it starts a segment.
    assert_eq!(
        written[2].0.as_u64() % ((1 << 20) - 64),
        0,
        "{:?}",
        written[2].0
    );
    for (what, options) in [("larger", larger()), ("smaller", smaller())] {
        assert_records(
            &reopen_and_read(dir.path(), options),
            &written,
            &format!("reopened with the {what} options"),
        );
    }
}

// ----- damage further back than the window --------------------------------------------------

/// Damages a record more than the window before the end, checks that `open` refuses with
/// `Corrupt` naming the file and offset (and changes nothing), that `KeepValidPrefix` opens
/// with exactly the records before the damage, and that the salvaged log works normally.
fn mid_log_case(seed: u64, zero: bool, in_last_segment: bool) {
    let ctx = format!("seed {seed} zero {zero} in_last_segment {in_last_segment}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = 0;
    let written = build_window_log(dir.path(), &mut rng, &mut ids, 3 * PAYLOAD + PAYLOAD / 2);
    let last = written.last().unwrap().0;
    let candidates: Vec<usize> = (0..written.len())
        .filter(|&i| {
            let l = written[i].0;
            l.as_u64() + WINDOW + 1000 < last.as_u64()
                && (l.as_u64() / PAYLOAD == last.as_u64() / PAYLOAD) == in_last_segment
        })
        .collect();
    let v = candidates[rng.below(candidates.len() as u64) as usize];
    let (lsn, data) = written[v].clone();
    let (path, off) = locate(dir.path(), lsn);
    modify(&path, |b| {
        if zero {
            b[off as usize..(off + frame_len(&data)) as usize].fill(0);
        } else {
            b[(off + 16 + rng.below(data.len() as u64)) as usize] ^= 0x10;
        }
    });
    let before = segment_files(dir.path());

    for _ in 0..2 {
        let err = Log::open(dir.path(), window_options())
            .expect_err(&format!("{ctx}: open of a corrupt log succeeded"));
        match &err {
            Error::Corrupt {
                path: p,
                offset,
                reason,
            } => {
                assert_eq!(p, &path, "{ctx}: {err}");
                assert_eq!(*offset, off, "{ctx}: {err}");
                assert!(!reason.is_empty());
            }
            other => panic!("{ctx}: expected Corrupt, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()),
            "{ctx}: Display names no file: {text}"
        );
        assert!(
            text.contains(&format!("offset {off}")),
            "{ctx}: Display names no offset: {text}"
        );
        assert!(
            segment_files(dir.path()) == before,
            "{ctx}: a refused open changed the segment files"
        );
    }

    let salvage = window_options().recovery_mode(RecoveryMode::KeepValidPrefix);
    let log = Log::open(dir.path(), salvage.clone())
        .unwrap_or_else(|e| panic!("{ctx}: KeepValidPrefix: {e}"));
    let mut expect = written[..v].to_vec();
    assert_records(&read_all(&log), &expect, &format!("{ctx}: KeepValidPrefix"));
    let new = append_n(&log, &mut rng, &mut ids, SMALL_MAX_RECORD, 30);
    expect.extend(new);
    log.close().unwrap();
    // The salvaged log is a normal log now: the default mode opens it.
    assert_records(
        &reopen_and_read(dir.path(), window_options()),
        &expect,
        &format!("{ctx}: after salvage"),
    );
    assert_records(
        &reopen_and_read(dir.path(), salvage),
        &expect,
        &format!("{ctx}: salvage mode again"),
    );
}

#[test]
fn corruption_beyond_the_window_fails_open_unless_keep_valid_prefix() {
    let seed = seed("corruption_beyond_the_window_fails_open_unless_keep_valid_prefix");
    let mut rng = Rng(seed);
    for zero in [false, true] {
        for in_last_segment in [false, true] {
            mid_log_case(rng.next(), zero, in_last_segment);
        }
    }
}

/// The window boundary itself: a hole whose last valid successor starts `WINDOW` or more
/// bytes after it is corruption; one less than `WINDOW` is a torn tail.
#[test]
fn window_boundary_decides_torn_tail_or_corruption() {
    let seed = seed("window_boundary_decides_torn_tail_or_corruption");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = 0;
    let written = build_window_log(dir.path(), &mut rng, &mut ids, 2 * PAYLOAD + PAYLOAD / 2);
    let last = written.last().unwrap().0;
    assert!(
        last.as_u64() - WINDOW > 2 * PAYLOAD,
        "seed {seed}: the last segment is too short"
    );
    // The latest record at least WINDOW before the last one, and its successor.
    let far = written
        .iter()
        .rposition(|(l, _)| l.as_u64() + WINDOW <= last.as_u64())
        .unwrap();
    let near = far + 1;
    let pristine = segment_files(dir.path());
    let restore = || {
        for (name, bytes) in &pristine {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
    };
    let zero = |i: usize| {
        let (lsn, data) = &written[i];
        let (path, off) = locate(dir.path(), *lsn);
        modify(&path, |b| {
            b[off as usize..(off + frame_len(data)) as usize].fill(0)
        });
    };

    zero(far);
    let err = Log::open(dir.path(), window_options()).unwrap_err();
    assert!(
        err.is_corrupt(),
        "seed {seed}: a hole {} bytes before the last record: {err:?}",
        last.as_u64() - written[far].0.as_u64()
    );
    restore();

    zero(near);
    let log = Log::open(dir.path(), window_options()).unwrap_or_else(|e| {
        panic!(
            "seed {seed}: a hole {} bytes before the last record (< window {WINDOW}): {e}",
            last.as_u64() - written[near].0.as_u64()
        )
    });
    assert_records(
        &read_all(&log),
        &written[..near],
        &format!("seed {seed}: cut at the near hole"),
    );
    log.close().unwrap();
}

/// A hole before two unbuffered records that each follow a segment end's padding (three pool
/// entries in flight: the hole's slot and two padding + record extents) is a torn tail, although
/// the last record starts more than `slot_pool * max_frame` after the hole. A crash can leave
/// exactly this: the slot unwritten, both extents written. Found by the power-cut property
/// (seed 5838653446412042242, 1 run in ~300): the window used to count an extent as one frame.
#[test]
fn hole_before_padded_unbuffered_records_is_a_torn_tail() {
    const MAX: usize = 16 << 10;
    let options = || {
        Options::default()
            .segment_size(32 << 10)
            .slot_size(2048)
            .slot_pool(3)
            .max_record_size(MAX)
            .flush_interval(None)
    };
    let payload_len = (32 << 10) - 64;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let mut written = Vec::new();
    let mut id = 0;
    let mut next = 0u64;
    // Small records up to where a 1000-byte frame leaves too little of the first segment for
    // a full-size record, and starts at least 3 frames (49,200 bytes) before the third
    // segment.
    while next + 116 < 15_400 {
        id += 1;
        let data = payload(id, 100);
        next = log.append(&data, Durability::NoSync).unwrap().as_u64() + frame_len(&data);
        written.push(data);
    }
    id += 1;
    let hole = payload(id, 984);
    let hole_at = log.append(&hole, Durability::NoSync).unwrap();
    let big = |id| payload(id, MAX);
    let b = log.append(&big(id + 1), Durability::WriteOnly).unwrap();
    let c = log.append(&big(id + 2), Durability::WriteOnly).unwrap();
    log.close().unwrap();
    assert_eq!(
        b.as_u64(),
        payload_len,
        "the first big record opens the second segment"
    );
    assert_eq!(
        c.as_u64(),
        2 * payload_len,
        "the second big record opens the third segment"
    );
    let distance = c.as_u64() - hole_at.as_u64();
    assert!(
        distance >= 3 * (MAX as u64 + 16),
        "the last record starts only {distance} bytes after the hole"
    );

    let (path, off) = locate(dir.path(), hole_at);
    modify(&path, |bytes| {
        bytes[off as usize..(off + frame_len(&hole)) as usize].fill(0)
    });
    let log = Log::open(dir.path(), options())
        .unwrap_or_else(|e| panic!("a hole {distance} bytes before the last record: {e}"));
    let got: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got.len(), written.len(), "the log ends at the hole");
    assert!(got == written, "the records before the hole are intact");
    assert_eq!(
        log.end_lsn().unwrap(),
        hole_at,
        "appends continue at the hole"
    );
    log.close().unwrap();
}
