//! # slotlog
//!
//! A write-ahead-log buffer for multi-threaded storage engines. Many threads append at once:
//! they join a shared *slot* with one CAS on its state word, copy their records into its buffer
//! in parallel, and the last thread to leave writes the whole slot with one `pwrite`. An
//! `fdatasync` covers every record below it (group commit), and each append chooses its
//! [`Durability`]:
//!
//! | level | `append` returns when | survives |
//! |---|---|---|
//! | [`Durability::NoSync`] | the record is in a slot buffer | nothing (written within ~2 `flush_interval`s) |
//! | [`Durability::WriteOnly`] | the record and all before it are written to the file | a process crash |
//! | [`Durability::FullSync`] | an fdatasync covering it and all before it finished | a power loss |
//!
//! ```
//! use slotlog::{Durability, Log, Lsn, Options};
//! # let dir = std::env::temp_dir().join(format!("slotlog-lib-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let log = std::sync::Arc::new(Log::open(&dir, Options::default().segment_size(4 << 20).max_record_size(1 << 20))?);
//! let writers: Vec<_> = (0..4u8)
//!     .map(|t| {
//!         let log = log.clone();
//!         std::thread::spawn(move || log.append(&[t; 100], Durability::FullSync))
//!     })
//!     .collect();
//! for w in writers {
//!     w.join().unwrap()?;
//! }
//! assert_eq!(log.iter(Lsn::ZERO)?.count(), 4);
//! # drop(log);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), slotlog::Error>(())
//! ```
//!
//! `docs/design.md` specifies the slot protocol and the recovery rules, `docs/format.md` the
//! files byte by byte.

#![warn(missing_docs)]

mod buffer;
mod checksum;
mod error;
mod format;
mod log;
mod lsn;
mod options;
mod recovery;
mod scan;
mod segment;
mod sim;
mod slot;
mod stats;
pub mod storage;
mod sync;
mod waiters;

pub use crate::error::{Error, Result};
pub use crate::log::{Log, LogIter, Record, Wait};
pub use crate::lsn::Lsn;
pub use crate::options::{Durability, Options, RecoveryMode, MAX_LANES, MAX_UNSYNCED};
pub use crate::stats::Stats;

/// The slot protocol without files, for the loom models in `loom-tests/` and other model
/// checkers. Not a stable API.
#[doc(hidden)]
pub mod protocol {
    pub use crate::buffer::{BufferConfig, LogBuffer, Sink, TaskWait};
    pub use crate::waiters::Level;
}
