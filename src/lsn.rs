//! Log sequence numbers.

use std::fmt;

/// The position of a record in the log: the byte address of its frame in the log's address
/// space (see `docs/format.md`). Strictly increasing in log order; the `Lsn` that
/// [`Log::append`](crate::Log::append) returns is the one the reader reports for that record.
/// LSNs are not dense: frame headers and segment padding take address space too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub(crate) u64);

impl Lsn {
    /// The start of the log: `iter(Lsn::ZERO)` reads everything that is kept.
    pub const ZERO: Lsn = Lsn(0);

    /// The raw address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// An `Lsn` from a raw address, e.g. one stored by the application.
    pub const fn from_u64(raw: u64) -> Lsn {
        Lsn(raw)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({})", self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
