//! Helpers shared by the integration tests.

use slotlog::{Log, Lsn};

/// splitmix64: a tiny seeded generator, so that every run can be replayed from its seed.
pub struct Rng(pub u64);

#[allow(dead_code)] // each test binary uses a subset
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi_incl`.
    pub fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// The seed from `SLOTLOG_TEST_SEED`, or a fresh one; printed so a failure can be replayed.
#[allow(dead_code)]
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SLOTLOG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (replay with SLOTLOG_TEST_SEED={seed})");
    seed
}

/// A self-verifying record: `[id u64][len u32]` then bytes derived from the id.
#[allow(dead_code)]
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let len = len.max(12);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut r = Rng(id);
    while v.len() < len {
        v.push(r.next() as u8);
    }
    v
}

/// Checks a record made by [`payload`] and returns its id.
#[allow(dead_code)]
pub fn verify(data: &[u8]) -> u64 {
    assert!(
        data.len() >= 12,
        "record of {} bytes is not one of ours",
        data.len()
    );
    let id = u64::from_le_bytes(data[..8].try_into().unwrap());
    assert_eq!(data, &payload(id, data.len())[..], "record {id} is corrupt");
    id
}

/// Every record of `log`, with its address.
#[allow(dead_code)]
pub fn read_all(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.iter(Lsn::ZERO)
        .unwrap()
        .map(|r| r.map(|r| (r.lsn(), r.into_data())))
        .collect::<slotlog::Result<_>>()
        .unwrap_or_else(|e| panic!("iterating the recovered log failed: {e}"))
}

/// Waits until `log` has installed `n` segment files (from a spare or made sparse; the
/// preparer makes the next one in the background), failing with the log's state after 30 s: a
/// hang detector, not a timing assumption.
#[allow(dead_code)]
pub fn wait_for_segments(log: &Log, n: u64) {
    let installed = |s: slotlog::Stats| s.segments_recycled + s.segments_sparse;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while installed(log.stats()) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the preparer never made segment {n}: {}",
            log.debug_state()
        );
        std::thread::yield_now();
    }
}

/// A `SimStorage` whose log segment files (opened under a `*.seg` name, not the preparer's
/// spares) run every `sync_data` through a hook: `around_sync(sync)` must call `sync` (or not)
/// and return its result. Tests use it to count the log's fdatasyncs or to fail them in ways
/// `Fault` does not cover; [`SyncHook::with_writes`] hooks their `write_at` too. (The
/// installer writes a segment's header through the spare's own handle, before the rename, so
/// that write and its fdatasync bypass the hooks.)
#[allow(dead_code)]
pub struct SyncHook {
    sim: std::sync::Arc<slotlog::storage::SimStorage>,
    around_sync: std::sync::Arc<AroundIo>,
    around_write: std::sync::Arc<AroundIo>,
}

/// A hook around one I/O call: it must call the operation (or not) and return its result.
type AroundIo = dyn Fn(&dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> + Send + Sync;

/// What `SyncHook` accepts as a hook ([`AroundIo`] before boxing).
pub trait IoHook:
    Fn(&dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> + Send + Sync + 'static
{
}

impl<F> IoHook for F where
    F: Fn(&dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> + Send + Sync + 'static
{
}

struct HookedFile {
    inner: std::sync::Arc<dyn slotlog::storage::StorageFile>,
    around_sync: std::sync::Arc<AroundIo>,
    around_write: std::sync::Arc<AroundIo>,
}

#[allow(dead_code)]
impl SyncHook {
    pub fn new(
        sim: std::sync::Arc<slotlog::storage::SimStorage>,
        around_sync: impl IoHook,
    ) -> std::sync::Arc<SyncHook> {
        Self::with_writes(sim, around_sync, |write| write())
    }

    /// Hooks the segments' writes as well: `around_write(write)` runs in place of each
    /// `write_at` (e.g. to hold writers until a test lets them go).
    pub fn with_writes(
        sim: std::sync::Arc<slotlog::storage::SimStorage>,
        around_sync: impl IoHook,
        around_write: impl IoHook,
    ) -> std::sync::Arc<SyncHook> {
        std::sync::Arc::new(SyncHook {
            sim,
            around_sync: std::sync::Arc::new(around_sync),
            around_write: std::sync::Arc::new(around_write),
        })
    }
}

/// Holds the log's segment writes on demand: a [`SyncHook`] storage whose writes wait while the
/// gate is held. For tests that need slots stuck in their writes (a busy write pipe, a full
/// pool). Opening it lets every held writer go.
#[derive(Clone, Default)]
#[allow(dead_code)]
pub struct WriteGate(std::sync::Arc<(parking_lot::Mutex<GateState>, parking_lot::Condvar)>);

#[derive(Default)]
struct GateState {
    held: bool,
    /// Writers waiting inside a held write.
    waiting: usize,
}

#[allow(dead_code)]
impl WriteGate {
    /// A storage over a new `SimStorage` whose segment writes pass this gate.
    pub fn storage(&self) -> std::sync::Arc<SyncHook> {
        let gate = self.clone();
        SyncHook::with_writes(
            slotlog::storage::SimStorage::new(),
            |sync| sync(),
            move |write| {
                let (lock, cv) = &*gate.0;
                let mut g = lock.lock();
                g.waiting += 1;
                cv.notify_all();
                while g.held {
                    cv.wait(&mut g);
                }
                g.waiting -= 1;
                drop(g);
                write()
            },
        )
    }

    pub fn hold(&self) {
        self.0 .0.lock().held = true;
    }

    pub fn open(&self) {
        self.0 .0.lock().held = false;
        self.0 .1.notify_all();
    }

    /// Waits until `n` writers wait at the held gate; fails after 20 s (a hang detector).
    pub fn wait_for_writers(&self, n: usize) {
        let (lock, cv) = &*self.0;
        let mut g = lock.lock();
        while g.waiting < n {
            let timed_out = cv
                .wait_for(&mut g, std::time::Duration::from_secs(20))
                .timed_out();
            assert!(
                !timed_out,
                "{} of {n} writers reached a held write",
                g.waiting
            );
        }
    }
}

mod sync_hook_impls {
    use std::any::Any;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use slotlog::storage::{Storage, StorageFile};

    use super::{HookedFile, SyncHook};

    impl StorageFile for HookedFile {
        fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
            (self.around_write)(&|| self.inner.write_at(offset, parts))
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read_at(offset, buf)
        }
        fn sync_data(&self) -> io::Result<()> {
            (self.around_sync)(&|| self.inner.sync_data())
        }
        fn size(&self) -> io::Result<u64> {
            self.inner.size()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn drop_cache(&self) -> io::Result<()> {
            self.inner.drop_cache()
        }
    }

    impl Storage for SyncHook {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.sim.create_dir_all(dir)
        }
        fn kind(&self, path: &Path) -> io::Result<Option<bool>> {
            self.sim.kind(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.sim.list(dir)
        }
        fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
            let inner = self.sim.open(path, create)?;
            if !path.to_string_lossy().ends_with(".seg") {
                return Ok(inner);
            }
            Ok(Arc::new(HookedFile {
                inner,
                around_sync: self.around_sync.clone(),
                around_write: self.around_write.clone(),
            }))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.sim.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            self.sim.remove(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.sim.sync_dir(dir)
        }
        fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
            self.sim.lock(path)
        }
    }
}
