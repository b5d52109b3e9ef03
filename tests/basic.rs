//! Round trips through `open`, `append`, `close` and `iter`.

use std::sync::Arc;

use slotlog::{Durability, Log, Lsn, Options};

mod common;
use common::read_all;

fn small() -> Options {
    Options::default()
        .segment_size(256 << 10)
        .slot_size(8 << 10)
        .slot_pool(4)
        .max_record_size(100 << 10)
}

#[test]
fn single_thread_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let mut expect = Vec::new();
    for i in 0..3000u32 {
        let len = (i as usize * 37) % 3000;
        let data: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
        let d = [
            Durability::NoSync,
            Durability::WriteOnly,
            Durability::FullSync,
        ][(i % 7 == 0) as usize + (i % 31 == 0) as usize];
        let lsn = log.append(&data, d).unwrap();
        expect.push((lsn, data));
    }
    log.close().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    assert_eq!(read_all(&log), expect);
    // appending continues after the recovered end
    let lsn = log.append(b"more", Durability::FullSync).unwrap();
    assert!(lsn > expect.last().unwrap().0);
    log.close().unwrap();
}

#[test]
fn many_threads_mixed_durability_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small()).unwrap());
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..400u32 {
                    let len = [0, 1, 100, 5000, 20_000, 90_000][(i as usize * 7 + t as usize) % 6];
                    let mut data = vec![(t * 31 + i) as u8; len];
                    if len >= 8 {
                        data[..4].copy_from_slice(&t.to_le_bytes());
                        data[4..8].copy_from_slice(&i.to_le_bytes());
                    }
                    let d = [
                        Durability::NoSync,
                        Durability::WriteOnly,
                        Durability::FullSync,
                    ][(i % 3) as usize];
                    mine.push((log.append(&data, d).unwrap(), data));
                }
                mine
            })
        })
        .collect();
    let mut expect: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    expect.sort_by_key(|(l, _)| *l);
    let stats = log.stats();
    Arc::try_unwrap(log).unwrap().close().unwrap();
    assert_eq!(stats.appends, 3200);
    let log = Log::open(dir.path(), small()).unwrap();
    assert_eq!(read_all(&log), expect);
}

#[test]
fn iter_from_any_lsn_returns_exactly_the_records_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let mut expect = Vec::new();
    for i in 0..2000u32 {
        let data = vec![i as u8; (i as usize * 13) % 700];
        expect.push((log.append(&data, Durability::NoSync).unwrap(), data));
    }
    log.flush().unwrap();
    for k in [0usize, 1, 17, 500, 1999] {
        let from = expect[k].0;
        let got: Vec<_> = log.iter(from).unwrap().map(|r| r.unwrap().lsn()).collect();
        let want: Vec<_> = expect[k..].iter().map(|(l, _)| *l).collect();
        assert_eq!(got, want, "iter({from})");
        // An address inside a record starts at the next record.
        let inside = Lsn::from_u64(from.as_u64() + 1);
        let got: Vec<_> = log
            .iter(inside)
            .unwrap()
            .map(|r| r.unwrap().lsn())
            .collect();
        assert_eq!(got, want[1..], "iter({inside})");
    }
    log.close().unwrap();
}

#[test]
fn truncate_front_drops_whole_segments_and_recycles_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || small().recycle_segments(2);
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut lsns = Vec::new();
    for i in 0..4000u32 {
        lsns.push(log.append(&[i as u8; 300], Durability::NoSync).unwrap());
    }
    log.flush().unwrap();
    let segs = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    };
    let before = segs(dir.path());
    assert!(
        before.len() >= 4,
        "the records span several segments: {before:?}"
    );
    assert_eq!(log.start_lsn(), lsns[0]);
    let cut = lsns[3000];
    let recycled_before = log.stats().segments_recycled;
    let removed = log.truncate_front(cut).unwrap();
    assert!(removed >= 2, "removed {removed}");
    // The oldest `removed` files are gone, the rest are kept (the preparer may have added one).
    let after = segs(dir.path());
    assert!(
        before[..removed].iter().all(|n| !after.contains(n)),
        "{before:?} -> {after:?}"
    );
    assert!(
        before[removed..].iter().all(|n| after.contains(n)),
        "{before:?} -> {after:?}"
    );
    // Every record from `cut` on is still there; the first remaining one starts a segment.
    let got: Vec<Lsn> = log
        .iter(Lsn::ZERO)
        .unwrap()
        .map(|r| r.unwrap().lsn())
        .collect();
    assert!(got.first().unwrap() <= &cut);
    assert_eq!(
        log.start_lsn(),
        got[0],
        "the oldest record left starts the first segment"
    );
    assert_eq!(got.last(), lsns.last());
    assert!(lsns[3000..].iter().all(|l| got.contains(l)));
    // Appending on reuses the kept files instead of zero-filling new ones (counted from before
    // the truncation: the background preparer may reuse one at once).
    for i in 0..6000u32 {
        log.append(&[i as u8; 300], Durability::NoSync).unwrap();
    }
    log.flush().unwrap();
    assert!(log.stats().segments_recycled > recycled_before);
    log.close().unwrap();
    // The reused files hold stale frames of old addresses: none may come back.
    let log = Log::open(dir.path(), opts()).unwrap();
    let n = log
        .iter(Lsn::ZERO)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.lsn() >= cut)
        .count();
    assert_eq!(n, 1000 + 6000);
    let first = log.iter(Lsn::ZERO).unwrap().next().unwrap().unwrap().lsn();
    assert_eq!(log.start_lsn(), first, "after reopening");
    log.close().unwrap();
}

#[test]
fn stats_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let started = std::time::Instant::now();
    for i in 0..100u32 {
        log.append(
            &[1; 10],
            if i % 10 == 0 {
                Durability::FullSync
            } else {
                Durability::NoSync
            },
        )
        .unwrap();
    }
    log.append(&vec![2; 50_000], Durability::WriteOnly).unwrap(); // > slot_size / 2: unbuffered
    let s = log.stats();
    assert_eq!(s.appends, 101);
    assert_eq!(s.bytes, 100 * 10 + 50_000);
    assert_eq!(s.full_sync_appends, 10);
    assert_eq!(s.write_only_appends, 1);
    assert_eq!(s.unbuffered_records, 1);
    assert!(s.fdatasyncs >= 1 && s.fdatasyncs <= 10, "{s:?}");
    // One fdatasync runs at a time, so their total time fits in the time the appends took.
    assert!(s.fdatasync_nanos > 0, "{s:?}");
    assert!(
        s.fdatasync_nanos <= started.elapsed().as_nanos() as u64,
        "{s:?}"
    );
    assert_eq!(
        s.mean_fdatasync().as_nanos() as u64,
        s.fdatasync_nanos / s.fdatasyncs
    );
    assert!(s.writes >= 11, "{s:?}");
    assert!(s.records_per_write() > 1.0 || s.writes > 0);
    log.close().unwrap();
}

#[test]
fn segment_stats_account_for_every_segment_file() {
    // Each segment file is installed from a spare (zero-filled or recycled) or made sparse, and
    // `segments_unprepared` counts only the writers' own installs: the segment after the one
    // being written is the preparer's, made sparse in a log that never fdatasyncs.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small().recycle_segments(0)).unwrap();
    let segment_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count() as u64
    };
    let payload = (256 << 10) - 64; // segment size minus its header (docs/format.md)
    while log.end_lsn().unwrap().as_u64() < 6 * payload + 1000 {
        log.append(&[7; 1000], Durability::WriteOnly).unwrap();
    }
    // The writer is in segment 6 (counting from 0): wait until the preparer has made segment 7
    // (its file is renamed into place before it is counted), bounded by a hang detector.
    common::wait_for_segments(&log, 8);
    let installed = |s: slotlog::Stats| s.segments_recycled + s.segments_sparse;
    let s = log.stats();
    assert_eq!(installed(s.clone()), segment_files(), "{s:?}");
    assert_eq!(
        s.segments_created, 1,
        "only the first segment is zero-filled: {s:?}"
    );
    assert!(
        s.segments_unprepared < s.segments_sparse,
        "the preparer's sparse segment was counted as a writer's: {s:?}"
    );
    log.close().unwrap();
}

#[test]
fn no_sync_records_reach_the_file_without_a_later_call() {
    // With the flusher on, a NoSync record is written within about two intervals; the test
    // waits for the written frontier (observed through a second reader handle of the files),
    // bounded by a generous hang detector, not a sleep.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        small().flush_interval(Some(std::time::Duration::from_millis(5))),
    )
    .unwrap();
    let lsn = log.append(b"lonely", Durability::NoSync).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if log
            .iter(Lsn::ZERO)
            .unwrap()
            .any(|r| r.unwrap().lsn() == lsn)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher never wrote the record: {}",
            log.debug_state()
        );
        std::thread::yield_now();
    }
    log.close().unwrap();
}

/// `truncate_front` racing appends and the preparer, on small segments: a truncation can
/// remove the segment of records that are still buffered, or of the address the preparer read
/// as "the last segment's end" a moment before. Writing such an address used to create
/// segments from the end of the log until one held it, which never happens (found by the
/// recycled-segment power-cut test, where it filled memory; on a disk it fills the disk). Now
/// the write is dropped (the records were truncated) and the log stays bounded.
#[test]
fn truncate_front_racing_appends_keeps_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_size(32 << 10)
        .slot_size(4096)
        .slot_pool(4)
        .max_record_size(4096)
        .recycle_segments(2)
        .flush_interval(None);
    let log = Arc::new(Log::open(dir.path(), opts).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let truncator = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut truncations = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let end = log.end_lsn().unwrap();
                log.truncate_front(end).unwrap();
                truncations += 1;
            }
            truncations
        })
    };
    let appenders: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let rec = common::payload(t << 32 | i, 50 + (i % 200) as usize);
                    log.append(&rec, Durability::NoSync).unwrap();
                }
            })
        })
        .collect();
    for a in appenders {
        a.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(truncator.join().unwrap() > 0);
    log.flush().unwrap();
    // The truncator's last pass may have run well before the last appends (it can be
    // descheduled for milliseconds, ~30 segments here): truncate once more now that nothing
    // races it, so the count below depends on the log's bookkeeping, not on scheduling (this
    // failed ~3% of runs on a loaded machine with 7–10 files).
    log.truncate_front(log.end_lsn().unwrap()).unwrap();
    let segment_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".seg")
        })
        .count();
    assert!(
        segment_files <= 4,
        "{segment_files} segment files after truncating to the end"
    );
    // Whatever is still kept reads back intact.
    for (_, data) in read_all(&log) {
        common::verify(&data);
    }
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
}

/// The default slot is 1 MiB, or a quarter of a smaller segment: a log with small segments
/// opens without a slot size, and the slot size shows where records stop being copied (frames
/// over half a slot are unbuffered).
#[test]
fn the_default_slot_size_fits_the_segment() {
    let unbuffered_after = |options: Options, lens: &[usize]| {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), options).unwrap();
        let mut expect = Vec::new();
        let mut counts = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let data = vec![i as u8 + 1; len];
            expect.push((log.append(&data, Durability::WriteOnly).unwrap(), data));
            counts.push(log.stats().unbuffered_records);
        }
        log.close().unwrap();
        let log = Log::open(dir.path(), Options::default()).unwrap();
        assert_eq!(read_all(&log), expect);
        counts
    };
    // 64 MiB segments (the default): 1 MiB slots, frames over 512 KiB bypass them.
    assert_eq!(
        unbuffered_after(Options::default(), &[200 << 10, 500 << 10, 600 << 10]),
        [0, 0, 1]
    );
    // 256 KiB segments: 64 KiB slots, frames over 32 KiB bypass them.
    let small_segments = Options::default()
        .segment_size(256 << 10)
        .max_record_size(100 << 10);
    assert_eq!(
        unbuffered_after(small_segments.clone(), &[30 << 10, 40 << 10]),
        [0, 1]
    );
    assert!(format!("{small_segments:?}").contains("slot_size: 65536"));
    // A slot size that is set is kept, and checked against the segment.
    let too_big = small_segments.slot_size(1 << 20);
    assert!(matches!(
        Log::open(tempfile::tempdir().unwrap().path(), too_big),
        Err(slotlog::Error::InvalidOptions(_))
    ));
}

/// `end_lsn` does not wait for a rotation: with every pool entry in flight (three slot writers
/// held inside their writes), the appender that closed the active slot waits for a free entry,
/// and `end_lsn` returns the closed slot's end at once. (Until 2026-12-07 it parked until the
/// rotation finished; under 64 NoSync appenders a benchmark's checkpointer spent up to 73 ms in
/// one call.)
#[test]
fn end_lsn_does_not_wait_for_a_rotation() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let gate = common::WriteGate::default();
    let opts = Options::default()
        .storage(gate.storage())
        .segment_size(1 << 20)
        .slot_size(4 << 10)
        .slot_pool(3)
        .max_record_size(1 << 10)
        .lanes(0)
        .flush_interval(None);
    let log = Arc::new(Log::open("/end-lsn", opts).unwrap());
    // Stops the appenders and opens the gate when dropped, so that a failed assertion leaves
    // neither the log's drop (which writes) nor an appender held, nor appenders running on.
    struct Open(common::WriteGate, Arc<AtomicBool>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.1.store(true, Ordering::Relaxed);
            self.0.open();
        }
    }
    const FRAME: u64 = 16 + 100;
    let stop = Arc::new(AtomicBool::new(false));
    gate.hold();
    let open = Open(gate.clone(), stop.clone());
    // Appender k appends until its own append blocks (in a held write, or in the rotation),
    // sending each address it got back.
    let spawn_appender = |k: u8| {
        let (log, stop) = (log.clone(), stop.clone());
        let (tx, rx) = mpsc::channel::<Lsn>();
        let h = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                tx.send(log.append(&[k; 100], Durability::NoSync).unwrap())
                    .unwrap();
            }
        });
        (h, rx)
    };
    // Each of the first two fills a slot, closes it, rotates, and is held writing it.
    let (t1, _rx1) = spawn_appender(1);
    gate.wait_for_writers(1);
    let (t2, _rx2) = spawn_appender(2);
    gate.wait_for_writers(2);
    // The third fills slot 2 and closes it; its rotation needs entry 0, still being written.
    let (t3, lsns3) = spawn_appender(3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.stats().pool_waits == 0 {
        assert!(Instant::now() < deadline, "no rotation waited for the pool");
        std::thread::yield_now();
    }
    let (tx, rx) = mpsc::channel();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || tx.send(log.end_lsn().unwrap()).unwrap())
    };
    let end = rx.recv_timeout(Duration::from_secs(20));
    // Read while the third appender still waits in its rotation: once the gate opens, it
    // appends on at the closed slot's end.
    let last3 = lsns3.try_iter().last();
    drop(open);
    let end = end.expect("end_lsn waited for the rotation");
    reader.join().unwrap();
    // The end of slot 2: right after the last record the third appender got back.
    let last3 = last3.expect("the third appender's records");
    assert_eq!(end.as_u64(), last3.as_u64() + FRAME);
    for t in [t1, t2, t3] {
        t.join().unwrap();
    }
    log.flush().unwrap();
}

/// An iterator reading a segment that `truncate_front` removes, whose file is then reused for
/// new appends, ends with `Error::Truncated`: never with a record that was not there, with
/// `Error::Corrupt` for a healthy log, or by skipping to the new start. Found by review
/// (2026-12-07): it reported the rewritten file as a checksum mismatch. With 256 KiB segments
/// the reader holds its whole segment in its buffer and notices at the next segment; with
/// 1 MiB ones it reads the rewritten file in the middle of a segment.
#[test]
fn an_iterator_overtaken_by_truncate_front_reports_truncation() {
    for segment in [256 << 10, 1 << 20] {
        iterator_overtaken_case(segment);
    }
}

fn iterator_overtaken_case(segment: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        small().segment_size(segment).recycle_segments(2),
    )
    .unwrap();
    let record = |i: u32| {
        let mut r = vec![(i % 251) as u8; 300 + (i % 7) as usize];
        r[..4].copy_from_slice(&i.to_le_bytes());
        r
    };
    let mut written = std::collections::HashMap::new();
    let mut i = 0u32;
    while log.end_lsn().unwrap().as_u64() < 3 * segment {
        written.insert(log.append(&record(i), Durability::NoSync).unwrap(), i);
        i += 1;
    }
    log.flush().unwrap();
    let mut iter = log.iter(slotlog::Lsn::ZERO).unwrap();
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first.data(), &record(written[&first.lsn()])[..]);
    // Every segment but the last goes; two of their files are reused by the appends below,
    // which write over their old records. (Counted from before the call: the preparer may
    // install a spare the moment the call offers it, before this thread reads the stats; a
    // count read after the call then waited for a third reuse that never came, 2 runs in 60.)
    let recycled = log.stats().segments_recycled;
    let removed = log.truncate_front(log.end_lsn().unwrap()).unwrap();
    assert!(removed >= 2, "removed {removed}");
    let start = log.start_lsn();
    // At least four segments on, and until two files were reused: under load the preparer can
    // make a new sparse segment or two before `truncate_front` offers its spares (a CI run
    // failed here with a fixed four).
    while log.end_lsn().unwrap().as_u64() < 7 * segment
        || log.stats().segments_recycled < recycled + 2
    {
        assert!(
            log.end_lsn().unwrap().as_u64() < 20 * segment,
            "the removed files were never reused: {:?}",
            log.stats()
        );
        log.append(&record(i), Durability::NoSync).unwrap();
        i += 1;
    }
    log.flush().unwrap();
    let mut read = 1;
    let end = loop {
        match iter.next() {
            Some(Ok(r)) => {
                // Whatever it still returns is a record that was written there.
                assert!(
                    r.lsn() < start,
                    "segment {segment}: {:?} is past the cut",
                    r.lsn()
                );
                assert_eq!(r.data(), &record(written[&r.lsn()])[..], "at {:?}", r.lsn());
                read += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("segment {segment}: the iterator ended quietly after {read} records"),
        }
    };
    match end {
        slotlog::Error::Truncated { lsn, start: s } => {
            assert!(lsn < start, "{lsn:?} vs {start:?}");
            assert_eq!(s, start);
        }
        other => panic!("segment {segment}: after {read} records: {other}"),
    }
    assert!(iter.next().is_none());
    // A new iterator from the start reads the log as it is now.
    let now = read_all(&log);
    assert_eq!(now.first().map(|r| r.0), Some(start));
    log.close().unwrap();
}
