//! Configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::storage::{OsStorage, Storage};

/// How durable an append must be before [`Log::append`](crate::Log::append) returns.
///
/// Every level keeps log order: once a record is acknowledged as written (`WriteOnly`) or
/// durable (`FullSync`), so is every record with a smaller [`Lsn`](crate::Lsn), and recovery
/// returns a prefix of the log. (Slots may reach the file out of order; the frontiers that
/// acknowledgements wait for never pass a gap.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Durability {
    /// Returns once the record is in a slot buffer in memory. Lost if the process dies before
    /// the slot is written; the log writes it when the slot fills, on `flush`/`sync`/`close`, or
    /// within about two `flush_interval`s when traffic stops.
    NoSync,
    /// Returns once the record, and every record before it, was written to the file (handed to
    /// the OS page cache). Survives a crash of the process, not a power loss, and not a disk
    /// error: after an fdatasync fails with `EIO` the OS may have dropped what it had not
    /// written, so such records can be missing when the poisoned log is reopened.
    WriteOnly,
    /// Returns once an `fdatasync` that covers the record, and every record before it, has
    /// finished. Survives a power loss. One fdatasync serves every record below it.
    FullSync,
}

/// What `Log::open` does when it finds damage that a crash cannot explain (see `docs/design.md`,
/// "Recovery").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Damage at the end of the log, inside the in-flight window, is a torn tail and is cut;
    /// damage further back fails `open` with [`Error::Corrupt`]. The default.
    TolerateTornTail,
    /// Keep the valid prefix up to the first damage wherever it is, discard everything after it
    /// (including valid records beyond the damage), and open. Use only to salvage a log that
    /// `TolerateTornTail` refuses. A log whose first segment's header is damaged still fails
    /// with [`Error::Corrupt`]: it has no valid prefix to keep.
    KeepValidPrefix,
}

/// The most memory the slot pool may take (`slot_pool` × `slot_size`).
const MAX_POOL_BYTES: u64 = 16 << 30;

/// The largest segment file: a new log zero-fills its first segment inside `open`.
const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// The largest [`Options::max_unsynced`] bound.
pub const MAX_UNSYNCED: u64 = 1 << 40;

/// The most lanes a log can have (see [`Options::lanes`]): a slot's closer closes every lane,
/// so the count is bounded even on machines with many CPUs.
pub const MAX_LANES: usize = 16;

/// Bytes of a lane's chunk, at most.
const LANE_CHUNK: usize = 8 << 10;
/// Slots too small for a chunk this big get no lanes.
const MIN_LANE_CHUNK: usize = 256;
/// Bytes per slot unless [`Options::slot_size`] says otherwise (or the segment is small).
const DEFAULT_SLOT_SIZE: usize = 1 << 20;

/// Options for [`Log::open`](crate::Log::open): `Options::default()` plus chainable setters.
///
/// ```
/// use slotlog::Options;
/// let opts = Options::default().slot_size(64 << 10).slot_pool(4);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) segment_size: u64,
    /// `None`: [`DEFAULT_SLOT_SIZE`], or less for small segments ([`Options::slot_bytes`]).
    pub(crate) slot_size: Option<usize>,
    pub(crate) slot_pool: usize,
    pub(crate) lanes: Option<usize>,
    pub(crate) max_record_size: usize,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) max_unsynced: Option<u64>,
    pub(crate) recovery: RecoveryMode,
    pub(crate) recycle_segments: usize,
    pub(crate) storage: Arc<dyn Storage>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: 64 << 20,
            slot_size: None,
            slot_pool: 4,
            lanes: None,
            max_record_size: 16 << 20,
            flush_interval: Some(Duration::from_millis(10)),
            max_unsynced: None,
            recovery: RecoveryMode::TolerateTornTail,
            recycle_segments: 2,
            storage: Arc::new(OsStorage),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("segment_size", &self.segment_size)
            .field("slot_size", &self.slot_bytes())
            .field("slot_pool", &self.slot_pool)
            .field("lanes", &self.lanes)
            .field("max_record_size", &self.max_record_size)
            .field("flush_interval", &self.flush_interval)
            .field("max_unsynced", &self.max_unsynced)
            .field("recovery", &self.recovery)
            .field("recycle_segments", &self.recycle_segments)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Bytes per segment file, header included. Default 64 MiB. Must hold the largest record
    /// and a slot, and be at most 1 TiB. A new log's first segment is zero-filled inside
    /// `open`, so `open` of a new log takes as long as writing one segment.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Buffer bytes per slot. Default 1 MiB, or a quarter of the segment if that is less (so
    /// that a log with small segments and a small `max_record_size` opens with the default; a
    /// set size may be up to the segment minus its header). At most 1 GiB. Records whose frame
    /// is larger than half a slot are written directly from the caller's memory
    /// ("unbuffered"). Memory is `slot_pool` × this, at most 16 GiB.
    ///
    /// Larger slots mean fewer rotations and fewer, larger writes. On our 2-core test machine,
    /// in paired runs, 1 MiB slots made 128 B `NoSync` appends 6–13% faster than 256 KiB slots
    /// (1, 2 and 64 threads; single report points showed more), with `WriteOnly` and `FullSync`
    /// appends unchanged within the noise (`docs/performance-analysis.md`, "2026-12-06
    /// (night)"). Smaller slots save memory.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = Some(bytes);
        self
    }

    /// Slots in the pool, 3 to 1024. Default 4. Bounds how much log space can be reserved and
    /// not yet written at once (the in-flight window). Three is the minimum because a rotation
    /// that reserves an unbuffered record needs two free entries besides the slot it closes.
    pub fn slot_pool(mut self, slots: usize) -> Self {
        self.slot_pool = slots;
        self
    }

    /// Lanes for small `NoSync` records: per-CPU chunks of the active slot, so that appenders
    /// on different cores do not contend for the slot's state word (`docs/design.md`, "Lanes").
    /// Default: one per CPU (`available_parallelism`, at most [`MAX_LANES`]); none on one CPU
    /// or with slots under 1 KiB. `0` turns them off. A lane's chunk holds 8 KiB (a quarter of
    /// the slot if that is less), and records whose frame (16 + length) is at most a quarter of
    /// a chunk (2 KiB) use a lane once the slot's word is contended. When a slot closes before
    /// a chunk is full, the chunk's rest is written as a padding frame (usually at most one
    /// chunk per lane per slot close; also a whole chunk when claimers race for a lane, or
    /// when a thread gives one back to keep its records in order:
    /// [`Stats::lane_pad_bytes`](crate::Stats::lane_pad_bytes)).
    pub fn lanes(mut self, lanes: usize) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// The largest record `append` accepts. Default 16 MiB.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// How often the background flusher closes and writes the active slot if it holds
    /// anything (whatever its records' durability, and even while it still fills), so that
    /// `NoSync` records reach the file within about two intervals. `None` disables it (then
    /// only a full slot, `flush`, `sync`, a durable append or `close` writes them). Default
    /// 10 ms.
    pub fn flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.flush_interval = interval;
        self
    }

    /// At most this many bytes are ever written to the files beyond what is durable, so that a
    /// power loss cannot make [`Log::open`](crate::Log::open) refuse the log. `None` (the
    /// default) sets no bound.
    ///
    /// Why: slots reach the file out of order, and after a process crash recovery tells a torn
    /// tail from damage by the in-flight window (`docs/design.md`, "Recovery"). After a power
    /// loss the kernel may also have written back unsynced (`NoSync`/`WriteOnly`) data out of
    /// order, leaving a hole further below valid records than that window; without a bound,
    /// `open` then fails with [`Error::Corrupt`](crate::Error::Corrupt) until it is given
    /// [`RecoveryMode::KeepValidPrefix`]. (No `FullSync` acknowledgement is lost either way:
    /// all of them lie below the first hole.) With a bound, a hole after a power loss is always
    /// within it, and recovery cuts it as a torn tail; segment headers record the bound so
    /// that every later `open` allows it.
    ///
    /// How: the async driver thread runs an fdatasync whenever half the bound is written and
    /// not durable, and a slot write that would pass the bound first waits for an fdatasync
    /// ([`Stats::unsynced_waits`](crate::Stats::unsynced_waits) counts those waits). So appends
    /// run at the disk's write bandwidth once they outpace it, and an append, `append_async`
    /// included, may then wait for an fdatasync. The bound must be at least
    /// [`Options::in_flight_window`], a little over 128 MiB with the default options (lower
    /// `max_record_size` or `slot_pool` to allow a smaller bound), and at most [`MAX_UNSYNCED`]
    /// (1 TiB). The price in recovery: damage less than the bound before the last valid frame
    /// counts as a torn tail (cut) rather than as corruption (refused), where without a bound
    /// the in-flight window decides. Segments this log appends to while bounded record the bound
    /// in their headers, so recovery allows it, also in a later session without one, until
    /// `truncate_front` has removed them.
    ///
    /// ```
    /// use slotlog::Options;
    /// // The in-flight window is 4 × 2 MiB (and 128 B) here.
    /// let opts = Options::default().max_record_size(1 << 20).max_unsynced(Some(64 << 20));
    /// ```
    pub fn max_unsynced(mut self, bytes: Option<u64>) -> Self {
        self.max_unsynced = bytes;
        self
    }

    /// What `open` does with damage a crash cannot explain. Default
    /// [`RecoveryMode::TolerateTornTail`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// How many spare segment files to keep for reuse: `truncate_front` keeps removed files
    /// while fewer spares than this are waiting (spares the preparer zero-filled count too) and
    /// deletes the rest. Reused files need no zero-filling. Default 2.
    pub fn recycle_segments(mut self, files: usize) -> Self {
        self.recycle_segments = files;
        self
    }

    /// The storage the log writes through. Default: the operating system's files. Tests use
    /// [`SimStorage`](crate::storage::SimStorage) to inject faults and power cuts.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// The largest frame (header plus record).
    pub(crate) fn max_frame(&self) -> u64 {
        self.max_record_size as u64 + FRAME_HEADER_LEN as u64
    }

    /// The in-flight window: the most log address space these options let the log reserve and
    /// not yet write at one time, `slot_pool` × max(`slot_size`, 2 × (`max_record_size` + 16)):
    /// every pool entry in flight, each a slot buffer or one unbuffered record after at most
    /// the padding of a segment end too small for it (so less than two frames). 134,217,856
    /// bytes (128 MiB and 128 B) with the defaults. Recovery allows a torn tail this wide
    /// (`docs/design.md`, "Recovery"), and [`Options::max_unsynced`] must be at least this.
    ///
    /// ```
    /// use slotlog::Options;
    /// let opts = Options::default().max_record_size(1 << 20);
    /// let bound = opts.in_flight_window().max(64 << 20);
    /// let opts = opts.max_unsynced(Some(bound));
    /// ```
    pub fn in_flight_window(&self) -> u64 {
        self.slot_pool as u64 * (self.slot_bytes() as u64).max(2 * self.max_frame())
    }

    /// The window recovery allows between the first hole and the last valid frame, and that
    /// segment headers record: the in-flight window, or the bound on unsynced bytes if that is
    /// larger ([`Options::max_unsynced`]).
    pub(crate) fn recovery_window(&self) -> u64 {
        self.in_flight_window().max(self.max_unsynced.unwrap_or(0))
    }

    /// The lanes this log uses (see [`Options::lanes`]).
    pub(crate) fn lane_count(&self) -> usize {
        if self.lane_chunk() < MIN_LANE_CHUNK {
            return 0;
        }
        self.lanes.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cpus < 2 {
                0
            } else {
                cpus.min(MAX_LANES)
            }
        })
    }

    /// Bytes per slot: as set, or [`DEFAULT_SLOT_SIZE`] capped at a quarter of the segment so
    /// that a log with small segments (and the default) still opens. Never below the smallest
    /// valid slot, so an unset size never fails validation by itself.
    pub(crate) fn slot_bytes(&self) -> usize {
        self.slot_size.unwrap_or_else(|| {
            let quarter = usize::try_from(self.segment_size / 4).unwrap_or(usize::MAX);
            DEFAULT_SLOT_SIZE.min(quarter).max(2 * FRAME_HEADER_LEN)
        })
    }

    /// Bytes of a lane's chunk: 8 KiB, or a quarter of a slot if that is less.
    pub(crate) fn lane_chunk(&self) -> usize {
        LANE_CHUNK.min(self.slot_bytes() / 4)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidOptions(why));
        if self.slot_pool < 3 || self.slot_pool > 1024 {
            return bad(format!(
                "slot_pool must be in 3..=1024, got {}",
                self.slot_pool
            ));
        }
        let slot_size = self.slot_bytes();
        if !(2 * FRAME_HEADER_LEN..=1 << 30).contains(&slot_size) {
            return bad(format!(
                "slot_size must be in {}..=1 GiB, got {slot_size}",
                2 * FRAME_HEADER_LEN,
            ));
        }
        if let Some(lanes) = self.lanes {
            if lanes > MAX_LANES {
                return bad(format!("lanes must be at most {MAX_LANES}, got {lanes}"));
            }
        }
        if self.max_record_size > 1 << 30 {
            return bad(format!(
                "max_record_size must be at most 1 GiB, got {}",
                self.max_record_size
            ));
        }
        let pool = self.slot_pool as u64 * slot_size as u64;
        if pool > MAX_POOL_BYTES {
            return bad(format!(
                "the slot pool would take {pool} bytes of memory (slot_pool {} × slot_size {slot_size}), at most 16 GiB",
                self.slot_pool
            ));
        }
        if self.segment_size > MAX_SEGMENT_SIZE {
            return bad(format!(
                "segment_size must be at most 1 TiB, got {}",
                self.segment_size
            ));
        }
        let min_segment = SEGMENT_HEADER_LEN as u64 + self.max_frame().max(slot_size as u64);
        if self.segment_size < min_segment {
            return bad(format!(
                "segment_size {} cannot hold the segment header plus the largest frame or slot ({} bytes)",
                self.segment_size, min_segment
            ));
        }
        if let Some(bound) = self.max_unsynced {
            let window = self.in_flight_window();
            // The headers keep the bound as the window recovery allows, so a huge one would
            // turn off the detection of damage for good.
            if bound > MAX_UNSYNCED {
                return bad(format!("max_unsynced must be at most 1 TiB, got {bound}"));
            }
            if bound < window {
                return bad(format!(
                    "max_unsynced ({bound}) must be at least the in-flight window, {window} bytes (slot_pool × max(slot_size, 2 × (max_record_size + 16)))"
                ));
            }
        }
        if let Some(d) = self.flush_interval {
            if d.is_zero() {
                return bad("flush_interval must be non-zero (use None to disable)".into());
            }
        }
        Ok(())
    }
}
