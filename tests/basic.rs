//! Round trips through `open`, `append`, `close` and `iter`.

use std::sync::Arc;

use slotlog::{Durability, Log, Lsn, Options};

fn small() -> Options {
    Options::default()
        .segment_size(256 << 10)
        .slot_size(8 << 10)
        .slot_pool(4)
        .max_record_size(100 << 10)
}

fn read_all(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.iter(Lsn::ZERO)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn(), r.into_data())))
        .collect::<slotlog::Result<_>>()
        .unwrap()
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
