//! The recovery fuzzing harness, shared by the libFuzzer target (`fuzz_targets/recover.rs`) and
//! the seeded test `tests/recovery_fuzz.rs` (which includes this file with `#[path]`).
//!
//! [`check`] turns arbitrary bytes into a damaged log: it takes one of a few valid logs made by
//! slotlog itself (self-verifying records, 1-3 segment files, a spare file, a torn tail), applies
//! the mutations the bytes describe (bit flips, raw overwrites, zero runs, truncations,
//! extensions, copies of ranges between files, deletions, renames, and segment headers rebuilt
//! with a valid checksum but fuzz-chosen geometry), opens the log on a `SimStorage` and reads
//! everything. It panics if
//!
//! - `open` fails with anything but `Error::Corrupt`;
//! - a record read back is not the one appended at that `Lsn`, byte for byte;
//! - the records read back are not a run of consecutive records of the original log;
//! - reading fails after a successful `open`;
//! - a record appended after recovery does not read back, also after a clean reopen.
//!
//! Bytes the mutations write are XORed with a position-dependent mask, so that libFuzzer's
//! comparison tracing cannot copy a computed CRC into place: a forged frame is as unlikely as
//! for random damage (2^-32), and a record that verifies but differs is a real finding.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use slotlog::storage::{SimStorage, Storage};
use slotlog::{Durability, Log, Lsn, Options, RecoveryMode};

/// Segment size of the seed logs.
pub const SEGMENT_SIZE: u64 = 16 << 10;
/// The largest record (small, so that no valid frame makes a large allocation).
pub const MAX_RECORD: usize = 2048;

/// A valid log to mutate.
pub struct BaseLog {
    /// What it is, for messages.
    pub name: &'static str,
    /// File name and bytes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Every record ever appended, by lsn, in log order.
    pub records: BTreeMap<u64, Vec<u8>>,
}

fn dir() -> &'static Path {
    Path::new("/fuzz/log")
}

/// Options of the seed logs, on `sim`.
pub fn options(sim: &Arc<SimStorage>, mode: RecoveryMode) -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .slot_size(2048)
        .slot_pool(3)
        .max_record_size(MAX_RECORD)
        .flush_interval(None)
        .recycle_segments(1)
        .recovery_mode(mode)
        .storage(sim.clone())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The `seq`-th record, `len` bytes: `seq` and `len` in the first 8 bytes (if it has them),
/// then a stream derived from both.
pub fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut r = Rng((seq as u64) << 32 | len as u64);
    let mut out: Vec<u8> = seq
        .to_le_bytes()
        .into_iter()
        .chain((len as u32).to_le_bytes())
        .collect();
    out.truncate(len);
    while out.len() < len {
        out.push(r.next() as u8);
    }
    out
}

fn files_of(sim: &SimStorage) -> Vec<(String, Vec<u8>)> {
    let mut names = sim.list(dir()).expect("list");
    names.sort();
    names
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let bytes = sim.read_file(&dir().join(&n)).expect("listed file");
            (n, bytes)
        })
        .collect()
}

fn append_some(log: &Log, records: &mut BTreeMap<u64, Vec<u8>>, seqs: std::ops::Range<u32>) {
    for seq in seqs {
        let len = match seq % 11 {
            0 => 0,
            1 => 5,
            2 => 1500 + (seq as usize * 13) % 548, // unbuffered: frame > slot_size / 2
            _ => (seq as usize * 97) % 700,
        };
        let d = [
            Durability::NoSync,
            Durability::WriteOnly,
            Durability::FullSync,
        ][seq as usize % 3];
        let data = payload(seq, len);
        let lsn = log.append(&data, d).expect("seed log append");
        records.insert(lsn.as_u64(), data);
    }
}

/// The valid logs the mutations start from.
pub fn bases() -> &'static [BaseLog] {
    static BASES: OnceLock<Vec<BaseLog>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut out = Vec::new();
        let mode = RecoveryMode::TolerateTornTail;
        // Cleanly closed, two full segments and part of a third.
        {
            let sim = SimStorage::new();
            let log = Log::open(dir(), options(&sim, mode)).unwrap();
            let mut records = BTreeMap::new();
            append_some(&log, &mut records, 0..90);
            log.close().unwrap();
            out.push(BaseLog {
                name: "closed",
                files: files_of(&sim),
                records,
            });
        }
        // Front-truncated: starts at a later segment, one spare file.
        {
            let sim = SimStorage::new();
            let log = Log::open(dir(), options(&sim, mode)).unwrap();
            let mut records = BTreeMap::new();
            append_some(&log, &mut records, 0..90);
            log.flush().unwrap();
            log.truncate_front(Lsn::from_u64(SEGMENT_SIZE)).unwrap();
            append_some(&log, &mut records, 90..100);
            log.close().unwrap();
            out.push(BaseLog {
                name: "truncated",
                files: files_of(&sim),
                records,
            });
        }
        // Power cut with a torn write: unsynced records after the last FullSync.
        {
            let sim = SimStorage::new();
            let log = Log::open(dir(), options(&sim, mode)).unwrap();
            let mut records = BTreeMap::new();
            append_some(&log, &mut records, 0..40);
            for seq in 40..60 {
                let data = payload(seq, (seq as usize * 37) % 900);
                let lsn = log.append(&data, Durability::WriteOnly).unwrap();
                records.insert(lsn.as_u64(), data);
            }
            sim.power_cut(true);
            drop(log);
            out.push(BaseLog {
                name: "torn",
                files: files_of(&sim),
                records,
            });
        }
        out
    })
}

/// Reads the input front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// The mask byte XORed into written byte `at` of file `file`.
fn mask(file: usize, at: usize) -> u8 {
    let mut r = Rng((file as u64) << 40 ^ at as u64);
    r.next() as u8
}

/// A segment header of this format version with a valid checksum (the layout of
/// `docs/format.md`).
pub fn segment_header(
    log_id: u64,
    base: u64,
    payload: u64,
    window: u64,
    max_record: u64,
) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(b"SLOTLOG\0");
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    b[12..16].copy_from_slice(&64u32.to_le_bytes());
    b[16..24].copy_from_slice(&log_id.to_le_bytes());
    b[24..32].copy_from_slice(&base.to_le_bytes());
    b[32..40].copy_from_slice(&payload.to_le_bytes());
    b[40..48].copy_from_slice(&window.to_le_bytes());
    b[48..56].copy_from_slice(&max_record.to_le_bytes());
    let crc = crc32(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap()))
}

/// Applies the mutations `input` describes to a copy of `base`'s files.
fn mutate(base: &BaseLog, input: &mut Input) -> Vec<(String, Vec<u8>)> {
    let mut files = base.files.clone();
    let ops = input.u8() % 8;
    for _ in 0..ops {
        if files.is_empty() {
            break;
        }
        let op = input.u8();
        let f = input.u8() as usize % files.len();
        let len = files[f].1.len();
        let off = if len == 0 {
            0
        } else {
            input.u32() as usize % (len + 1)
        };
        if std::env::var_os("FUZZ_DEBUG").is_some() {
            eprintln!("op {} on {} (len {len}) at {off}", op % 10, files[f].0);
        }
        match op % 10 {
            // Flip bits in one byte.
            0 | 1 => {
                let m = input.u8() | 1;
                if let Some(b) = files[f].1.get_mut(off) {
                    *b ^= m;
                }
            }
            // Garbage over a range (may extend the file).
            2 => {
                let n = input.u8() as usize + 1;
                let bytes: Vec<u8> = input.bytes(n).to_vec();
                let data = &mut files[f].1;
                for (i, b) in bytes.iter().enumerate() {
                    let at = off + i;
                    if at >= data.len() {
                        data.push(0);
                    }
                    data[at] = b ^ mask(f, at);
                }
            }
            // A zero run.
            3 => {
                let n = input.u16() as usize;
                let data = &mut files[f].1;
                let end = (off + n).min(data.len());
                data[off.min(end)..end].fill(0);
            }
            // Truncate.
            4 => files[f].1.truncate(off),
            // Copy a range from one file to another place (duplicated headers and frames).
            5 => {
                let g = input.u8() as usize % files.len();
                let glen = files[g].1.len();
                let to = if glen == 0 {
                    0
                } else {
                    input.u32() as usize % glen
                };
                let n = (input.u16() as usize).min(len - off);
                let chunk = files[f].1[off..off + n].to_vec();
                if files[g].0.ends_with(".free") {
                    continue; // see "Rename": a spare holding live frames is not crash damage
                }
                let dst = &mut files[g].1;
                if dst.len() < to + n {
                    dst.resize(to + n, 0);
                }
                dst[to..to + n].copy_from_slice(&chunk);
            }
            // Delete the file.
            6 => {
                files.remove(f);
            }
            // Rename it to another segment name, or to an unfinished creation's. Not to a
            // spare's: a spare is reused as a later segment, and a live segment's frames in
            // it would sit at their own addresses again (no crash does that; see
            // docs/testing.md).
            7 => {
                let k = input.u8();
                let base =
                    u64::from_str_radix(files[f].0.get(..16).unwrap_or("0"), 16).unwrap_or(0);
                let new_base = base.wrapping_add(
                    (k as u64 % 5)
                        .wrapping_sub(2)
                        .wrapping_mul(SEGMENT_SIZE - 64),
                );
                files[f].0 = match k % 3 {
                    0 => format!("{new_base:016x}.seg.tmp"),
                    _ => format!("{new_base:016x}.seg"),
                };
                files.sort();
            }
            // Rebuild the header with a valid checksum and fuzz-chosen geometry.
            _ => {
                let data = &mut files[f].1;
                if data.len() < 64 {
                    data.resize(64, 0);
                }
                let which = input.u8();
                let v = input.u32() as u64;
                let (mut id, mut b, mut p, mut w, mut m) = (
                    u64_at(data, 16),
                    u64_at(data, 24),
                    u64_at(data, 32),
                    u64_at(data, 40),
                    u64_at(data, 48),
                );
                match which % 6 {
                    0 => b = b.wrapping_add(v << (which / 6 % 40)),
                    // A first segment smaller than one slot trips a known bug (see
                    // WORK_AROUND_SMALL_FIRST_SEGMENT); keep the payload above it meanwhile.
                    1 if WORK_AROUND_SMALL_FIRST_SEGMENT => p = (v << (which / 6 % 40)).max(2048),
                    1 => p = v << (which / 6 % 40),
                    2 => w = v << (which / 6 % 40),
                    3 => m = v << (which / 6 % 40),
                    4 => id ^= v,
                    // See WORK_AROUND_HUGE_WINDOW.
                    _ if WORK_AROUND_HUGE_WINDOW => w = (u64::MAX >> 2) - v,
                    _ => w = u64::MAX - v,
                }
                data[..64].copy_from_slice(&segment_header(id, b, p, w, m));
            }
        }
    }
    files
}

/// How a case ended (when it did not panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `open` refused the files with `Error::Corrupt`.
    Corrupt,
    /// `open` recovered this many records, all verified.
    Opened(usize),
}

/// One fuzz case: see the module docs.
pub fn check(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let base = &bases()[input.u8() as usize % bases().len()];
    let mode = if input.u8() % 4 == 0 {
        RecoveryMode::KeepValidPrefix
    } else {
        RecoveryMode::TolerateTornTail
    };
    let files = mutate(base, &mut input);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!(
            "base {} mode {mode:?}: files {:?}",
            base.name,
            files.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
        );
    }
    run(base, mode, &files)
}

/// While `true`, [`read_all`] steps around a known bug: `iter(Lsn::ZERO)` on a log whose end is
/// exactly the base of its first segment file (everything before was truncated, and recovery
/// cut the tail back to that base) reads the frame *at* the end instead of stopping, and fails
/// with `Corrupt` at offset 64 of that file. Set to `false` once `LogIter` checks
/// `pos < end` after moving to a segment's base.
pub const WORK_AROUND_ITER_AT_FIRST_BASE: bool = false;

/// While `true`, rebuilt segment headers keep `payload >= slot_size`, stepping around a known
/// bug: when the log's end `e` is in a segment that ends before one slot size (`seg_end <
/// slot_size`, e.g. the first segment of a log made with a smaller `slot_size`),
/// `LogBuffer::activate` computes the slot base `e - prefill` with `prefill = slot_size -
/// (seg_end - e) > e`: an arithmetic overflow (a panic with debug assertions).
pub const WORK_AROUND_SMALL_FIRST_SEGMENT: bool = false;

/// While `true`, rebuilt segment headers keep `window < 2^62`, stepping around a known bug:
/// `SegmentHeader::decode` does not bound `window`, and recovery computes `pos + window`
/// (an arithmetic overflow, a panic with debug assertions, a wrong "beyond the window"
/// verdict without).
pub const WORK_AROUND_HUGE_WINDOW: bool = false;

/// Every record of `log`; see [`WORK_AROUND_ITER_AT_FIRST_BASE`].
pub fn read_all(log: &Log) -> slotlog::Result<Vec<(Lsn, Vec<u8>)>> {
    let res: slotlog::Result<Vec<(Lsn, Vec<u8>)>> = log
        .iter(Lsn::ZERO)?
        .map(|r| r.map(|r| (r.lsn(), r.into_data())))
        .collect();
    if let (
        true,
        Err(slotlog::Error::Corrupt {
            path, offset: 64, ..
        }),
    ) = (WORK_AROUND_ITER_AT_FIRST_BASE, &res)
    {
        let end = log.end_lsn()?.as_u64();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == format!("{end:016x}.seg") {
            return log
                .iter(Lsn::from_u64(end))?
                .map(|r| r.map(|r| (r.lsn(), r.into_data())))
                .collect();
        }
    }
    res
}

/// Opens `files` as a log and checks everything read back against `base`.
pub fn run(base: &BaseLog, mode: RecoveryMode, files: &[(String, Vec<u8>)]) -> Outcome {
    let sim = SimStorage::new();
    for (name, bytes) in files {
        sim.write_file(&dir().join(name), bytes.clone());
    }
    let log = match Log::open(dir(), options(&sim, mode)) {
        Ok(log) => log,
        Err(e) if e.is_corrupt() => return Outcome::Corrupt,
        Err(e) => panic!("{}: open failed with a non-Corrupt error: {e}", base.name),
    };
    let got = read_all(&log)
        .unwrap_or_else(|e| panic!("{}: reading a recovered log failed: {e}", base.name));
    // Every record is the one appended at that lsn, and they are consecutive records of it.
    let mut expected_next: Option<u64> = None;
    for (lsn, data) in &got {
        let l = lsn.as_u64();
        match base.records.get(&l) {
            Some(orig) if orig == data => {}
            Some(_) => panic!(
                "{}: record at {l} differs from the one appended there",
                base.name
            ),
            None => panic!(
                "{}: record at {l} ({} bytes) was never appended",
                base.name,
                data.len()
            ),
        }
        if let Some(next) = expected_next {
            assert_eq!(
                l, next,
                "{}: records skipped between {next} and {l}",
                base.name
            );
        }
        expected_next = base.records.range(l + 1..).next().map(|(k, _)| *k);
    }
    // New appends go after the recovered records and read back, also after a clean reopen.
    let extra = payload(9999, 300);
    let lsn = log
        .append(&extra, Durability::FullSync)
        .unwrap_or_else(|e| panic!("{}: append after recovery: {e}", base.name));
    if let Some((last, _)) = got.last() {
        assert!(
            lsn > *last,
            "{}: new record at {lsn} not after the recovered {last}",
            base.name
        );
    }
    let recovered = got.len();
    let mut want = got;
    want.push((lsn, extra));
    log.close()
        .unwrap_or_else(|e| panic!("{}: close: {e}", base.name));
    let log = Log::open(dir(), options(&sim, mode))
        .unwrap_or_else(|e| panic!("{}: reopen after recovery: {e}", base.name));
    let again = read_all(&log)
        .unwrap_or_else(|e| panic!("{}: reading after the reopen failed: {e}", base.name));
    assert!(
        again == want,
        "{}: after recovery, an append and a clean reopen the log reads differently",
        base.name
    );
    drop(log);
    Outcome::Opened(recovered)
}
