//! The seam between the log and the file system.
//!
//! The log does all its file I/O through [`Storage`] and [`StorageFile`]. [`OsStorage`] is the
//! real implementation; [`SimStorage`] is an in-memory one that can fail an fdatasync with
//! `EIO`, fail a write with `ENOSPC`, make short writes, and cut power (see its docs). Tests use
//! it through [`Options::storage`](crate::Options::storage).

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

pub use crate::sim::{Fault, SimStorage};

/// A file system, as far as the log needs one.
pub trait Storage: Send + Sync + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// `Some(true)` for a directory, `Some(false)` for anything else, `None` if nothing is there.
    fn kind(&self, path: &Path) -> io::Result<Option<bool>>;
    /// The names of the entries in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it (empty) if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock named by `path`, held until the returned guard drops; `Ok(None)`
    /// if someone else holds it (this process or another).
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;
}

/// An open file.
pub trait StorageFile: Send + Sync {
    /// Writes all of `parts`, one after the other, starting at `offset`.
    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// fdatasync: makes the file's written data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Writes `data` at `offset` and makes that range durable, without waiting for the rest
    /// of the file's unsynced data, which may stay in the page cache. For a header rewritten
    /// into a recycled file whose old, now dead contents are still dirty: an fdatasync would
    /// first write all of them back (tens of ms for a 64 MiB segment). Only for a range inside
    /// the file's durable size. The default is a write and an fdatasync (stronger).
    fn write_durable_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(offset, &[data])?;
        self.sync_data()
    }
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Drops the file's clean cached pages, so that later reads show what the disk holds.
    /// Recovery calls it after an fdatasync of each segment: a page whose writeback failed
    /// (an fdatasync that returned `EIO`, in the crashed session or in the background) is
    /// marked clean by Linux and stays cached with bytes the disk never got, which a later
    /// fdatasync does not write. Read through the cache, such bytes would look like records,
    /// and records acknowledged after them would sit behind a hole on disk. The default does
    /// nothing.
    fn drop_cache(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes or returns how many were there.
pub(crate) fn read_full(
    file: &dyn StorageFile,
    mut offset: u64,
    mut buf: &mut [u8],
) -> io::Result<usize> {
    let want = buf.len();
    while !buf.is_empty() {
        match file.read_at(offset, buf) {
            Ok(0) => break,
            Ok(n) => {
                offset += n as u64;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(want - buf.len())
}

/// The operating system's files.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

/// A held `flock`. Dropping it unlocks explicitly: closing our descriptor alone would not
/// release the lock while a child process forked meanwhile still holds a copy of it (until that
/// child execs), and a `close` followed by a new `open` would then fail with `Locked`.
struct OsLock(File);

impl Drop for OsLock {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an open descriptor we own; LOCK_UN releases the lock of its open
        // file description, whichever descriptors still refer to it.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

struct OsFile(File);

impl StorageFile for OsFile {
    fn write_at(&self, mut offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            self.0.write_all_at(part, offset)?;
            offset += part.len() as u64;
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    /// `pwritev2(RWF_DSYNC)`: the kernel writes back and flushes this range only (and the
    /// metadata needed to read it), as `O_DSYNC` would for this one write. Falls back to a
    /// write and an fdatasync where the flag is not supported.
    fn write_durable_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: `iov` describes `data`, which is borrowed for the whole call; the kernel
        // only reads from it. The descriptor is open for writing and owned by `self`.
        let rc = unsafe { libc::pwritev2(self.0.as_raw_fd(), &iov, 1, at, libc::RWF_DSYNC) };
        if rc >= 0 && rc as usize == data.len() {
            return Ok(());
        }
        if rc < 0 {
            let err = io::Error::last_os_error();
            let unsupported = matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
            );
            if !unsupported && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        // Short, interrupted or unsupported: write it all again the plain way.
        self.write_at(offset, &[data])?;
        self.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)` over the whole file: Linux drops its clean,
    /// unmapped cached pages (dirty ones stay; the caller has just fdatasynced).
    fn drop_cache(&self) -> io::Result<()> {
        // SAFETY: an advice call on a descriptor owned by `self`; it touches no memory of ours.
        let rc =
            unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        // posix_fadvise returns the error number instead of setting errno.
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn kind(&self, path: &Path) -> io::Result<Option<bool>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.is_dir())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own and keep open in the returned guard; the
        // lock belongs to this open file description, so a second open of the same path, in
        // this process or another, conflicts with it.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(Box::new(OsLock(file))));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_durable_at_writes_the_range_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OsStorage.open(&path, true).unwrap();
        file.set_len(8192).unwrap();
        file.write_at(0, &[&[7u8; 8192]]).unwrap();
        file.write_durable_at(4000, b"header").unwrap();
        let mut buf = vec![0u8; 8192];
        assert_eq!(read_full(&*file, 0, &mut buf).unwrap(), 8192);
        assert_eq!(&buf[4000..4006], b"header");
        assert!(buf[..4000].iter().chain(&buf[4006..]).all(|&b| b == 7));
        assert_eq!(file.size().unwrap(), 8192, "the size is unchanged");
    }
}
