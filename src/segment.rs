//! Segment files: the log's address space cut into files, created ahead of the writers.
//!
//! Segment `i` holds addresses `base .. base + payload` at file offsets
//! `SEGMENT_HEADER_LEN ..`. Segments are contiguous. New segments are made before the writers
//! reach them by a background thread ("Segment preparation" in `docs/design.md`): a file from
//! `truncate_front` is reused if one is kept, otherwise a new file is zero-filled, because on
//! our disks an fdatasync after writing into already-written blocks costs ~110 µs against
//! ~180 µs when the write grows the file and ~250 µs on `fallocate`d extents.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::buffer::Sink;
use crate::error::{Error, Result};
use crate::format::{self, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::storage::{Storage, StorageFile};

/// Bytes of zeros the preparer writes between two fdatasyncs of a spare.
const ZERO_FILL_SYNC_EVERY: u64 = 8 << 20;

/// Bytes per write of the zero-fill. The page cache sizes a new folio by the write that
/// creates it, and a spare keeps those folios while its pages stay cached; ext4 walks every
/// block buffer of a folio in each write into it and each writeback of it. Measured here
/// (write + fdatasync at sequential offsets, docs/performance-analysis.md, "Folio size"): after
/// 1 MiB zero writes, 528 B appends ran 8–15% slower at ~5 µs more CPU than after page-sized
/// ones; after page-sized ones, 32 KiB appends ran ~12% slower than after 16–64 KiB ones.
/// 16 KiB is within 2% of the best at both ends.
const ZERO_FILL_WRITE: usize = 16 << 10;

/// One segment file.
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
}

impl Segment {
    pub(crate) fn base(&self) -> u64 {
        self.header.base
    }

    pub(crate) fn end(&self) -> u64 {
        self.header.end()
    }

    /// The file offset of log address `lsn`.
    pub(crate) fn offset_of(&self, lsn: u64) -> u64 {
        SEGMENT_HEADER_LEN as u64 + (lsn - self.header.base)
    }
}

/// The geometry every new segment gets.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) log_id: u64,
    pub(crate) payload: u64,
    pub(crate) window: u64,
    pub(crate) max_record: u64,
}

/// All segment files of an open log.
pub(crate) struct Segments {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    geometry: Geometry,
    crc: format::FrameCrc,
    /// Ordered by base, contiguous.
    list: RwLock<Vec<Arc<Segment>>>,
    /// Serialises creation, so a segment is made once. Holds `syncs` as it was at the last
    /// successful creation: whether the log fdatasynced since then decides how the next one is
    /// installed (see `create`).
    creating: Mutex<u64>,
    /// Files kept by `truncate_front` for reuse.
    spares: Mutex<Vec<PathBuf>>,
    /// Held for a whole `truncate_front` call: see there.
    truncating: Mutex<()>,
    recycle_limit: usize,
    /// The highest address a writer has started writing at; tells the preparer how far ahead
    /// it must be.
    write_hint: AtomicU64,
    prepare_wanted: Mutex<bool>,
    /// fdatasyncs through the sink; the preparer zero-fills only for a log that uses them.
    syncs: AtomicU64,
    prepare_cv: Condvar,
    shutdown: AtomicBool,
    /// Spares zero-filled by the preparer.
    pub(crate) created: AtomicU64,
    /// Segments installed from a spare (zero-filled or kept by `truncate_front`).
    pub(crate) recycled: AtomicU64,
    /// Segments made as new sparse files because no spare was ready.
    pub(crate) sparse: AtomicU64,
    /// Segments a writer had to install on the append path: the preparer was behind.
    pub(crate) unprepared: AtomicU64,
}

impl Segments {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        geometry: Geometry,
        list: Vec<Arc<Segment>>,
        recycle_limit: usize,
    ) -> Segments {
        Segments {
            storage,
            dir,
            crc: format::FrameCrc::new(geometry.log_id),
            geometry,
            list: RwLock::new(list),
            creating: Mutex::new(0),
            spares: Mutex::new(Vec::new()),
            truncating: Mutex::new(()),
            recycle_limit,
            write_hint: AtomicU64::new(0),
            prepare_wanted: Mutex::new(false),
            syncs: AtomicU64::new(0),
            prepare_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            created: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            sparse: AtomicU64::new(0),
            unprepared: AtomicU64::new(0),
        }
    }

    pub(crate) fn frame_crc(&self) -> &format::FrameCrc {
        &self.crc
    }

    pub(crate) fn snapshot(&self) -> Vec<Arc<Segment>> {
        self.list.read().clone()
    }

    /// The base of the oldest segment (0 before the first one exists).
    pub(crate) fn first_base(&self) -> u64 {
        self.list.read().first().map_or(0, |s| s.base())
    }

    /// The segment holding address `lsn`, if it exists.
    pub(crate) fn find(&self, lsn: u64) -> Option<Arc<Segment>> {
        let list = self.list.read();
        let i = list.partition_point(|s| s.end() <= lsn);
        list.get(i).filter(|s| s.base() <= lsn).cloned()
    }

    /// Makes sure the segments up to the one holding `lsn` exist, creating them now if the
    /// preparer is behind. `None` if `lsn` lies below the first segment, which `truncate_front`
    /// removed: the preparer acting on a `last_end` it read just before a truncation (writers
    /// never write below the written frontier, and truncation never passes it). Creating
    /// segments from the end until one held such an address would never stop (found by the
    /// recycled-segment power-cut test: the preparer filled memory; on a disk it would fill
    /// the disk).
    /// `by_writer`: the caller is a writer on the append path (counted when it has to create
    /// a segment: the preparer was behind).
    pub(crate) fn ensure(&self, lsn: u64, by_writer: bool) -> Result<Option<Arc<Segment>>> {
        if let Some(s) = self.find(lsn) {
            return Ok(Some(s));
        }
        let mut syncs_at_last_create = self.creating.lock();
        loop {
            if let Some(s) = self.find(lsn) {
                return Ok(Some(s));
            }
            let (first_base, base) = {
                let list = self.list.read();
                (
                    list.first().map_or(0, |s| s.base()),
                    list.last().map_or(0, |s| s.end()),
                )
            };
            if lsn < first_base {
                return Ok(None);
            }
            let seg = self.create(base, by_writer, &mut syncs_at_last_create)?;
            self.list.write().push(seg);
        }
    }

    /// Creates the segment file for `base`, complete and durable (header, size, directory
    /// entry) before it is used. Takes a spare file if one is ready (zero-filled by the
    /// preparer, or kept by `truncate_front`): its blocks are already written, the fast case
    /// for fdatasync. Otherwise it makes a sparse file at once rather than zero-filling 64 MiB
    /// here: a writer may be waiting, and the preparer zero-fills a spare beforehand only where
    /// that pays off (a log that fdatasyncs).
    /// `syncs_at_last_create` is the `creating` lock's value, held by the caller.
    fn create(
        &self,
        base: u64,
        by_writer: bool,
        syncs_at_last_create: &mut u64,
    ) -> Result<Arc<Segment>> {
        let g = self.geometry;
        let header = SegmentHeader {
            log_id: g.log_id,
            base,
            payload: g.payload,
            window: g.window,
            max_record: g.max_record,
        };
        let path = self.dir.join(format::segment_file_name(base));
        let io = |op, p: &Path, e| Error::io(op, p, None, e);
        if !format::segment_fits(base, g.payload) {
            // The top bit of a frame's address word names its checksum kind (format.md).
            let full = std::io::Error::other("log address space (2^63 bytes) exhausted");
            return Err(io("create", &path, full));
        }
        let size = SEGMENT_HEADER_LEN as u64 + g.payload;
        let spare = self.spares.lock().pop();
        let (from, create) = match &spare {
            Some(spare) => (spare.clone(), false),
            None => (
                self.dir
                    .join(format!("{}.tmp", format::segment_file_name(base))),
                true,
            ),
        };
        // New header first, durable, then the rename: a `.seg` name always carries a valid
        // header. A reused file's old frames cannot verify at their new addresses.
        let file = self
            .storage
            .open(&from, create)
            .map_err(|e| io("open", &from, e))?;
        if create {
            file.set_len(0).map_err(|e| io("set_len", &from, e))?;
        }
        let resized = file.size().map_err(|e| io("stat", &from, e))? != size;
        if resized {
            file.set_len(size).map_err(|e| io("set_len", &from, e))?;
        }
        // Relaxed: a heuristic; any value gives a valid choice.
        let syncs = self.syncs.load(Ordering::Relaxed);
        let log_syncs = syncs != *syncs_at_last_create;
        if resized || log_syncs {
            // A new size must be durable too: fdatasync (cheap, nothing else is dirty). And in
            // a log that fdatasynced since the last segment was made, a recycled file's old
            // records still in the page cache are written back now, here (normally on the
            // preparer), rather than by the first fdatasync of an appender in the new segment.
            file.write_at(0, &[&header.encode()])
                .map_err(|e| io("write", &from, e))?;
            file.sync_data().map_err(|e| io("fdatasync", &from, e))?;
        } else {
            // A spare of full size in a log that has not fdatasynced since the last segment
            // was made (it writes NoSync/WriteOnly traffic, or syncs rarely). A recycled one may
            // still hold its old records as dirty pages: they are dead, and the appends will
            // overwrite them, so make only the new header durable instead of waiting for all
            // of them to be written back (50-90 ms per 64 MiB segment here).
            file.write_durable_at(0, &header.encode())
                .map_err(|e| io("write+sync", &from, e))?;
        }
        self.storage
            .rename(&from, &path)
            .map_err(|e| io("rename", &from, e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| io("fsync", &self.dir, e))?;
        // Only now: a creation that failed before this point leaves the next one to decide
        // again (its error surfaces to a writer in any case).
        *syncs_at_last_create = syncs;
        // Use a handle opened under the segment's own name from here on.
        drop(file);
        let file = self
            .storage
            .open(&path, false)
            .map_err(|e| io("open", &path, e))?;
        match spare {
            Some(_) => self.recycled.fetch_add(1, Ordering::Relaxed),
            None => self.sparse.fetch_add(1, Ordering::Relaxed),
        };
        if by_writer {
            self.unprepared.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Arc::new(Segment { header, path, file }))
    }

    /// Zero-fills a new spare file to full segment size and fdatasyncs it, without holding any
    /// lock the writers need. Spares are not part of the log: losing one in a crash is harmless.
    fn prepare_spare(&self) -> Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let name = format!("spare-new-{nanos:016x}-{id}.seg.free");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let size = SEGMENT_HEADER_LEN as u64 + self.geometry.payload;
        let file = self
            .storage
            .open(&tmp, true)
            .map_err(|e| Error::io("create", &tmp, None, e))?;
        let zeros = vec![0u8; ZERO_FILL_WRITE];
        let mut at = 0;
        let mut unsynced = 0;
        while at < size {
            // An fdatasync every few MiB, so that the log's own fdatasyncs, which share the
            // device queue with ours, never wait behind a whole segment of zeros.
            if unsynced >= ZERO_FILL_SYNC_EVERY {
                file.sync_data()
                    .map_err(|e| Error::io("fdatasync", &tmp, None, e))?;
                unsynced = 0;
            }
            if self.shutdown.load(Ordering::Acquire) {
                drop(file);
                let _ = self.storage.remove(&tmp);
                return Ok(());
            }
            let n = (size - at).min(zeros.len() as u64) as usize;
            file.write_at(at, &[&zeros[..n]])
                .map_err(|e| Error::io("write", &tmp, Some(at), e))?;
            at += n as u64;
            unsynced += n as u64;
        }
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &tmp, None, e))?;
        let path = self.dir.join(name);
        self.storage
            .rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, None, e))?;
        self.spares.lock().push(path);
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Drops whole segments that end at or before `upto`, keeping at least the last one. Up to
    /// `recycle_limit` files are kept for reuse.
    pub(crate) fn truncate_front(&self, upto: u64) -> Result<usize> {
        // One call at a time. Each removes its segments lowest first, every change durable
        // before the next; a second call beside it removed higher segments while lower ones
        // were still in place, and a power cut between left a gap that `open` refuses (found by
        // review, 2026-12-07; `tests/powercut.rs`
        // `concurrent_truncate_fronts_leave_a_contiguous_log`).
        let _one_at_a_time = self.truncating.lock();
        // The segments to remove, lowest first. Each stays in the list until its rename or
        // removal is durable: until then every fdatasync covers it (it may hold bytes written
        // and not durable: the cut is at the written frontier), readers still read it through
        // its handle, and `start_lsn` does not move. A segment taken out before its directory
        // change was durable let an fdatasync skip its unsynced bytes and move the durable
        // frontier over them; a power cut brought the segment back with a hole, and recovery
        // cut a FullSync ack made meanwhile (found by review, 2026-12-07; `tests/powercut.rs`
        // `truncate_front_never_lets_an_fdatasync_pass_unsynced_bytes_of_a_segment_it_removes`).
        let removing: Vec<Arc<Segment>> = {
            let list = self.list.read();
            let keep_from = list
                .partition_point(|s| s.end() <= upto)
                .min(list.len().saturating_sub(1));
            list[..keep_from].to_vec()
        };
        // Spares whose new names are durable.
        let mut kept = Vec::new();
        let mut result = Ok(removing.len());
        // Lowest first, each rename or removal durable before the next: a power cut leaves the
        // segments a contiguous run whatever order the file system would persist directory
        // changes in (ext4 keeps them in order; POSIX does not promise it). On an error the
        // segments not yet removed are still in the list, so the next call starts with them
        // (forgotten, a later call removed a higher one and left a gap: found by review,
        // 2026-12-07; `tests/powercut.rs`
        // `a_failed_truncate_front_keeps_the_segments_it_did_not_remove`).
        for seg in &removing {
            let mut spare = (self.spares.lock().len() + kept.len() < self.recycle_limit)
                .then(|| self.dir.join(format!("spare-{:016x}.seg.free", seg.base())));
            let remove = || {
                self.storage
                    .remove(&seg.path)
                    .map_err(|e| Error::io("remove", &seg.path, None, e))
            };
            let moved = match &spare {
                Some(to) => match self.storage.rename(&seg.path, to) {
                    // A full disk or quota refuses a rename whose new name needs a directory
                    // block, which is when a caller truncates to free space: remove the file
                    // instead (keeping it for reuse only saves a zero-fill). If the name is
                    // gone after all, the removal fails and the check below settles it.
                    Err(e) if is_out_of_space(&e) => {
                        spare = None;
                        remove()
                    }
                    other => other.map_err(|e| Error::io("rename", &seg.path, None, e)),
                },
                None => remove(),
            };
            let moved_ok = moved.is_ok();
            if let Err(e) = moved {
                // An operation can fail after it took effect (a network file system, a
                // wrapping `Storage`), and a directory fsync that failed in an earlier call
                // leaves a segment in the list whose name is gone. Either is done once the
                // directory fsync below succeeds; stopping at it would stop every later call
                // at that name. (Its file, if renamed, is found as a spare at the next `open`.)
                let gone = matches!(self.storage.kind(&seg.path), Ok(None));
                if !gone {
                    result = Err(e);
                    break;
                }
            }
            if let Err(e) = self.storage.sync_dir(&self.dir) {
                // Renamed or removed, maybe not durably: it stays in the list, and the next
                // call, finding its name gone, finishes it.
                result = Err(Error::io("fsync", &self.dir, None, e));
                break;
            }
            // Durable, with every earlier change to the directory: out of the log for good.
            // Calls run one at a time and installers only append, so it is still the first.
            let mut list = self.list.write();
            debug_assert!(list.first().is_some_and(|s| Arc::ptr_eq(s, seg)));
            list.remove(0);
            drop(list);
            if let (true, Some(spare)) = (moved_ok, spare) {
                kept.push(spare);
            }
        }
        // Offered for reuse only once their new names are durable: an installer makes its new
        // header durable before its own directory fsync, so a spare taken earlier could be
        // found after a power cut under its old `.seg` name with a header for another base, and
        // the log would not open. (A file whose rename was not made durable is found as a spare
        // at the next open.)
        self.spares.lock().extend(kept);
        result
    }

    /// Registers a spare file found at open.
    pub(crate) fn add_spare(&self, path: PathBuf) {
        self.spares.lock().push(path);
    }

    // ----- the preparer ---------------------------------------------------------------------

    /// Asks the preparer to make sure the segment after the one being written exists.
    fn nudge(&self, lsn: u64) {
        self.write_hint.fetch_max(lsn, Ordering::Relaxed);
        let last_base = self.list.read().last().map_or(0, |s| s.base());
        if lsn >= last_base {
            *self.prepare_wanted.lock() = true;
            self.prepare_cv.notify_one();
        }
    }

    /// Creates the first segment of a new log, zero-filled like every prepared one. Part of
    /// `open`, so the first appends already find written blocks.
    pub(crate) fn create_first(&self) -> Result<()> {
        self.prepare_spare()?;
        self.ensure(0, false).map(drop)
    }

    /// The preparer thread's loop: whenever a writer enters the last segment, make the next.
    ///
    /// Zero-filling only pays off for fdatasync latency, and it doubles the bytes written. So
    /// the preparer zero-fills (a spare, then installs it) only if the log has fdatasynced since
    /// the last time; a log that only writes gets a sparse next segment, made here rather than by
    /// a writer on the append path.
    pub(crate) fn run_preparer(&self) {
        let mut syncs_seen = 0;
        loop {
            {
                let mut wanted = self.prepare_wanted.lock();
                while !*wanted && !self.shutdown.load(Ordering::Acquire) {
                    self.prepare_cv.wait(&mut wanted);
                }
                *wanted = false;
            }
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            let syncs = self.syncs.load(Ordering::Relaxed);
            let zero_fill = syncs != syncs_seen;
            syncs_seen = syncs;
            // Errors here surface again, with context, when a writer creates the segment.
            if zero_fill && self.spares.lock().is_empty() && self.prepare_spare().is_err() {
                continue;
            }
            let Some(last) = self.list.read().last().map(|s| s.base()..s.end()) else {
                continue;
            };
            // Only while a writer is in the last segment. A wake left from a nudge in an
            // earlier segment (the writer, or this loop, made the next one meanwhile) used to
            // make a second segment ahead of the writer: an extra file, zero-filled in a log
            // that syncs (found by a flaky `tests/basic.rs`
            // `segment_stats_account_for_every_segment_file`, 2026-12-07).
            if last.contains(&self.write_hint.load(Ordering::Relaxed))
                && !self.shutdown.load(Ordering::Acquire)
            {
                let _ = self.ensure(last.end, false);
            }
        }
    }

    pub(crate) fn stop_preparer(&self) {
        self.shutdown.store(true, Ordering::Release);
        let _guard = self.prepare_wanted.lock();
        self.prepare_cv.notify_all();
    }
}

/// The segment files as the slot protocol's sink.
pub(crate) struct SegmentSink(pub(crate) Arc<Segments>);

impl Sink for SegmentSink {
    fn header_len(&self) -> usize {
        FRAME_HEADER_LEN
    }

    fn record_header(&self, lsn: u64, data: &[u8]) -> [u8; FRAME_HEADER_LEN] {
        format::record_header(&self.0.crc, lsn, data)
    }

    fn pad_header(&self, lsn: u64, total: u64) -> Option<[u8; FRAME_HEADER_LEN]> {
        (total >= FRAME_HEADER_LEN as u64).then(|| format::pad_header(&self.0.crc, lsn, total))
    }

    fn segment_end(&self, lsn: u64) -> u64 {
        let list = self.0.list.read();
        let last = list.last().expect("a log always has a segment");
        if lsn < last.end() {
            let i = list.partition_point(|s| s.end() <= lsn);
            return list[i].end();
        }
        let payload = self.0.geometry.payload;
        last.end() + ((lsn - last.end()) / payload + 1) * payload
    }

    fn write(&self, lsn: u64, parts: &[&[u8]]) -> Result<()> {
        let Some(seg) = self.0.ensure(lsn, true)? else {
            // Below the first segment (see `ensure`): truncated, nothing to keep. Not expected
            // from a writer, which never writes below the written frontier.
            return Ok(());
        };
        self.0.nudge(lsn);
        let offset = seg.offset_of(lsn);
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if lsn + len > seg.end() {
            // Never expected: frames are placed so that none crosses a segment end. Refused
            // rather than written past the end, where a reader would cut the log at it: the
            // error poisons the log before anything in it is acknowledged.
            let crossing = std::io::Error::other(format!(
                "a write of {len} bytes at address {lsn} would cross the segment end {}",
                seg.end()
            ));
            return Err(Error::io("write", &seg.path, Some(offset), crossing));
        }
        seg.file
            .write_at(offset, parts)
            .map_err(|e| Error::io("write", &seg.path, Some(offset), e))
    }

    fn sync(&self, from: u64, to: u64) -> Result<()> {
        self.0.syncs.fetch_add(1, Ordering::Relaxed);
        // The list holds every segment whose removal is not durable yet (`truncate_front`).
        for seg in self.0.snapshot() {
            if seg.end() > from && seg.base() < to {
                seg.file
                    .sync_data()
                    .map_err(|e| Error::io("fdatasync", &seg.path, None, e))?;
            }
        }
        Ok(())
    }
}

/// `ENOSPC` or `EDQUOT`: the file system has no room (`io::ErrorKind::StorageFull` and
/// `QuotaExceeded` need Rust 1.83, above the crate's MSRV).
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}
