//! When waiters close the active slot ("When to close" in `docs/design.md`), observed through a
//! sink whose first write is held open: what can run while one write is in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use slotlog::protocol::{BufferConfig, Level, LogBuffer, Sink};

const HEADER: usize = 16;

/// Every write the sink has begun, as `(address, bytes)`, and whether the first may finish.
#[derive(Default)]
struct Writes {
    started: Vec<(u64, usize)>,
    first_may_finish: bool,
}

/// A sink that records writes and holds the first one until the test lets it finish.
#[derive(Clone, Default)]
struct HeldSink(Arc<(Mutex<Writes>, Condvar)>);

impl HeldSink {
    /// Waits until at least `n` writes have begun, or `deadline` passes (then the test fails:
    /// the deadline is a bound for a failure, not a synchronisation).
    fn await_started(&self, n: usize, deadline: Instant) -> Vec<(u64, usize)> {
        let (lock, cv) = &*self.0;
        let mut w = lock.lock();
        while w.started.len() < n {
            if cv.wait_until(&mut w, deadline).timed_out() {
                break;
            }
        }
        w.started.clone()
    }

    fn let_first_finish(&self) {
        let (lock, cv) = &*self.0;
        lock.lock().first_may_finish = true;
        cv.notify_all();
    }
}

impl Sink for HeldSink {
    fn header_len(&self) -> usize {
        HEADER
    }
    // Nothing reads the frames back here: a header needs only its size.
    fn record_header(&self, _lsn: u64, _data: &[u8]) -> [u8; HEADER] {
        [0; HEADER]
    }
    fn pad_header(&self, _lsn: u64, _total: u64) -> Option<[u8; HEADER]> {
        None // no padding: the one segment is never reached
    }
    fn segment_end(&self, _lsn: u64) -> u64 {
        1 << 40 // one segment, never reached here
    }
    fn write(&self, lsn: u64, parts: &[&[u8]]) -> slotlog::Result<()> {
        let (lock, cv) = &*self.0;
        let mut w = lock.lock();
        w.started.push((lsn, parts.iter().map(|p| p.len()).sum()));
        cv.notify_all();
        if w.started.len() == 1 {
            while !w.first_may_finish {
                cv.wait(&mut w);
            }
        }
        Ok(())
    }
    fn sync(&self, _from: u64, _to: u64) -> slotlog::Result<()> {
        Ok(())
    }
}

/// With 1 MiB slots that many writers never fill, waiters that closed only on an idle pipe
/// allowed one write at a time. A slot holding 256 KiB is closed and written while the write
/// before it is still running.
#[test]
fn a_batch_of_256_kib_is_written_beside_a_running_write() {
    let sink = HeldSink::default();
    let config = BufferConfig {
        slot_size: 1 << 20,
        slot_pool: 4,
        lanes: 0,
        lane_chunk: 8 << 10,
        max_unsynced: None,
    };
    let buf = Arc::new(LogBuffer::new(sink.clone(), config, 0));
    let deadline = Instant::now() + Duration::from_secs(60);

    // One small WriteOnly record: its appender closes the slot (the pipe is idle) and runs the
    // write, which the sink holds.
    let first = {
        let buf = buf.clone();
        std::thread::spawn(move || buf.append(&[1u8; 100], Some(Level::Written)).unwrap())
    };
    assert_eq!(sink.await_started(1, deadline).len(), 1);

    // Five 64 KiB WriteOnly records join the next slot while that write runs: the pipe is busy,
    // so none of them closes it until the slot holds 256 KiB (the fourth).
    let record = vec![2u8; 64 << 10];
    let batch: Vec<_> = (0..5)
        .map(|_| {
            let (buf, record) = (buf.clone(), record.clone());
            std::thread::spawn(move || buf.append(&record, Some(Level::Written)).unwrap())
        })
        .collect();
    let started = sink.await_started(2, deadline);
    let beside = started.get(1).copied();
    sink.let_first_finish();
    let first_lsn = first.join().unwrap();
    let mut lsns: Vec<u64> = batch.into_iter().map(|t| t.join().unwrap()).collect();
    lsns.sort_unstable();

    let frame = (HEADER + record.len()) as u64;
    let (second_at, second_len) =
        beside.expect("no second write began while the first was held: the batch waited");
    assert_eq!(started[0], (first_lsn, HEADER + 100));
    assert_eq!(second_at, first_lsn + HEADER as u64 + 100);
    assert!(
        second_len as u64 >= 4 * frame,
        "the second write held {second_len} bytes, less than 256 KiB of records"
    );
    // Every record is written, each once, in log order.
    let all = sink.await_started(usize::MAX, Instant::now());
    let mut end = first_lsn;
    for (at, len) in &all {
        assert_eq!(*at, end, "writes {all:?} leave a gap or overlap");
        end += *len as u64;
    }
    assert_eq!(end, lsns[4] + frame);
}

/// Under a bound on unsynced bytes, an unbuffered record whose reservation (up to two frames
/// per pool entry) could not fit the bound is refused: its writer's wait would need bytes not
/// yet written. `Log` never gets here (`Options` refuses such a bound for its
/// `max_record_size`); a caller of the protocol alone gets an error, not a silent overrun.
#[test]
fn the_protocol_refuses_an_unbuffered_record_too_large_for_the_unsynced_bound() {
    let config = BufferConfig {
        slot_size: 64,
        slot_pool: 3,
        lanes: 0,
        lane_chunk: 16,
        max_unsynced: Some(192),
    };
    let sink = HeldSink::default();
    sink.let_first_finish();
    let buf = LogBuffer::new(sink, config, 0);
    // 192 / (2 × 3) = 32-byte frames at most: 16 bytes of record.
    match buf.append(&[7u8; 1000], Some(Level::Durable)) {
        Err(slotlog::Error::RecordTooLarge { len: 1000, max: 16 }) => {}
        other => panic!("expected RecordTooLarge {{ len: 1000, max: 16 }}, got {other:?}"),
    }
    // Buffered records are not affected, and the log is not poisoned.
    buf.append(&[7u8; 10], Some(Level::Durable)).unwrap();
    buf.append(&[7u8; 16], Some(Level::Durable)).unwrap();
}
