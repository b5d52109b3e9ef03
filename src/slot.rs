//! One slot of the pool: its state word and its buffer.
//!
//! The state word (`docs/design.md`, "The state word"):
//!
//! ```text
//!  bit 63      bits 62..32            bits 31..0
//! +--------+-----------------------+-----------------------+
//! | CLOSED |  joined (31 bits)     |  released (32 bits)   |
//! +--------+-----------------------+-----------------------+
//! ```
//!
//! Read as an `i64`, an open slot is non-negative and a closed one negative: closing "flips the
//! sign". `joined` is the buffer offset where the next joiner's record goes; `released` counts
//! the bytes whose copy has finished. Both start at the slot's `prefill` (buffer bytes that are
//! not used because the segment ends sooner), so `released == joined` means "every joiner has
//! copied". Whoever makes the word *closed with released == joined* — the last releaser, or the
//! closer if everyone had released already — owns the write of the slot. Every change is one
//! atomic read-modify-write of this word, so exactly one thread sees that transition.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, AtomicU8, Ordering, SlotBytes};

pub(crate) const CLOSED: u64 = 1 << 63;
const JOINED_SHIFT: u32 = 32;
const JOINED_MASK: u64 = (1 << 31) - 1;
const RELEASED_MASK: u64 = (1 << 32) - 1;

/// A snapshot of a slot's state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State(pub(crate) u64);

impl State {
    /// An open slot whose first `prefill` buffer bytes are unused.
    pub(crate) fn open(prefill: u64) -> State {
        State(prefill << JOINED_SHIFT | prefill)
    }

    pub(crate) fn closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    pub(crate) fn joined(self) -> u64 {
        (self.0 >> JOINED_SHIFT) & JOINED_MASK
    }

    pub(crate) fn released(self) -> u64 {
        self.0 & RELEASED_MASK
    }

    /// The state after a join of `bytes`.
    pub(crate) fn join(self, bytes: u64) -> State {
        State(self.0 + (bytes << JOINED_SHIFT))
    }

    /// The increment that releases `bytes`.
    pub(crate) fn release_delta(bytes: u64) -> u64 {
        bytes
    }

    /// True when the owner of this state must write the slot: closed and fully released.
    pub(crate) fn complete(self) -> bool {
        self.closed() && self.released() == self.joined()
    }
}

/// The largest slot buffer the state word can describe.
pub(crate) const MAX_SLOT_SIZE: u64 = JOINED_MASK;

/// One entry of the slot pool. An entry is reused for sequence numbers `i, i + N, i + 2N, ...`;
/// each use is an *incarnation*.
pub(crate) struct Slot {
    /// The state word, alone on its cache line: it is the only field written by joiners.
    pub(crate) state: CachePadded<AtomicU64>,
    /// Sequence number of the current incarnation.
    pub(crate) seq: AtomicU64,
    /// Log address of buffer offset 0 (the first used byte is at `base + prefill`).
    pub(crate) base: AtomicU64,
    /// Unused buffer bytes at the front of this incarnation.
    pub(crate) prefill: AtomicU64,
    /// The strongest durability a joiner asked for (a `Level`), read by the slot's writer.
    pub(crate) want: AtomicU8,
    pub(crate) bytes: SlotBytes,
}

impl Slot {
    /// A free entry: closed, so that nobody can join it before it is activated.
    pub(crate) fn new(size: usize) -> Slot {
        Slot {
            state: CachePadded::new(AtomicU64::new(CLOSED)),
            seq: AtomicU64::new(u64::MAX),
            base: AtomicU64::new(0),
            prefill: AtomicU64::new(0),
            want: AtomicU8::new(0),
            bytes: SlotBytes::new(size),
        }
    }

    pub(crate) fn load(&self, order: Ordering) -> State {
        State(self.state.load(order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_word_fields() {
        let s = State::open(3);
        assert!(!s.closed());
        assert_eq!((s.joined(), s.released()), (3, 3));
        let s = s.join(10);
        assert_eq!((s.joined(), s.released()), (13, 3));
        assert!(!s.complete());
        let s = State(s.0 | CLOSED);
        assert!(s.closed() && (s.0 as i64) < 0, "closing flips the sign");
        let s = State(s.0 + State::release_delta(10));
        assert!(s.complete());
        let big = State::open(0).join(MAX_SLOT_SIZE);
        assert_eq!(big.joined(), MAX_SLOT_SIZE);
        assert!(!big.closed());
    }
}
