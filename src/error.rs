//! The error type: every failure says what happened and where (file, offset).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// `Result<T, slotlog::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in slotlog.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What slotlog was doing (`"write"`, `"fdatasync"`, `"open"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The byte offset in that file, where one applies.
        offset: Option<u64>,
        /// The underlying error.
        source: io::Error,
    },
    /// Log content failed verification where a crash cannot explain it (see `docs/format.md`).
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// The byte offset of the damage in that file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An append was larger than `Options::max_record_size`. The log is unaffected.
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// An earlier write or fdatasync failed; the log refuses all further work because it can no
    /// longer say what reached the disk. Reopen the log to recover its valid prefix.
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<Error>,
    },
    /// Another `Log` (in this process or another) holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The path given to `Log::open` exists and is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// `Options` that cannot work together.
    InvalidOptions(String),
    /// A [`LogIter`](crate::LogIter) needed records that
    /// [`truncate_front`](crate::Log::truncate_front) removed while it was reading them. The
    /// records it returned before are valid; to go on, start a new iterator (at `start` or
    /// later).
    Truncated {
        /// The address the iterator was reading.
        lsn: crate::Lsn,
        /// The oldest address the log held when this was noticed.
        start: crate::Lsn,
    },
    /// A `Storage` call, or slotlog itself, panicked while the log depended on it finishing
    /// (`during`: `"slot write"`, `"fdatasync"`, `"slot close"`), in whichever thread was doing
    /// that work. The log is poisoned with this cause, so that no waiter waits for what that
    /// work would have finished; the panic itself goes on in the thread that hit it.
    Panicked {
        /// The work that was interrupted.
        during: &'static str,
    },
    /// The log's driver or flusher thread panicked (a bug in slotlog or in a `Storage`)
    /// outside the work [`Error::Panicked`] names; the log is poisoned with this cause, so that
    /// no waiter waits for work that thread would have done. (A panic in the segment preparer
    /// only ends that thread: writers then create segments themselves.)
    BackgroundPanic {
        /// The thread's name.
        thread: &'static str,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: Option<u64>,
        source: io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            offset,
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`Error::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// True for [`Error::Poisoned`], the error every call returns once an I/O failure or a
    /// panic poisoned the log (the failure itself is its `cause`).
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                op,
                path,
                offset: Some(off),
                source,
            } => {
                write!(
                    f,
                    "{op} failed on {} at offset {off}: {source}",
                    path.display()
                )
            }
            Error::Io {
                op,
                path,
                offset: None,
                source,
            } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            Error::Corrupt {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corrupt log: {} at offset {offset}: {reason}",
                    path.display()
                )
            }
            Error::RecordTooLarge { len, max } => {
                write!(
                    f,
                    "record of {len} bytes exceeds max_record_size ({max} bytes)"
                )
            }
            Error::Poisoned { cause } => {
                write!(
                    f,
                    "log is poisoned by an earlier failure ({cause}); reopen it to recover"
                )
            }
            Error::Locked { path } => write!(
                f,
                "log directory is locked by another open Log (lock file {})",
                path.display()
            ),
            Error::NotADirectory { path } => {
                write!(f, "{} exists and is not a directory", path.display())
            }
            Error::InvalidOptions(why) => write!(f, "invalid options: {why}"),
            Error::Truncated { lsn, start } => write!(
                f,
                "the records at {lsn} were removed by truncate_front while the iterator read \
                 them; the log now starts at {start}"
            ),
            Error::BackgroundPanic { thread } => write!(f, "the {thread} thread panicked"),
            Error::Panicked { during } => {
                write!(f, "a panic interrupted work the log depended on ({during})")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
