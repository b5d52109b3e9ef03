//! An in-memory [`Storage`] that injects faults and cuts power, for tests.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::storage::{Storage, StorageFile};

/// A fault [`SimStorage`] injects into one future operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An `fdatasync` fails with `EIO` and makes nothing durable. As Linux does, the pages it
    /// failed to write count as clean from then on: reads still return their bytes (from the
    /// cache), a later `sync_data` does not write them, and a power cut or
    /// [`StorageFile::drop_cache`] shows what the disk holds instead. A later write to those
    /// bytes makes them dirty again.
    SyncEio,
    /// A write fails with `ENOSPC` before writing anything.
    WriteEnospc,
    /// A write stores only the first half of its bytes, then fails with `ENOSPC`.
    ShortWrite,
}

/// An in-memory file system with a power switch.
///
/// Every file has a *current* image (what reads see) and a *durable* image (what survives
/// power loss). `sync_data` copies current to durable, except bytes whose writeback failed
/// ([`Fault::SyncEio`]): those stay clean and cached until rewritten or dropped.
/// [`SimStorage::power_cut`] throws away every byte not covered by a completed `sync_data`,
/// optionally keeping half of the last sector of the last unsynced write (a torn write), and
/// makes every handle opened before the cut fail with `EIO`, as if its process had died; so do
/// `open`, `rename` and `remove` until the next `lock` (the next `Log::open`, the "reboot").
/// Directory operations (create, rename, remove) are durable only once `sync_dir` of their
/// directory completes: a power cut brings back the names as of each directory's last
/// `sync_dir` (a file created since is gone, a removed one is back with its durable bytes, a
/// renamed one is under its old name). Directories themselves are durable at once.
#[derive(Default)]
pub struct SimStorage {
    shared: Arc<Shared>,
}

/// What the file system and its open handles share.
#[derive(Default)]
struct Shared {
    state: Mutex<SimState>,
    /// Bumped by every power cut; handles from an older generation are dead.
    generation: AtomicU64,
}

#[derive(Default)]
struct SimState {
    files: HashMap<PathBuf, Arc<Mutex<Image>>>,
    /// The directory entries a power cut leaves: `files` as of each directory's last
    /// `sync_dir`.
    durable_files: HashMap<PathBuf, Arc<Mutex<Image>>>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    /// Set by a power cut until the next `lock` (the next `Log::open`): the processes that were
    /// running are gone, so their threads can no longer create, rename or remove files either.
    down: bool,
    /// Faults waiting to fire: (fault, matching operations to let pass first).
    faults: Vec<(Fault, u64)>,
    syncs: u64,
    /// `sync_data` calls by the name their handle was opened under.
    syncs_by_name: HashMap<PathBuf, u64>,
    durable_writes: u64,
}

#[derive(Default, Clone)]
struct Image {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// The last write not yet covered by a sync: (offset, length).
    last_unsynced_write: Option<(u64, usize)>,
    /// Byte ranges `start..end`, sorted and disjoint, whose writeback failed: cached in
    /// `current`, never written to `durable` by a sync ([`Fault::SyncEio`]).
    lost: Vec<(usize, usize)>,
}

impl Image {
    /// The durable byte at `i` (zero past the durable size).
    fn durable_at(&self, i: usize) -> u8 {
        self.durable.get(i).copied().unwrap_or(0)
    }

    /// A failed writeback: every byte not yet durable becomes clean but stays cached.
    fn fail_writeback(&mut self) {
        let mut i = 0;
        while i < self.current.len() {
            if self.current[i] == self.durable_at(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < self.current.len() && self.current[i] != self.durable_at(i) {
                i += 1;
            }
            self.lost.push((start, i));
        }
        self.lost.sort_unstable();
        // Merge overlaps with ranges lost earlier.
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in self.lost.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.lost = merged;
    }

    /// A write to `start..end` makes those bytes dirty again.
    fn rewrite(&mut self, start: usize, end: usize) {
        let mut kept = Vec::with_capacity(self.lost.len() + 1);
        for &(s, e) in &self.lost {
            if e <= start || s >= end {
                kept.push((s, e));
                continue;
            }
            if s < start {
                kept.push((s, start));
            }
            if e > end {
                kept.push((end, e));
            }
        }
        self.lost = kept;
    }

    /// Copies into `after` (the disk's bytes) a random half, by `seed`, of the pages whose
    /// cached bytes differ from the disk's, except bytes whose writeback failed. Half of those
    /// pages arrive whole; of the other half, each 512-byte sector arrives or not by `seed` (a
    /// writeback the cut interrupted, or a page the kernel wrote back before its last change).
    fn write_back_some(&self, after: &mut Vec<u8>, seed: u64) {
        for start in (0..self.current.len()).step_by(PAGE) {
            let end = (start + PAGE).min(self.current.len());
            let dirty = (start..end).any(|i| self.current[i] != self.durable_at(i));
            let choice = mix(seed ^ start as u64);
            if !dirty || choice & 1 == 0 {
                continue;
            }
            if after.len() < end {
                after.resize(end, 0);
            }
            let torn = choice & 2 != 0;
            for (k, sector) in (start..end).step_by(SECTOR).enumerate() {
                if torn && choice >> (2 + k) & 1 == 0 {
                    continue; // this sector keeps what the disk has
                }
                let sector_end = (sector + SECTOR).min(end);
                after[sector..sector_end].copy_from_slice(&self.current[sector..sector_end]);
            }
            for &(s, e) in &self.lost {
                let (s, e) = (s.max(start), e.min(end));
                for (i, byte) in after.iter_mut().enumerate().take(e).skip(s) {
                    *byte = self.durable_at(i);
                }
            }
        }
    }

    /// A successful sync: every dirty byte becomes durable; failed ones do not.
    fn sync(&mut self) {
        let lost: Vec<(usize, usize, Vec<u8>)> = self
            .lost
            .iter()
            .map(|&(s, e)| (s, e, (s..e).map(|i| self.durable_at(i)).collect()))
            .collect();
        self.durable = self.current.clone();
        for (s, e, bytes) in lost {
            let e = e.min(self.durable.len());
            if s < e {
                self.durable[s..e].copy_from_slice(&bytes[..e - s]);
            }
        }
        self.last_unsynced_write = None;
    }
}

const SECTOR: usize = 512;
const PAGE: usize = 4096;

/// How [`SimStorage`] cuts power.
#[derive(Clone, Copy)]
enum Cut {
    /// Only synced bytes survive.
    Clean,
    /// And half of the last sector of each file's last unsynced write.
    Tear,
    /// And a random half of the unsynced pages (the seed), some of them torn into sectors.
    Writeback(u64),
}

/// FNV-1a of a path's bytes: a seed that does not depend on map order.
fn name_hash(path: &Path) -> u64 {
    path.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// splitmix64: one random word per (seed, page).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SimStorage {
    /// An empty file system.
    pub fn new() -> Arc<SimStorage> {
        Arc::new(SimStorage::default())
    }

    /// Arms `fault` to fire on the operation of its kind after `skip` more such operations
    /// succeed (`skip = 0`: the next one). Faults hit only the log's segment files (handles
    /// opened under a `*.seg` name), not the spare files the background preparer zero-fills,
    /// so that a test's fault reaches the log whatever the preparer is doing.
    pub fn inject(&self, fault: Fault, skip: u64) {
        self.shared.state.lock().faults.push((fault, skip));
    }

    /// Cuts power: see the type's docs. With `tear`, the last unsynced write of each file keeps
    /// the first half of its last sector.
    pub fn power_cut(&self, tear: bool) {
        self.cut(if tear { Cut::Tear } else { Cut::Clean });
    }

    /// Cuts power after the kernel wrote back an arbitrary part of the unsynced data, in no
    /// order, as Linux's writeback may leave a file: each 4 KiB page whose cached bytes differ
    /// from the disk's reached the disk with probability 1/2, chosen by `seed` (and the file's
    /// name and the page's offset, so the choice does not depend on map order). Half of those
    /// pages reached it whole, and the other half in part: each of their 512-byte sectors
    /// holds its new bytes or keeps the disk's, by `seed` (a writeback the cut interrupted, or
    /// a page written back before its last change, whose older bytes are the disk's or its
    /// newest ones, since the log writes each address once). Pages whose writeback failed
    /// ([`Fault::SyncEio`]) keep what the disk has. Otherwise as [`Self::power_cut`] without a
    /// tear.
    pub fn power_cut_with_writeback(&self, seed: u64) {
        self.cut(Cut::Writeback(seed));
    }

    fn cut(&self, how: Cut) {
        let mut st = self.shared.state.lock();
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        st.locks.clear();
        st.faults.clear();
        st.down = true;
        let st = &mut *st;
        st.files = st.durable_files.clone();
        for (path, image) in &st.files {
            let mut img = image.lock();
            let mut after = img.durable.clone();
            if let Cut::Writeback(seed) = how {
                img.write_back_some(&mut after, seed ^ name_hash(path));
            }
            if let (Cut::Tear, Some((off, len))) = (how, img.last_unsynced_write) {
                let end = off as usize + len;
                let sector_start = end.saturating_sub(1) / SECTOR * SECTOR;
                let start = sector_start.max(off as usize);
                let keep_end = start + (end - start) / 2;
                if keep_end > start && keep_end <= img.current.len() {
                    if after.len() < keep_end {
                        after.resize(keep_end, 0);
                    }
                    after[start..keep_end].copy_from_slice(&img.current[start..keep_end]);
                }
            }
            img.current = after.clone();
            img.durable = after;
            img.last_unsynced_write = None;
            img.lost.clear();
        }
    }

    /// Completed `sync_data` calls so far, on any file.
    pub fn syncs(&self) -> u64 {
        self.shared.state.lock().syncs
    }

    /// Completed `sync_data` calls through handles opened under `name` (a file renamed since
    /// keeps its count under the name it was opened as).
    pub fn syncs_of(&self, name: &Path) -> u64 {
        let st = self.shared.state.lock();
        st.syncs_by_name.get(name).copied().unwrap_or(0)
    }

    /// Completed `write_durable_at` calls so far (not counted in [`Self::syncs`]).
    pub fn durable_writes(&self) -> u64 {
        self.shared.state.lock().durable_writes
    }

    /// Bytes, over every file, that a power cut could lose or write back out of order: cached
    /// bytes that differ from the disk's and whose writeback has not failed.
    pub fn unsynced_bytes(&self) -> u64 {
        let st = self.shared.state.lock();
        st.files
            .values()
            .map(|image| {
                let img = image.lock();
                let lost = |i: usize| img.lost.iter().any(|&(s, e)| (s..e).contains(&i));
                (0..img.current.len())
                    .filter(|&i| img.current[i] != img.durable_at(i) && !lost(i))
                    .count() as u64
            })
            .sum()
    }

    /// A copy of the file's current bytes, if it exists (for tests that damage files).
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        self.shared
            .state
            .lock()
            .files
            .get(path)
            .map(|i| i.lock().current.clone())
    }

    /// Replaces the file's bytes, current and durable (for tests that damage files).
    pub fn write_file(&self, path: &Path, bytes: Vec<u8>) {
        let mut st = self.shared.state.lock();
        let image = st.files.entry(path.to_path_buf()).or_default().clone();
        st.durable_files.insert(path.to_path_buf(), image.clone());
        let mut img = image.lock();
        img.current = bytes.clone();
        img.durable = bytes;
    }
}

impl Shared {
    fn take_fault(&self, matches: impl Fn(Fault) -> bool) -> Option<Fault> {
        let mut st = self.state.lock();
        let idx = st.faults.iter().position(|&(f, _)| matches(f))?;
        if st.faults[idx].1 > 0 {
            st.faults[idx].1 -= 1;
            return None;
        }
        Some(st.faults.remove(idx).0)
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: this handle's process is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

struct SimFile {
    shared: Arc<Shared>,
    /// The name this handle was opened under.
    name: PathBuf,
    /// Opened under a segment's name: faults apply.
    segment: bool,
    image: Arc<Mutex<Image>>,
    generation: u64,
}

impl SimFile {
    fn check_alive(&self) -> io::Result<()> {
        if self.shared.generation.load(Ordering::SeqCst) != self.generation {
            return Err(dead());
        }
        Ok(())
    }

    /// The file's image, locked, if this handle is still alive. The generation is checked
    /// *under* the image lock: `power_cut` bumps the generation before it locks any image, so
    /// an operation that sees the old generation here finishes before the cut resets this
    /// image (and is lost with the other unsynced bytes), and one that comes later fails. A
    /// check before taking the lock let a write that raced the cut land in the image after
    /// its reset, surviving the power cut unsynced (`tests/lanes.rs`'s power-cut test then saw
    /// a hole more than the in-flight window below valid records, ~3% of runs).
    fn live_image(&self) -> io::Result<parking_lot::MutexGuard<'_, Image>> {
        let img = self.image.lock();
        self.check_alive()?;
        Ok(img)
    }

    /// An armed `Fault::SyncEio` fails this sync of a segment file (and makes nothing durable).
    fn take_sync_fault(&self) -> io::Result<()> {
        if self.segment && self.shared.take_fault(|f| f == Fault::SyncEio).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        self.check_alive()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let fault = if self.segment {
            self.shared
                .take_fault(|f| matches!(f, Fault::WriteEnospc | Fault::ShortWrite))
        } else {
            None
        };
        let keep = match fault {
            Some(Fault::WriteEnospc) => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(Fault::ShortWrite) => total / 2,
            _ => total,
        };
        let mut img = self.live_image()?;
        let end = offset as usize + keep;
        if img.current.len() < end {
            img.current.resize(end, 0);
        }
        let mut at = offset as usize;
        let mut left = keep;
        for part in parts {
            let n = part.len().min(left);
            img.current[at..at + n].copy_from_slice(&part[..n]);
            at += n;
            left -= n;
        }
        img.last_unsynced_write = Some((offset, keep));
        img.rewrite(offset as usize, end);
        if keep < total {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let img = self.live_image()?;
        let start = (offset as usize).min(img.current.len());
        let n = buf.len().min(img.current.len() - start);
        buf[..n].copy_from_slice(&img.current[start..start + n]);
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check_alive()?;
        if let Err(e) = self.take_sync_fault() {
            self.live_image()?.fail_writeback();
            return Err(e);
        }
        let mut img = self.live_image()?;
        img.sync();
        drop(img);
        let mut st = self.shared.state.lock();
        st.syncs += 1;
        *st.syncs_by_name.entry(self.name.clone()).or_default() += 1;
        Ok(())
    }

    /// Makes only this range durable, like `RWF_DSYNC`: the rest of the file's unsynced
    /// bytes stay lost on a power cut.
    fn write_durable_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(offset, &[data])?;
        if let Err(e) = self.take_sync_fault() {
            self.live_image()?.fail_writeback();
            return Err(e);
        }
        let mut img = self.live_image()?;
        let (from, to) = (offset as usize, offset as usize + data.len());
        if img.durable.len() < to {
            return Err(io::Error::other(
                "write_durable_at beyond the durable size (the sim, like the kernel, would not make the size durable)",
            ));
        }
        let Image {
            current, durable, ..
        } = &mut *img;
        durable[from..to].copy_from_slice(&current[from..to]);
        if img
            .last_unsynced_write
            .is_some_and(|(o, n)| o == offset && n == data.len())
        {
            img.last_unsynced_write = None;
        }
        drop(img);
        self.shared.state.lock().durable_writes += 1;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.live_image()?.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut img = self.live_image()?;
        img.current.resize(len as usize, 0);
        let len = len as usize;
        img.lost.retain_mut(|(s, e)| {
            *e = (*e).min(len);
            *s < *e
        });
        Ok(())
    }

    /// Clean cached bytes are dropped: the bytes whose writeback failed read as the disk holds
    /// them from now on. (Dirty ones stay cached, as in Linux.)
    fn drop_cache(&self) -> io::Result<()> {
        let mut img = self.live_image()?;
        let lost = std::mem::take(&mut img.lost);
        for (s, e) in lost {
            for i in s..e.min(img.current.len()) {
                img.current[i] = img.durable_at(i);
            }
        }
        Ok(())
    }
}

struct SimLock {
    shared: Arc<Shared>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        if self.shared.generation.load(Ordering::SeqCst) == self.generation {
            self.shared.state.lock().locks.remove(&self.path);
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        if st.files.contains_key(dir) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file is in the way",
            ));
        }
        st.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn kind(&self, path: &Path) -> io::Result<Option<bool>> {
        let st = self.shared.state.lock();
        Ok(if st.dirs.contains(path) {
            Some(true)
        } else if st.files.contains_key(path) {
            Some(false)
        } else {
            None
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.shared.state.lock();
        Ok(st
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.shared.state.lock();
        if st.down {
            return Err(dead());
        }
        let image = match st.files.get(path) {
            Some(i) => i.clone(),
            None if create => st.files.entry(path.to_path_buf()).or_default().clone(),
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            segment: path.extension().is_some_and(|e| e == "seg"),
            name: path.to_path_buf(),
            shared: self.shared.clone(),
            image,
            generation: self.shared.generation.load(Ordering::SeqCst),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        if st.down {
            return Err(dead());
        }
        let image = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), image);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        if st.down {
            return Err(dead());
        }
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        if st.down {
            return Err(dead());
        }
        let st = &mut *st;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable_files.retain(|p, _| !in_dir(p));
        for (p, image) in st.files.iter().filter(|(p, _)| in_dir(p)) {
            st.durable_files.insert(p.clone(), image.clone());
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let mut st = self.shared.state.lock();
        st.down = false; // a new process is opening the log: the machine is up again
        if !st.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            shared: self.shared.clone(),
            path: path.to_path_buf(),
            generation: self.shared.generation.load(Ordering::SeqCst),
        })))
    }
}
