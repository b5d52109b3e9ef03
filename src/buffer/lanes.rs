//! Lanes: per-CPU chunks of the active slot for small `NoSync` records ("Lanes" in
//! `docs/design.md`).
//!
//! With one active slot, every append does two read-modify-writes (join, release) on one state
//! word, and two cores appending at once pass its cache line back and forth on nearly every
//! append. A lane is a per-CPU sub-allocator: it holds a *chunk* of `lane_chunk` bytes, joined
//! into the active slot like one big record, and small NoSync records join the chunk on the
//! lane's word and release it on the chunk's counter, lines that only that CPU's threads write.
//! The slot's word is touched once per chunk.
//!
//! The lane word: `CLOSED` (bit 63), `WARM` (bit 62: reopen at once after a close), the index
//! of the lane's current chunk (bits 39..32), and `joined` (bits 23..0), the bytes of that
//! chunk handed out.
//!
//! A chunk's counter: `CLOSED` (bit 63), its final `joined` (bits 55..32, added by the thread
//! that closed the lane on it), `released` (bits 23..0). Whoever's RMW makes it closed with
//! `released == joined` *finishes* the chunk: pads its unused rest, marks it free, and releases
//! the whole chunk on the slot's word (writing the slot if that completes it). A lane keeps
//! [`CHUNKS_PER_LANE`] chunks, so that a thread preempted in the middle of its copy holds up one
//! chunk, not the lane.

use super::{Caller, Join, LogBuffer, Sink};
use crate::error::Result;
use crate::slot::Slot;
use crate::sync::{AtomicBool, AtomicU64, Event, Ordering};
use crossbeam_utils::CachePadded;
use std::fmt::Write as _;

const CLOSED: u64 = 1 << 63;
const WARM: u64 = 1 << 62;
const INDEX_SHIFT: u32 = 32;
const INDEX_MASK: u64 = 0xff;
const JOINED_SHIFT: u32 = 32;
const COUNT_MASK: u64 = (1 << 24) - 1;

/// Chunks per lane: a lane falls back to direct joins only while all of them are draining.
#[cfg(not(any(slotlog_loom, slotlog_shuttle)))]
pub(crate) const CHUNKS_PER_LANE: usize = 16;
#[cfg(any(slotlog_loom, slotlog_shuttle))]
pub(crate) const CHUNKS_PER_LANE: usize = 2;

/// Bytes after a lane record whose cache lines its appender prefetches for the next ones.
const PREFETCH_AHEAD: u64 = 256;

/// The largest chunk the words can describe.
pub(crate) const MAX_CHUNK: u64 = COUNT_MASK;

/// One chunk: where it lies, and its release counter. `seq`/`at` are written by the lane's
/// claimer while the chunk is free, and read by joiners after their join and by the finisher.
struct Chunk {
    count: CachePadded<AtomicU64>,
    /// Sequence number of the slot that holds the chunk.
    seq: AtomicU64,
    /// Buffer offset of the chunk in that slot.
    at: AtomicU64,
    /// Not in use: a claimer may take it.
    free: AtomicBool,
}

/// One lane: its word and its chunks.
pub(crate) struct Lane {
    word: CachePadded<AtomicU64>,
    chunks: Box<[Chunk]>,
    /// Notified when one of the chunks becomes free, for appenders that found none.
    freed: Event,
}

pub(crate) type Lanes = Box<[Lane]>;

pub(crate) fn new_lanes(n: usize) -> Lanes {
    (0..n)
        .map(|_| Lane {
            // Closed on chunk 0, which is free: the first appender claims.
            word: CachePadded::new(AtomicU64::new(CLOSED)),
            chunks: (0..CHUNKS_PER_LANE)
                .map(|_| Chunk {
                    count: CachePadded::new(AtomicU64::new(0)),
                    seq: AtomicU64::new(0),
                    at: AtomicU64::new(0),
                    free: AtomicBool::new(true),
                })
                .collect(),
            freed: Event::new(),
        })
        .collect()
}

fn index(w: u64) -> usize {
    ((w >> INDEX_SHIFT) & INDEX_MASK) as usize
}

fn joined(w: u64) -> u64 {
    w & COUNT_MASK
}

/// A chunk counter value that makes its owner the finisher.
fn finished(c: u64) -> bool {
    c & CLOSED != 0 && (c >> JOINED_SHIFT) & COUNT_MASK == c & COUNT_MASK
}

impl<S: Sink> LogBuffer<S> {
    /// Appends a small NoSync record through the calling CPU's lane. `None`: the lane has no
    /// open chunk with room; the caller joins the slot directly (and may claim the lane).
    pub(super) fn append_in_lane(
        &self,
        data: &[u8],
        frame: u64,
        caller: Caller,
    ) -> Result<Option<u64>> {
        // A thread's records keep their order: a lane record must land above the thread's last
        // record in this log, wherever that went (a direct join, another lane, an earlier chunk).
        // Unknown (the thread's last record went to another log): join directly, which lands
        // above everything reserved before.
        let Some(floor) = crate::sync::thread_floor(self.id) else {
            return Ok(None);
        };
        let lane = &self.lanes[crate::sync::current_lane(self.lanes.len())];
        let mut refilled = false;
        // Relaxed: a guess for the CAS below, which re-validates it.
        let mut w = lane.word.load(Ordering::Relaxed);
        loop {
            let room = self.lane_chunk - joined(w);
            // The rest of a chunk is either empty or holds a padding header.
            // (A closed word keeps its old chunk's `joined`: only an open chunk can be full.)
            let full =
                w & CLOSED == 0 && frame != room && frame + self.sink.header_len() as u64 > room;
            if w & CLOSED != 0 || full {
                if full {
                    self.close_lane(lane, caller)?;
                } else if w & WARM == 0 {
                    return Ok(None);
                }
                if refilled {
                    return Ok(None);
                }
                // The lane is in use (its chunk just filled, or it is warm): open it on a new
                // chunk at once, rather than send this CPU's appenders to the slot's word until
                // one of them meets contention there. (Nothing of ours is placed yet, so an
                // error may return.)
                refilled = true;
                if !self.claim(lane, caller)? {
                    // Every chunk is draining (their copiers were preempted on this CPU) or held
                    // by a claim. Wait for one to be finished or given back instead of joining
                    // the slot's word: we hold nothing, and parking hands this CPU to the
                    // copiers we wait for.
                    self.await_free_chunk(lane)?;
                    refilled = false;
                }
                // Relaxed: as above.
                w = lane.word.load(Ordering::Relaxed);
                continue;
            }
            // Acquire on success: the chunk's `seq`/`at` (stored before the Release open) are
            // visible; the CAS continues the open's release sequence.
            match lane.word.compare_exchange_weak(
                w,
                w + frame,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        let chunk = &lane.chunks[index(w)];
        // Relaxed: ordered by the Acquire join; stable until we release (the chunk cannot be
        // freed before it is finished, which needs our release).
        let seq = chunk.seq.load(Ordering::Relaxed);
        let at = chunk.at.load(Ordering::Relaxed);
        let offset = at + joined(w);
        let slot = self.slot(seq);
        // Relaxed: the chunk holds a reservation in incarnation `seq`, so its fields are stable;
        // ordered by the claimer's Acquire join of the slot and its Release open of the lane.
        let lsn = slot.base.load(Ordering::Relaxed).wrapping_add(offset);
        if lsn <= floor {
            // Below this thread's last record (the chunk was reserved before it): give the
            // range back as padding and join directly. The range is ours until we release it.
            self.pad_in_slot(slot, offset, frame);
            self.release_in_chunk(lane, chunk, frame, caller)?;
            return Ok(None);
        }
        // The next records of this lane go right after ours: fetch their lines now, so that
        // their copies do not wait for them.
        let chunk_end = at + self.lane_chunk;
        // (Not past our chunk: the next one may be another CPU's.)
        slot.bytes.prefetch_for_write(
            (offset + frame) as usize,
            (offset + frame + PREFETCH_AHEAD).min(chunk_end) as usize,
        );
        let header = self.sink.record_header(lsn, data);
        // SAFETY: our lane join reserved `offset..offset + frame` inside the chunk, which the
        // chunk's slot join reserved for this lane; nobody else writes it, and the slot is not
        // written before the chunk is finished, which needs our release below.
        unsafe {
            slot.bytes
                .write(offset as usize, &[&header[..self.sink.header_len()], data]);
        }
        self.release_in_chunk(lane, chunk, frame, caller)?;
        Ok(Some(lsn))
    }

    /// Releases `frame` bytes of `chunk` after their copy; finishes it if that was the last.
    fn release_in_chunk(
        &self,
        lane: &Lane,
        chunk: &Chunk,
        frame: u64,
        caller: Caller,
    ) -> Result<()> {
        // AcqRel: Release publishes our copy to the chunk's finisher; Acquire, in case we are
        // the finisher, makes the other joiners' copies visible to us (we pass them on).
        let after = chunk.count.fetch_add(frame, Ordering::AcqRel) + frame;
        if finished(after) {
            self.finish_chunk(lane, chunk, after, caller)?;
        }
        Ok(())
    }

    /// Opens the calling CPU's lane on a new chunk of the active slot, if it is closed and one
    /// of its chunks is free (another claimer may win the open; see `claim`). Called after a
    /// direct join met contention.
    pub(super) fn claim_lane(&self, caller: Caller) -> Result<()> {
        self.claim(
            &self.lanes[crate::sync::current_lane(self.lanes.len())],
            caller,
        )
        .map(|_| ())
    }

    /// Waits until one of `lane`'s chunks is free or the lane is open (spins briefly, then
    /// parks; every finish and every give-back by a claim notify `freed`). An open does not
    /// notify: the other busy chunks are draining or claimed, and each ends in a finish or a
    /// give-back that wakes us (a notify per open tripled the lanes loom model, 3.5 M to 8.5 M
    /// executions).
    fn await_free_chunk(&self, lane: &Lane) -> Result<()> {
        self.await_event(&lane.freed, || {
            // Relaxed: hints; the caller's CAS on the lane word or on a flag decides.
            lane.word.load(Ordering::Relaxed) & CLOSED == 0
                || lane.chunks.iter().any(|c| c.free.load(Ordering::Relaxed))
        })
    }

    /// Wakes every appender waiting for a free chunk (after a poison).
    pub(super) fn wake_lane_waiters(&self) {
        for lane in self.lanes.iter() {
            lane.freed.notify_all();
        }
    }

    /// [`Self::claim_lane`] for `lane`. Returns `Ok` also when the lane stays closed: `false`
    /// if no chunk was free, else `true`.
    ///
    /// Nothing is held on the lane while the claimer joins the slot, which may park it (a
    /// pool entry for a slot it closed): on an oversubscribed CPU a parked thread can wait tens
    /// of milliseconds for its turn after its wake, and a lane marked as being claimed for that
    /// long sent every other appender of the CPU to the slot's word. So claimers may overlap;
    /// the first to open the lane wins, and a later one finishes its chunk empty (all padding).
    /// For the same reason a claimer never waits for someone else's rotation holding a chunk:
    /// it gives the chunk back (unused, not in any slot) first.
    fn claim(&self, lane: &Lane, caller: Caller) -> Result<bool> {
        // Relaxed: a hint; the open below re-validates it.
        if lane.word.load(Ordering::Relaxed) & CLOSED == 0 {
            return Ok(true);
        }
        let (i, chunk, t) = loop {
            // Acquire: a free chunk's previous finisher marked it free with Release after its
            // last read of `seq`/`at`, which we overwrite below. The CAS makes the chunk ours
            // alone.
            let Some((i, chunk)) = lane.chunks.iter().enumerate().find(|(_, c)| {
                // Relaxed: a hint for the CAS.
                c.free.load(Ordering::Relaxed)
                    && c.free
                        .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
            }) else {
                // Every chunk is draining or held by a claim: stay closed.
                return Ok(false);
            };
            let rotating = match self.try_join(self.lane_chunk, caller, &mut false) {
                Ok(Join::Joined(t)) => break (i, chunk, t),
                Ok(Join::Rotating(seq)) => Ok(seq),
                Err(e) => Err(e),
            };
            // Give the chunk back before we wait or fail: a claimer that parked on a rotation
            // holding its chunk kept it from every other appender of this CPU until its turn
            // came back (milliseconds on an oversubscribed CPU), and with 16 such claimers the
            // whole lane waited. We wrote none of its fields. Release: our Acquire CAS took the
            // previous finisher's (or giver's) release, and a plain store ends that release
            // sequence, so Release passes its reads of `seq`/`at` on to the next claimer.
            chunk.free.store(true, Ordering::Release);
            lane.freed.notify_all();
            self.await_rotation(rotating?)?;
            // Relaxed: a hint; another claimer may have opened the lane while we waited.
            if lane.word.load(Ordering::Relaxed) & CLOSED == 0 {
                return Ok(true);
            }
        };
        // Relaxed: published by the Release open below (or read by ourselves when we finish the
        // chunk empty).
        chunk.count.store(0, Ordering::Relaxed);
        chunk.seq.store(t.seq, Ordering::Relaxed);
        chunk.at.store(t.offset, Ordering::Relaxed);
        // Relaxed: a guess for the CAS.
        let mut w = lane.word.load(Ordering::Relaxed);
        loop {
            if w & CLOSED == 0 {
                // Another claimer opened the lane while we joined: nobody else knows our chunk,
                // so we finish it empty (all padding) at once.
                return self.finish_chunk(lane, chunk, CLOSED, caller).map(|_| true);
            }
            // AcqRel on success: Release publishes the chunk to joiners. Acquire: if the closer
            // of our slot ran `close_lanes` before this (its `fetch_or` on our closed word is in
            // the word's modification order, and every change of the word is an RMW), we
            // synchronise with it and see the slot closed just below.
            match lane.word.compare_exchange_weak(
                w,
                WARM | (i as u64) << INDEX_SHIFT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        // Acquire: see above. A slot closed after our join must not keep an open chunk, or
        // nothing would finish it: close the lane ourselves. (By now the chunk may even have
        // been filled, finished and its slot reused; then this reads a later incarnation's word,
        // and at worst closes a newer chunk early, which is harmless.)
        if t.slot.load(Ordering::Acquire).closed() {
            self.close_lane(lane, caller)?;
        }
        Ok(true)
    }

    /// Closes every lane: the slot closer's duty, so that every chunk in the closed slot gets
    /// finished. A lane whose chunk lies in a later slot is closed early, which only makes that
    /// chunk smaller. Every lane is closed before any chunk is finished, since a finish may
    /// write a slot. `full`: the slot closed because it was full; otherwise (a waiter, `flush`,
    /// the flusher, an unbuffered record) the lanes cool down, so that a workload whose slots
    /// close early does not pad a chunk per lane at every close.
    pub(super) fn close_lanes(&self, full: bool, caller: Caller) -> Result<()> {
        let mut open = [0u64; crate::options::MAX_LANES];
        for (lane, old) in self.lanes.iter().zip(open.iter_mut()) {
            // AcqRel: as in `close_lane`.
            *old = lane.word.fetch_or(CLOSED, Ordering::AcqRel);
            if !full && *old & WARM != 0 {
                // AcqRel: as in `close_lane`. A claimer that opened the lane in between loses
                // its WARM: harmless, the bit only decides who claims.
                lane.word.fetch_and(!WARM, Ordering::AcqRel);
            }
        }
        for (lane, &old) in self.lanes.iter().zip(open.iter()) {
            if old & CLOSED == 0 {
                self.close_chunk(lane, old, caller)?;
            }
        }
        Ok(())
    }

    /// Closes `lane` if it is open; the thread that closes it closes its chunk.
    fn close_lane(&self, lane: &Lane, caller: Caller) -> Result<()> {
        // AcqRel: Release orders the closed slot before this for a claimer that reads it
        // (`claim_lane`); Acquire is not needed here but keeps the RMW chain simple to reason
        // about.
        let old = lane.word.fetch_or(CLOSED, Ordering::AcqRel);
        if old & CLOSED != 0 {
            return Ok(());
        }
        self.close_chunk(lane, old, caller)
    }

    /// Closes the chunk of `lane` whose word was `old` (open) before our close of the lane.
    fn close_chunk(&self, lane: &Lane, old: u64, caller: Caller) -> Result<()> {
        let chunk = &lane.chunks[index(old)];
        let close = CLOSED | joined(old) << JOINED_SHIFT;
        // AcqRel: Acquire, in case we finish, makes the joiners' copies visible to us.
        let after = chunk.count.fetch_add(close, Ordering::AcqRel) + close;
        if finished(after) {
            self.finish_chunk(lane, chunk, after, caller)?;
        }
        Ok(())
    }

    /// The finisher's work: pad the chunk's rest, free it, release it on its slot.
    fn finish_chunk(&self, lane: &Lane, chunk: &Chunk, count: u64, caller: Caller) -> Result<()> {
        // Relaxed: ordered by the Acquire RMW that made us the finisher.
        let seq = chunk.seq.load(Ordering::Relaxed);
        let at = chunk.at.load(Ordering::Relaxed);
        let slot = self.slot(seq);
        let used = count & COUNT_MASK;
        let rest = self.lane_chunk - used;
        if rest > 0 {
            // The rest of the chunk was never joined (the lane moved past it) and is ours.
            self.pad_in_slot(slot, at + used, rest);
        }
        // Release: our reads of `seq`/`at` happen before a claimer overwrites them.
        chunk.free.store(true, Ordering::Release);
        lane.freed.notify_all();
        self.counters.lane_chunks.inc();
        if let Some(st) = self.release(slot, self.lane_chunk) {
            self.write_slot(slot, seq, st, caller)?;
        }
        Ok(())
    }

    /// Writes a padding frame over `bytes` bytes at buffer offset `offset` of `slot`: a range
    /// the caller reserved and has not released, of at least a frame header (the join rule
    /// keeps a chunk's rest empty or that big; a frame is that big). A sink without padding
    /// headers (the models' in-memory one) gets none.
    fn pad_in_slot(&self, slot: &Slot, offset: u64, bytes: u64) {
        self.counters.lane_pad_bytes.add(bytes);
        // Relaxed: the caller's unreleased reservation keeps the incarnation, and its `base`,
        // stable (as in `append_in_lane`).
        let lsn = slot.base.load(Ordering::Relaxed).wrapping_add(offset);
        if let Some(header) = self.sink.pad_header(lsn, bytes) {
            // SAFETY: the range is reserved by the caller and not yet released, so nobody else
            // writes it and the slot is not written before the caller's release.
            unsafe {
                slot.bytes
                    .write(offset as usize, &[&header[..self.sink.header_len()]]);
            }
        }
    }

    /// One line per lane for `debug_dump`.
    pub(super) fn dump_lanes(&self, out: &mut String) {
        for (i, lane) in self.lanes.iter().enumerate() {
            let w = lane.word.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "\n  lane[{i}] closed={} chunk={} joined={}",
                w & CLOSED != 0,
                index(w),
                joined(w)
            );
            for (j, c) in lane.chunks.iter().enumerate() {
                if !c.free.load(Ordering::Relaxed) {
                    let n = c.count.load(Ordering::Relaxed);
                    let _ = write!(
                        out,
                        " [{j}: seq={} at={} closed={} final={} released={}]",
                        c.seq.load(Ordering::Relaxed),
                        c.at.load(Ordering::Relaxed),
                        n & CLOSED != 0,
                        (n >> JOINED_SHIFT) & COUNT_MASK,
                        n & COUNT_MASK
                    );
                }
            }
        }
    }
}
