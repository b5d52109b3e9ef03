//! The slot protocol: joining, copying, releasing, closing, rotating, writing, the written and
//! durable frontiers, and waiting. `docs/design.md` is the specification of this module; the
//! section names in comments refer to it.
//!
//! Everything here goes through [`crate::sync`], so the loom models in `loom-tests/` run this
//! exact code. Files are behind [`Sink`], so the models need no syscalls.

use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};
use crate::format::FRAME_HEADER_LEN;
use crate::slot::{Slot, State, CLOSED};
use crate::stats::Counters;
use crate::sync::{
    spin_hint, AtomicBool, AtomicU64, Event, Mutex, MutexGuard, Ordering, SPIN_LIMIT,
    WRITTEN_SPIN_LIMIT,
};
use crate::waiters::{Level, Passed, Sleeper, WaitList, Work};

mod lanes;
mod tasks;
pub use tasks::TaskWait;

/// Where slot bytes go, and how frames are made. The real one is the segment files; the loom
/// models use an in-memory one.
pub trait Sink: Send + Sync + 'static {
    /// Bytes of a record frame header (at most `FRAME_HEADER_LEN`, 16: the array that
    /// `record_header` returns).
    fn header_len(&self) -> usize;
    /// The header of a record frame at `lsn`.
    fn record_header(&self, lsn: u64, data: &[u8]) -> [u8; FRAME_HEADER_LEN];
    /// The header of a padding frame covering `total` bytes at `lsn`, or `None` if `total` is
    /// too small to hold one (then the reader skips it without a header).
    fn pad_header(&self, lsn: u64, total: u64) -> Option<[u8; FRAME_HEADER_LEN]>;
    /// The end of the segment that holds address `lsn`: no frame may cross it.
    fn segment_end(&self, lsn: u64) -> u64;
    /// Writes `parts`, one after the other, at log address `lsn`.
    fn write(&self, lsn: u64, parts: &[&[u8]]) -> Result<()>;
    /// Makes everything written in `from..to` durable.
    fn sync(&self, from: u64, to: u64) -> Result<()>;
}

/// Sizes of the pool.
#[derive(Clone, Copy, Debug)]
pub struct BufferConfig {
    /// Buffer bytes per slot.
    pub slot_size: usize,
    /// Slots in the pool (at least 3).
    pub slot_pool: usize,
    /// Per-CPU lanes for small NoSync records; 0 turns them off ("Lanes").
    pub lanes: usize,
    /// Bytes of a lane's chunk (at most a quarter of a slot); records of frames up to a quarter
    /// of it go through the lanes.
    pub lane_chunk: usize,
    /// At most this many bytes written and not durable ("Bounded unsynced bytes"); `None`: no
    /// bound. Must be at least the in-flight window (every pool entry's worth of slot or
    /// extent), so that a writer's wait never needs a write behind its own.
    pub max_unsynced: Option<u64>,
}

/// Why a closer closes; decides what the rotation reserves after the closed slot.
#[derive(Clone, Copy)]
enum CloseFor {
    /// A waiter, `flush`, or the flusher: nothing more.
    Plain,
    /// A joiner whose frame of this size did not fit: pad to the segment end if it cannot fit
    /// in what is left of the segment either.
    Fit(u64),
    /// An unbuffered record of this frame size: reserve it right after the closed slot.
    Unbuffered(u64),
}

/// Bytes in the active slot at which a waiter closes it even while an earlier slot is being
/// written ("When to close", rule 2): with many writers and slots too large to fill, waiting for
/// an idle pipe would allow one write at a time; at this size two can run, as when slots of this
/// size closed full. A guard for bursts larger than this machine's benchmarks reach (there a
/// WriteOnly write holds ~2 records): `docs/performance-analysis.md`, "2026-12-06 (night)".
#[cfg(not(slotlog_shuttle))]
const CLOSE_BUSY_AT: u64 = 256 << 10;
/// Shuttle's schedules use slots of 8–32 bytes: a batch of 8 makes them close beside running
/// writes too. (The loom models keep the real value, so their state spaces do not change.)
#[cfg(slotlog_shuttle)]
const CLOSE_BUSY_AT: u64 = 8;

/// Who is appending or closing. A thread may run the fdatasync its slot's joiners asked for
/// right after writing the slot; a task must not block its executor thread in one, so it leaves
/// the fdatasync to the durable waiters (threads, or the driver thread for tasks: "Async waits").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Thread,
    Task,
}

/// Log space reserved at a rotation for one thread, outside any slot buffer: an unbuffered
/// record and/or the padding at a segment end. It has its own sequence number, so the frontier
/// passes it like a slot.
struct Extent {
    seq: u64,
    /// Padding `(lsn, bytes)` before the record, if the segment's rest was too small.
    pad: Option<(u64, u64)>,
    /// Where the unbuffered record goes, if any.
    record: Option<u64>,
    end: u64,
}

/// What the slot-ring mutex protects: which sequence numbers are written but not yet passed by
/// the written frontier ("The frontier").
struct Ring {
    /// Lowest sequence number the written frontier has not passed.
    lowest: u64,
    /// Per pool entry: the end address of its incarnation once written, until passed.
    done: Vec<Option<u64>>,
}

/// The slot-based log buffer.
pub struct LogBuffer<S: Sink> {
    sink: S,
    slots: Box<[Slot]>,
    slot_size: u64,
    /// Frames larger than this bypass the buffers.
    unbuffered_over: u64,
    /// [`BufferConfig::max_unsynced`], `u64::MAX` for none.
    max_unsynced: u64,
    /// The largest unbuffered frame that bound allows: `max_unsynced / (2 × pool entries)`.
    bounded_frame: u64,
    lanes: lanes::Lanes,
    lane_chunk: u64,
    /// NoSync frames up to this go through a lane.
    lane_frame_max: u64,
    /// This log's id for the per-thread floor (`sync::thread_floor`).
    id: u64,
    /// Sequence number of the active slot.
    active: CachePadded<AtomicU64>,
    ring: Mutex<Ring>,
    /// Every byte below is written to the sink.
    written: CachePadded<AtomicU64>,
    /// Every byte below is durable.
    durable: CachePadded<AtomicU64>,
    /// An fdatasync is running.
    syncing: AtomicBool,
    /// The lowest sequence number the durable frontier has not passed. Owned by the thread
    /// that holds `syncing`.
    durable_seq: AtomicU64,
    poisoned: AtomicBool,
    poison: OnceLock<std::sync::Arc<Error>>,
    waiters: WaitList,
    /// Notified when a new slot becomes active.
    rotated: Event,
    /// Notified when the written frontier frees pool entries.
    freed: Event,
    pub(crate) counters: Counters,
    /// What the driver thread works toward for waiting tasks ("Async waits").
    driver: tasks::Driver,
}

/// What [`LogBuffer::try_join`] found.
enum Join<'a> {
    Joined(Ticket<'a>),
    /// Slot `seq` was closed, and still the active one, when we looked.
    Rotating(u64),
}

/// Where a join landed.
struct Ticket<'a> {
    slot: &'a Slot,
    seq: u64,
    offset: u64,
    lsn: u64,
    /// The join's CAS failed at least once: another thread joined at the same time.
    contended: bool,
}

impl<S: Sink> LogBuffer<S> {
    /// A buffer whose log continues at address `start` (everything before it is written and
    /// durable).
    pub fn new(sink: S, config: BufferConfig, start: u64) -> Self {
        assert!(config.slot_pool >= 3, "slot_pool must be at least 3");
        assert!(config.slot_size as u64 <= crate::slot::MAX_SLOT_SIZE);
        assert!(
            config.lanes == 0
                || (config.lanes <= crate::options::MAX_LANES
                    && config.lane_chunk <= config.slot_size / 4
                    && config.lane_chunk as u64 <= lanes::MAX_CHUNK
                    && config.lane_chunk / 4 > sink.header_len()),
            "at most MAX_LANES lanes, and lane_chunk must fit four times in a slot and hold a frame with data"
        );
        assert!(
            config.max_unsynced.unwrap_or(u64::MAX)
                >= config.slot_pool as u64 * config.slot_size as u64,
            "max_unsynced must be at least slot_pool × slot_size (unbuffered frames are checked as they come)"
        );
        let n = config.slot_pool;
        let buffer = LogBuffer {
            slots: (0..n).map(|_| Slot::new(config.slot_size)).collect(),
            slot_size: config.slot_size as u64,
            unbuffered_over: (config.slot_size / 2).max(sink.header_len() + 1) as u64,
            max_unsynced: config.max_unsynced.unwrap_or(u64::MAX),
            bounded_frame: config.max_unsynced.unwrap_or(u64::MAX) / (2 * n as u64),
            lanes: lanes::new_lanes(config.lanes),
            lane_chunk: config.lane_chunk as u64,
            lane_frame_max: (config.lane_chunk / 4) as u64,
            id: crate::sync::next_log_id(),
            sink,
            active: CachePadded::new(AtomicU64::new(0)),
            ring: Mutex::new(Ring {
                lowest: 0,
                done: vec![None; n],
            }),
            written: CachePadded::new(AtomicU64::new(start)),
            durable: CachePadded::new(AtomicU64::new(start)),
            syncing: AtomicBool::new(false),
            durable_seq: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            poison: OnceLock::new(),
            waiters: WaitList::new(),
            rotated: Event::new(),
            freed: Event::new(),
            counters: Counters::new(),
            driver: tasks::Driver::new(),
        };
        buffer.activate(0, start);
        buffer
    }

    /// The buffer's counters (the segment fields of [`crate::Stats`] stay zero).
    pub fn stats(&self) -> crate::Stats {
        self.counters.snapshot()
    }

    /// The sink this buffer writes to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn n(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq % self.n()) as usize]
    }

    /// The written frontier.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The durable frontier.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    // ----- errors ------------------------------------------------------------------------

    pub(crate) fn check_poison(&self) -> Result<()> {
        // Acquire: pairs with the Release store in `poison`, so the error value is visible.
        if self.poisoned.load(Ordering::Acquire) {
            let cause = self.poison.get().expect("poisoned without a cause").clone();
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    /// Records the first I/O failure, fails every waiter and every later call. The frontiers
    /// never move again, so no acknowledgement can follow the failure.
    fn poison(&self, err: Error) -> Error {
        let cause = self.poison.get_or_init(|| std::sync::Arc::new(err)).clone();
        // Release: publishes `poison` to the Acquire load in `check_poison`.
        self.poisoned.store(true, Ordering::Release);
        self.waiters.wake_all();
        self.rotated.notify_all();
        self.freed.notify_all();
        self.wake_lane_waiters();
        self.driver.poke();
        Error::Poisoned { cause }
    }

    /// Runs `work`, which other threads may depend on (a slot write, an fdatasync, closing a
    /// slot, a background thread's loop); if it unwinds, poisons the log with `cause` on the
    /// way out. A panic there (a bug in slotlog or in a user `Storage`) would otherwise leave a
    /// closed slot unwritten or `syncing` set for good, and every waiter, `close` and `Drop`
    /// would wait forever ("Why no thread waits forever").
    pub(crate) fn poison_if_unwinds<T>(&self, cause: Error, work: impl FnOnce() -> T) -> T {
        let guard = PoisonOnUnwind {
            buffer: self,
            cause: Some(cause),
        };
        let result = work();
        guard.done();
        result
    }

    // ----- appending ("Joining", "Copying and releasing") ----------------------------------

    /// Appends one record and waits for `level`; returns its address.
    pub fn append(&self, data: &[u8], level: Option<Level>) -> Result<u64> {
        let (lsn, end, unit) = self.place(data, level, Caller::Thread)?;
        if let Some(level) = level {
            self.wait(end, level, Some(unit))?;
        }
        Ok(lsn)
    }

    /// Puts one record into the log without waiting for any frontier. Returns its address, its
    /// end, and the sequence number of the slot or extent that holds it. `level` is what the
    /// caller will wait for (it tells the slot's writer whether to run an fdatasync).
    fn place(&self, data: &[u8], level: Option<Level>, caller: Caller) -> Result<(u64, u64, u64)> {
        self.check_poison()?;
        let frame = (self.sink.header_len() + data.len()) as u64;
        let (lsn, unit) = if frame > self.unbuffered_over {
            // Under a bound on unsynced bytes, every pool entry's worth of reserved space (an
            // unbuffered frame after at most a padding shorter than it) must fit the bound N
            // times ("Bounded unsynced bytes"). `Log` validates this for `max_record_size`;
            // here it holds for callers of the protocol alone too.
            if frame > self.bounded_frame {
                return Err(Error::RecordTooLarge {
                    len: data.len(),
                    max: (self.bounded_frame as usize).saturating_sub(self.sink.header_len()),
                });
            }
            self.append_unbuffered(data, frame, caller)?
        } else {
            self.append_buffered(data, frame, level, caller)?
        };
        self.counters.record_append(data.len());
        // The next lane record of this thread must land above this one ("Lanes"). Logs
        // without lanes skip it (and leave the thread's floor for a log with lanes intact).
        if !self.lanes.is_empty() {
            crate::sync::set_thread_floor(self.id, lsn);
        }
        Ok((lsn, lsn + frame, unit))
    }

    /// Returns the record's address and the sequence number of the slot that holds it.
    fn append_buffered(
        &self,
        data: &[u8],
        frame: u64,
        level: Option<Level>,
        caller: Caller,
    ) -> Result<(u64, u64)> {
        // Tasks move between threads, so a per-thread floor cannot order their records: they
        // join directly.
        let laned = level.is_none()
            && caller == Caller::Thread
            && !self.lanes.is_empty()
            && frame <= self.lane_frame_max;
        if laned {
            if let Some(lsn) = self.append_in_lane(data, frame, caller)? {
                // A NoSync record's unit is never waited on.
                return Ok((lsn, u64::MAX));
            }
        }
        let t = self.join(frame, caller)?;
        let header = self.sink.record_header(t.lsn, data);
        // SAFETY: the join reserved `offset..offset + frame` of this incarnation's buffer for
        // this thread alone; nobody reads it before our release below (the writer waits for
        // `released == joined`, which needs our release).
        unsafe {
            t.slot.bytes.write(
                t.offset as usize,
                &[&header[..self.sink.header_len()], data],
            );
        }
        if let Some(level) = level {
            // Relaxed: published to the slot's writer by the AcqRel release below. `want` only
            // grows within an incarnation, and it cannot be reset before we release, so a value
            // at or above ours means a co-joiner already asked for as much; skipping the RMW
            // keeps its cache line (shared with `base` and `seq`, which joiners read) clean.
            if t.slot.want.load(Ordering::Relaxed) < level as u8 {
                t.slot.want.fetch_max(level as u8, Ordering::Relaxed);
            }
        }
        if let Some(st) = self.release(t.slot, frame) {
            self.write_slot(t.slot, t.seq, st, caller)?;
        }
        // The slot's word is contended: take this CPU's lane for the next small records. Our
        // record is placed, so this append succeeded whatever the claim meets: an error here
        // (the log was poisoned meanwhile) reaches the next call, not this one, whose caller
        // would otherwise take a placed record for a failed append.
        if laned && (t.contended || cfg!(any(slotlog_loom, slotlog_shuttle))) {
            let _ = self.claim_lane(caller);
        }
        Ok((t.lsn, t.seq))
    }

    /// Releases `bytes` of `slot` after their copy. Returns the state word if this release
    /// completed a closed slot: then the caller is its writer.
    fn release(&self, slot: &Slot, bytes: u64) -> Option<State> {
        // AcqRel: Release publishes our copy (and `want`) to whoever writes the slot; Acquire,
        // for the case that we are that writer, makes every other joiner's copy visible to us.
        let before = State(
            slot.state
                .fetch_add(State::release_delta(bytes), Ordering::AcqRel),
        );
        let after = State(before.0 + State::release_delta(bytes));
        after.complete().then_some(after)
    }

    /// Reserves `frame` bytes in the active slot ("Joining").
    fn join(&self, frame: u64, caller: Caller) -> Result<Ticket<'_>> {
        let mut contended = false;
        loop {
            match self.try_join(frame, caller, &mut contended)? {
                Join::Joined(t) => return Ok(t),
                Join::Rotating(seq) => self.await_rotation(seq)?,
            }
        }
    }

    /// [`Self::join`] without waiting for a rotation: returns [`Join::Rotating`] if the active
    /// slot is closed by someone else. (A slot too full for `frame` is closed and rotated by us,
    /// which may wait for a pool entry.) `contended` is set if a join's CAS failed.
    fn try_join(&self, frame: u64, caller: Caller, contended: &mut bool) -> Result<Join<'_>> {
        loop {
            self.check_poison()?;
            // Acquire: pairs with the Release store in `activate`, so the slot's fields belong
            // to the incarnation `seq` or a later one.
            let seq = self.active.load(Ordering::Acquire);
            let slot = self.slot(seq);
            // Relaxed: only a guess for the CAS below, which re-validates it.
            let mut s = slot.load(Ordering::Relaxed);
            loop {
                if s.closed() {
                    return Ok(Join::Rotating(seq));
                }
                if s.joined() + frame > self.slot_size {
                    // Full: close it ourselves ("Closing"), then join the next slot.
                    // AcqRel: as in `close`.
                    let old = State(slot.state.fetch_or(CLOSED, Ordering::AcqRel));
                    if !old.closed() {
                        self.counters.slots_full.inc();
                        self.after_close(slot, old, CloseFor::Fit(frame), caller)?;
                    }
                    break;
                }
                // Acquire on success: we may read the incarnation's `base`/`seq` (written
                // before its state was published with Release); the CAS continues that
                // release sequence. Nothing is published by a join, so no Release.
                match slot.state.compare_exchange_weak(
                    s.0,
                    s.join(frame).0,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // Relaxed: ordered by the Acquire CAS above; stable until we release.
                        let base = slot.base.load(Ordering::Relaxed);
                        let seq = slot.seq.load(Ordering::Relaxed);
                        let lsn = base.wrapping_add(s.joined());
                        return Ok(Join::Joined(Ticket {
                            slot,
                            seq,
                            offset: s.joined(),
                            lsn,
                            contended: *contended,
                        }));
                    }
                    Err(now) => {
                        *contended = true;
                        self.counters.cas_retries.inc();
                        s = State(now);
                    }
                }
            }
        }
    }

    /// Waits until the active slot is no longer `seq` ("Rotating").
    fn await_rotation(&self, seq: u64) -> Result<()> {
        // Acquire: as in `join`.
        self.await_event(&self.rotated, || self.active.load(Ordering::Acquire) != seq)
    }

    /// Spins briefly, then parks on `event` until `done()` holds or the log is poisoned (which
    /// notifies every event). `done` is checked after the event's key is taken, so a change
    /// announced by a `notify_all` after it is never slept through.
    fn await_event(&self, event: &Event, done: impl Fn() -> bool) -> Result<()> {
        let mut spins = 0;
        loop {
            let key = event.key();
            self.check_poison()?;
            if done() {
                return Ok(());
            }
            if spins < SPIN_LIMIT {
                spins += 1;
                spin_hint();
                continue;
            }
            self.counters.parks.inc();
            event.wait(key);
        }
    }

    /// An unbuffered record: close the active slot and reserve the record right after it
    /// ("Unbuffered records"). Returns the record's address and its extent's sequence number.
    fn append_unbuffered(&self, data: &[u8], frame: u64, caller: Caller) -> Result<(u64, u64)> {
        loop {
            self.check_poison()?;
            // Acquire: as in `join`.
            let seq = self.active.load(Ordering::Acquire);
            let slot = self.slot(seq);
            // AcqRel: as in `close`.
            let old = State(slot.state.fetch_or(CLOSED, Ordering::AcqRel));
            if old.closed() {
                self.await_rotation(seq)?;
                continue;
            }
            let extent = self
                .after_close(slot, old, CloseFor::Unbuffered(frame), caller)?
                .expect("an unbuffered close reserves an extent");
            let lsn = extent
                .record
                .expect("an unbuffered extent holds the record");
            self.counters.unbuffered.inc();
            let header = self.sink.record_header(lsn, data);
            self.write_extent(&extent, &[&header[..self.sink.header_len()], data])?;
            return Ok((lsn, extent.seq));
        }
    }

    // ----- closing and rotating ------------------------------------------------------------

    /// Closes the active slot if it is still incarnation `seq`. Returns whether we closed it.
    fn close(&self, seq: u64) -> Result<bool> {
        self.close_as(seq, Caller::Thread)
    }

    /// [`Self::close`] by `caller`: a task's close writes the slot but never syncs it.
    fn close_as(&self, seq: u64, caller: Caller) -> Result<bool> {
        let slot = self.slot(seq);
        // AcqRel: Acquire makes the joiners' copies visible in case we become the writer (the
        // slot was fully released) and the incarnation's fields readable; Release orders our
        // earlier reads before the close for the next writer of the word.
        let old = State(slot.state.fetch_or(CLOSED, Ordering::AcqRel));
        if old.closed() {
            return Ok(false);
        }
        self.after_close(slot, old, CloseFor::Plain, caller)?;
        Ok(true)
    }

    /// Everything the closer of a slot does: rotate in the next slot, reserve an extent if
    /// asked, and write the closed slot if every joiner had already released.
    fn after_close(
        &self,
        slot: &Slot,
        old: State,
        why: CloseFor,
        caller: Caller,
    ) -> Result<Option<Extent>> {
        // Guarded: the slot is closed, and until it is rotated and written every joiner of the
        // log depends on us.
        let during = Error::Panicked {
            during: "slot close",
        };
        self.poison_if_unwinds(during, || self.rotate_and_write(slot, old, why, caller))
    }

    fn rotate_and_write(
        &self,
        slot: &Slot,
        old: State,
        why: CloseFor,
        caller: Caller,
    ) -> Result<Option<Extent>> {
        self.counters.slots_closed.inc();
        // Relaxed: ordered by the Acquire close; stable until the slot is written, and it
        // cannot be written and reused before the rotation below activates a new slot.
        let seq = slot.seq.load(Ordering::Relaxed);
        let end = slot.base.load(Ordering::Relaxed).wrapping_add(old.joined());
        let extent = self.rotate(seq, end, why)?;
        // Every chunk in the closed slot must be finished before the slot can be written.
        self.close_lanes(matches!(why, CloseFor::Fit(_)), caller)?;
        let closed = State(old.0 | CLOSED);
        if closed.complete() {
            self.write_slot(slot, seq, closed, caller)?;
        }
        if let (Some(x), CloseFor::Fit(_)) = (&extent, why) {
            // Padding only: we own it, write it now.
            self.write_extent(x, &[])?;
            return Ok(None);
        }
        Ok(extent)
    }

    /// Makes slot `closed_seq + 1` (or `+ 2` after an extent) active, starting where the closed
    /// slot ends. Parks while the pool entry is still in use ("Pool exhaustion").
    fn rotate(&self, closed_seq: u64, end: u64, why: CloseFor) -> Result<Option<Extent>> {
        let seg_end = self.sink.segment_end(end);
        let room = seg_end - end;
        let (pad, record, x_end) = match why {
            CloseFor::Plain => (None, None, end),
            CloseFor::Fit(frame) if frame <= room => (None, None, end),
            CloseFor::Fit(_) => (Some((end, room)), None, seg_end),
            CloseFor::Unbuffered(frame) if frame <= room => (None, Some(end), end + frame),
            CloseFor::Unbuffered(frame) => (Some((end, room)), Some(seg_end), seg_end + frame),
        };
        let extent = (x_end != end).then_some(Extent {
            seq: closed_seq + 1,
            pad,
            record,
            end: x_end,
        });
        let next = closed_seq + 1 + extent.is_some() as u64;
        let ring = self.wait_free(next)?;
        self.activate(next, x_end);
        drop(ring);
        self.counters.rotations.inc();
        self.rotated.notify_all();
        Ok(extent)
    }

    /// Returns the ring lock once pool entry of `seq` is free.
    fn wait_free(&self, seq: u64) -> Result<MutexGuard<'_, Ring>> {
        loop {
            let key = self.freed.key();
            let ring = self.ring.lock();
            if seq < ring.lowest + self.n() {
                return Ok(ring);
            }
            drop(ring);
            self.check_poison()?;
            self.counters.pool_waits.inc();
            self.counters.parks.inc();
            self.freed.wait(key);
        }
    }

    /// Opens pool entry `seq % N` as incarnation `seq` at log address `start`. Called with the
    /// ring lock held (or before the buffer is shared).
    fn activate(&self, seq: u64, start: u64) {
        let slot = self.slot(seq);
        let room = self.sink.segment_end(start) - start;
        let prefill = self.slot_size.saturating_sub(room);
        // Release (seq, base, prefill): a reader that validates a snapshot of the active slot
        // (`active_snapshot`) and reads one of these from this incarnation must also see every
        // `active` store before it, so that its re-check of `active` fails. Joiners and writers
        // need no more than the Release store of the state word below.
        slot.seq.store(seq, Ordering::Release);
        // `base` is the address of buffer offset 0, which may lie before address 0 when the
        // first slot of a small segment is prefilled: base arithmetic wraps (mod 2^64).
        slot.base
            .store(start.wrapping_sub(prefill), Ordering::Release);
        slot.prefill.store(prefill, Ordering::Release);
        // Relaxed: published by the Release store of the state word just below.
        slot.want.store(0, Ordering::Relaxed);
        // Release: publishes the fields above to every thread that acquires the state word.
        slot.state.store(State::open(prefill).0, Ordering::Release);
        // Release: a thread that sees the new active sequence sees an open slot.
        self.active.store(seq, Ordering::Release);
    }

    // ----- writing and the frontier --------------------------------------------------------

    /// Writes a closed, fully released slot: one write at its address ("Writing").
    fn write_slot(&self, slot: &Slot, seq: u64, st: State, caller: Caller) -> Result<()> {
        debug_assert!(st.complete());
        // Relaxed: we acquired the state word, which ordered these after their stores.
        let base = slot.base.load(Ordering::Relaxed);
        let prefill = slot.prefill.load(Ordering::Relaxed);
        let want = slot.want.load(Ordering::Relaxed);
        let start = base.wrapping_add(prefill);
        let end = base.wrapping_add(st.joined());
        if st.joined() > prefill {
            // Guarded: until `complete` below, every waiter past this slot depends on us.
            let during = Error::Panicked {
                during: "slot write",
            };
            let res = self.poison_if_unwinds(during, || {
                self.await_unsynced_room(end)?;
                // SAFETY: the slot is closed and every joiner released (`st.complete()`), and
                // we acquired all those releases, so nobody writes these bytes any more; they
                // are not reused before `complete` below frees the entry.
                unsafe {
                    slot.bytes
                        .with_bytes(prefill as usize..st.joined() as usize, |bytes| {
                            self.sink.write(start, &[bytes])
                        })
                }
            });
            if let Err(e) = res {
                return Err(self.poison(e));
            }
            self.counters.writes.inc();
        }
        self.complete(seq, end);
        // A task leaves the fdatasync to the durable waiters: `complete` just woke a driver
        // among them if none runs ("Async waits").
        if want >= Level::Durable as u8 && caller == Caller::Thread {
            self.check_poison()?;
            self.try_sync()?;
        }
        Ok(())
    }

    /// Writes an extent's padding and record, then marks it written.
    fn write_extent(&self, x: &Extent, record: &[&[u8]]) -> Result<()> {
        let during = Error::Panicked {
            during: "slot write",
        };
        self.poison_if_unwinds(during, || {
            self.await_unsynced_room(x.end)?;
            if let Some((lsn, total)) = x.pad {
                self.counters.pads.inc();
                if let Some(h) = self.sink.pad_header(lsn, total) {
                    if let Err(e) = self.sink.write(lsn, &[&h]) {
                        return Err(self.poison(e));
                    }
                }
            }
            if let Some(lsn) = x.record {
                if let Err(e) = self.sink.write(lsn, record) {
                    return Err(self.poison(e));
                }
                self.counters.writes.inc();
            }
            Ok(())
        })?;
        self.complete(x.seq, x.end);
        Ok(())
    }

    // ----- bounded unsynced bytes ("Bounded unsynced bytes") -------------------------------

    /// Before a write that ends at `end`: waits until the durable frontier is at most
    /// `max_unsynced` bytes below `end`, running the fdatasync itself if none runs.
    fn await_unsynced_room(&self, end: u64) -> Result<()> {
        // Without a bound, no atomic access at all (nor in the loom models' state space).
        if self.max_unsynced == u64::MAX || end <= self.durable().saturating_add(self.max_unsynced)
        {
            return Ok(());
        }
        let need = end - self.max_unsynced;
        let written = self.written();
        // The bound is at least the in-flight window and every reserved byte lies below
        // `written` + that window, so `need` is written already: the wait below only runs or
        // awaits an fdatasync. It never closes a slot, whose rotation could need the pool entry
        // we are writing.
        debug_assert!(
            need <= written,
            "bound {} below the window",
            self.max_unsynced
        );
        self.counters.unsynced_waits.inc();
        self.wait(need.min(written), Level::Durable, None)
    }

    /// After the written frontier moved (`complete`): once half the bound is written and not
    /// durable, asks the driver thread for an fdatasync, so that writers seldom wait for one.
    fn request_sync_if_behind(&self) {
        if self.max_unsynced == u64::MAX {
            return;
        }
        let written = self.written();
        if written.saturating_sub(self.durable()) >= self.max_unsynced / 2 {
            self.driver.request(written, Level::Durable);
        }
    }

    /// Marks `seq` written, and if it was the lowest outstanding one carries the written
    /// frontier over it and every written successor ("The frontier").
    fn complete(&self, seq: u64, end: u64) {
        let n = self.n();
        let mut ring = self.ring.lock();
        ring.done[(seq % n) as usize] = Some(end);
        let first = ring.lowest;
        let mut advanced = None;
        loop {
            let i = (ring.lowest % n) as usize;
            match ring.done[i].take() {
                Some(e) => {
                    advanced = Some(e);
                    ring.lowest += 1;
                }
                None => break,
            }
        }
        if let Some(e) = advanced {
            // Release: a thread that sees the frontier sees the written bytes' bookkeeping;
            // waiters re-check it after the SeqCst fences in `WaitList`.
            self.written.store(e, Ordering::Release);
        }
        // Acquire: as in `join`. Every sequence below the active one is written: the write
        // pipe is idle, a waiter in the active slot may close it.
        let pipe_idle = ring.lowest == self.active.load(Ordering::Acquire);
        let passed = first..ring.lowest;
        drop(ring);
        if advanced.is_some() {
            self.freed.notify_all();
            self.wake_waiters(pipe_idle, Some((Level::Written, passed)));
            self.request_sync_if_behind();
        }
    }

    /// The written frontier and the lowest sequence number it has not passed, read together.
    fn written_with_seq(&self) -> (u64, u64) {
        let ring = self.ring.lock();
        (self.written(), ring.lowest)
    }

    /// Wakes the waiters the frontiers satisfy (the followers of the `passed` units among
    /// them), and drivers for the work now possible ("Waiting"). `pipe_idle`: the caller saw
    /// every closed slot written.
    fn wake_waiters(&self, pipe_idle: bool, passed: Passed) {
        self.waiters.wake(passed, || {
            // Everything here is loaded after `wake`'s SeqCst fence, never before it: a waiter
            // that registered before that fence is seen, and one that registers after it sees
            // what this thread stored before it (the frontier, `syncing` cleared). Loaded before
            // the fence, a stale `written` let a FullSync waiter sleep forever with its bytes
            // written and no fdatasync running (found by the loom model
            // `durable_followers_share_a_wake`; a store-buffer outcome, possible on x86 too).
            let written = self.written();
            // Relaxed: ordered by the fence; a stale `true` only skips a driver that the running
            // syncer's own wake (after it clears the flag) provides.
            let sync = !self.syncing.load(Ordering::Relaxed);
            let close = pipe_idle || self.active_start().is_some_and(|(_, s)| s == written);
            (written, self.durable(), Work { sync, close })
        });
    }

    /// Runs one fdatasync covering the written frontier, unless one is running. Returns whether
    /// this call synced anything.
    fn try_sync(&self) -> Result<bool> {
        // Acquire: see the durable frontier the previous syncer stored before releasing.
        if self.syncing.swap(true, Ordering::Acquire) {
            return Ok(false);
        }
        // A failed fdatasync is never followed by another: after EIO the kernel may have
        // dropped the dirty pages, so a later success would prove nothing. The previous syncer
        // poisoned the log before releasing `syncing`, so this check sees it.
        if let Err(e) = self.check_poison() {
            self.syncing.store(false, Ordering::Release);
            return Err(e);
        }
        let (target, target_seq) = self.written_with_seq();
        let from = self.durable.load(Ordering::Relaxed);
        // Relaxed: owned by the holder of `syncing`, handed over by its Acquire/Release.
        let from_seq = self.durable_seq.load(Ordering::Relaxed);
        let mut result = Ok(false);
        let mut passed = None;
        if target > from {
            let started = std::time::Instant::now();
            // Guarded: `syncing` stays set until we clear it below.
            let during = Error::Panicked {
                during: "fdatasync",
            };
            match self.poison_if_unwinds(during, || self.sink.sync(from, target)) {
                Ok(()) => {
                    self.counters.fdatasyncs.inc();
                    let nanos = started.elapsed().as_nanos() as u64;
                    self.counters.fdatasync_nanos.add(nanos);
                    // Release: the synced bytes' acknowledgements happen after this.
                    self.durable.store(target, Ordering::Release);
                    // Relaxed: as above.
                    self.durable_seq.store(target_seq, Ordering::Relaxed);
                    passed = Some((Level::Durable, from_seq..target_seq));
                    result = Ok(true);
                }
                // Never retried: the kernel may have dropped the dirty pages ("Errors").
                Err(e) => result = Err(self.poison(e)),
            }
        }
        // Release: hands the durable frontier to the next syncer.
        self.syncing.store(false, Ordering::Release);
        // A durable waiter in the active slot may have held back its close while we synced:
        // `wake_waiters` offers the close if the pipe is idle.
        self.wake_waiters(false, passed);
        result
    }

    // ----- waiting ("Waiting") --------------------------------------------------------------

    /// Returns once the `level` frontier reaches `need`, doing whatever work it can on the way:
    /// closing the active slot when the write pipe is idle, running the fdatasync.
    pub fn wait_for(&self, need: u64, level: Level) -> Result<()> {
        self.wait(need, level, None)
    }

    /// [`Self::wait_for`] by a waiter that knows the unit (slot or extent sequence number)
    /// `need` lies in, so that it can sleep as a follower ("Waiting").
    fn wait(&self, need: u64, level: Level, unit: Option<u64>) -> Result<()> {
        let mut reg: Option<Sleeper<'_>> = None;
        let mut spins = 0;
        // A durable wait spans an fdatasync (~100 µs or more): spinning would only burn CPU.
        let spin_limit = if level == Level::Durable {
            0
        } else {
            WRITTEN_SPIN_LIMIT
        };
        let result = loop {
            let key = reg.as_ref().map(|r| r.event().key());
            if let Err(e) = self.check_poison() {
                break Err(e);
            }
            if self.reached(need, level) {
                break Ok(());
            }
            match self.try_progress(need, level) {
                Err(e) => break Err(e),
                Ok(true) => {
                    spins = 0;
                    continue;
                }
                Ok(false) => {}
            }
            if spins < spin_limit {
                spins += 1;
                spin_hint();
                continue;
            }
            match (&reg, key) {
                (Some(r), Some(key)) => {
                    self.counters.parks.inc();
                    if matches!(r, Sleeper::Follower(_)) {
                        self.counters.follower_parks.inc();
                    }
                    r.event().wait(key);
                }
                _ => reg = Some(self.waiters.register(need, level, unit)),
            }
        };
        if let Some(r) = reg {
            self.waiters.deregister(r);
        }
        result
    }

    fn reached(&self, need: u64, level: Level) -> bool {
        match level {
            Level::Written => self.written() >= need,
            Level::Durable => self.durable() >= need,
        }
    }

    /// One step of work for a waiter that needs `need` on `level`. Returns whether it did
    /// anything (then the caller re-checks at once).
    fn try_progress(&self, need: u64, level: Level) -> Result<bool> {
        let written = self.written();
        if written >= need {
            return match level {
                // The frontier moved since the caller checked: re-check.
                Level::Written => Ok(true),
                // Our bytes are written, not yet durable: run the fdatasync.
                Level::Durable => self.try_sync(),
            };
        }
        self.close_for(need, level, written, Caller::Thread)
    }

    /// A waiter's close ("When to close"), for bytes up to `need` that are not written (the
    /// written frontier was `written`): if they are in the active slot, and every closed slot
    /// is written (the write pipe is idle) or, for a thread, the slot already holds a batch
    /// ([`CLOSE_BUSY_AT`] bytes), and for a durable waiter no fdatasync is running (the group
    /// grows while it runs), close the slot. Returns whether it closed.
    fn close_for(&self, need: u64, level: Level, written: u64, caller: Caller) -> Result<bool> {
        let Some((seq, base, prefill, s)) = self.active_view() else {
            return Ok(false);
        };
        let start = base.wrapping_add(prefill);
        // Relaxed: a hint; the waiter is woken when it changes.
        let sync_busy = level == Level::Durable && self.syncing.load(Ordering::Relaxed);
        // A task closes only into an idle pipe: then every older pool entry is written and
        // free, so its rotation never parks the executor thread for one. A batch beside a busy
        // pipe is closed by the driver, which may wait.
        let batch = caller == Caller::Thread && s.joined() - prefill >= CLOSE_BUSY_AT;
        if need > start && (written == start || batch) && !sync_busy {
            return self.close_as(seq, caller);
        }
        Ok(false)
    }

    /// The active slot's sequence number, `base`, `prefill` and open state word, read
    /// consistently; `None` while a rotation is in progress.
    fn active_view(&self) -> Option<(u64, u64, u64, State)> {
        self.active_snapshot().filter(|(_, _, _, s)| !s.closed())
    }

    /// The active slot's sequence number, `base`, `prefill` and state word, open or closed (a
    /// closed one's rotation has not published the next slot yet), read consistently; `None`
    /// if `active` moved while we read. Every field is read *before* the second load of
    /// `active` that validates them: a field read after it could belong to a later incarnation
    /// (found by shuttle: a `flush` that paired a new `base` with an old `joined` waited for
    /// an address nobody had reserved).
    fn active_snapshot(&self) -> Option<(u64, u64, u64, State)> {
        // Acquire: as in `join`.
        let seq = self.active.load(Ordering::Acquire);
        let slot = self.slot(seq);
        // Acquire: the fields read below belong to the incarnation whose state (open, or closed
        // and not yet rotated) we see; the Acquire load of `active` above saw `seq`'s
        // activation, so this state is `seq`'s or a later incarnation's.
        let s = slot.load(Ordering::Acquire);
        // Acquire (a seqlock read): if one of these comes from a later incarnation, it
        // synchronises with that activation, whose past includes the `active` store that moved
        // past `seq`, so the re-check below fails. Relaxed loads would let the re-check pass
        // with a newer `base` (found by the loom model `flush_reads_the_end_across_rotations`).
        let base = slot.base.load(Ordering::Acquire);
        let prefill = slot.prefill.load(Ordering::Acquire);
        let same = slot.seq.load(Ordering::Acquire) == seq;
        // Acquire: if `active` is unchanged, no rotation ran while we read the fields.
        let valid = same && self.active.load(Ordering::Acquire) == seq;
        valid.then_some((seq, base, prefill, s))
    }

    /// The active slot's sequence number and the address of its first byte.
    fn active_start(&self) -> Option<(u64, u64)> {
        let (seq, base, prefill, _) = self.active_view()?;
        Some((seq, base.wrapping_add(prefill)))
    }

    /// The end of the reserved log space: where the next record would go, or, while the active
    /// slot is closed and its rotation has not published the next one, the end of that slot
    /// ("Reading the end"). Does not wait for the rotation.
    pub fn reserved_end(&self) -> Result<u64> {
        loop {
            self.check_poison()?;
            if let Some((_, base, _, s)) = self.active_snapshot() {
                return Ok(base.wrapping_add(s.joined()));
            }
            // A rotation published the next slot while we read: look again.
            spin_hint();
        }
    }

    /// Hands every record appended so far to the sink and waits for it.
    pub fn flush(&self) -> Result<()> {
        let end = self.reserved_end()?;
        self.wait_for(end, Level::Written)
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let end = self.reserved_end()?;
        self.wait_for(end, Level::Durable)
    }

    /// Closes the active slot if it holds anything (the background flusher's tick). Does not
    /// wait for the write.
    pub fn close_if_nonempty(&self) -> Result<()> {
        if let Some((seq, start)) = self.active_start() {
            if self.reserved_end()? > start {
                self.close(seq)?;
            }
        }
        Ok(())
    }

    /// A one-line description of every slot, for watchdogs and hang reports.
    pub fn debug_dump(&self) -> String {
        let mut out = format!(
            "active={} written={} durable={} syncing={} poisoned={}",
            self.active.load(Ordering::Acquire),
            self.written(),
            self.durable(),
            self.syncing.load(Ordering::Relaxed),
            self.poisoned.load(Ordering::Relaxed)
        );
        for (i, slot) in self.slots.iter().enumerate() {
            let s = slot.load(Ordering::Acquire);
            out.push_str(&format!(
                "\n  slot[{i}] seq={} base={} prefill={} closed={} joined={} released={}",
                slot.seq.load(Ordering::Relaxed),
                slot.base.load(Ordering::Relaxed),
                slot.prefill.load(Ordering::Relaxed),
                s.closed(),
                s.joined(),
                s.released()
            ));
        }
        self.dump_lanes(&mut out);
        out
    }
}

/// See [`LogBuffer::poison_if_unwinds`].
struct PoisonOnUnwind<'a, S: Sink> {
    buffer: &'a LogBuffer<S>,
    /// Taken by `done`.
    cause: Option<Error>,
}

impl<S: Sink> PoisonOnUnwind<'_, S> {
    /// The guarded work finished (successfully or with an error it reports itself).
    fn done(mut self) {
        self.cause = None;
    }
}

impl<S: Sink> Drop for PoisonOnUnwind<'_, S> {
    fn drop(&mut self) {
        // `panicking` alone would also fire for work that finished inside an unwinding
        // `Drop` (a `Log` dropped during a panic flushes); `done` rules that out, so only the
        // guarded work's own unwinding poisons.
        if let Some(cause) = self.cause.take() {
            if std::thread::panicking() {
                self.buffer.poison(cause);
            }
        }
    }
}
