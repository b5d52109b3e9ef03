//! crates.io write-ahead logs, each used the way its documentation recommends for durable
//! appends. Levels a peer cannot express are reported as unsupported, never emulated.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::common::{Durability, Wal};

/// raft-engine (TiKV), `default-features = false`, `Config::default()`: one `LogBatch` with one
/// key/value put per append, `Engine::write(batch, sync)`. Concurrent writes form leader/follower
/// write groups; `sync = true` makes the group leader fdatasync (Linux) after writing the group.
/// `sync = false` returns after the group was written to the file (WriteOnly). No NoSync level.
pub struct RaftEngine {
    engine: raft_engine::Engine,
}

impl RaftEngine {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let cfg = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let engine = raft_engine::Engine::open(cfg).map_err(io::Error::other)?;
        Ok(RaftEngine { engine })
    }
}

thread_local! {
    static KEY: u64 = {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Wal for RaftEngine {
    fn name(&self) -> String {
        "raft-engine".into()
    }
    fn supports(&self, d: Durability) -> bool {
        d != Durability::NoSync
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        // One region per thread, one key overwritten: the memtable stays small.
        let region = KEY.with(|k| *k);
        let mut batch = raft_engine::LogBatch::default();
        batch
            .put(region, b"k".to_vec(), rec.to_vec())
            .map_err(io::Error::other)?;
        self.engine
            .write(&mut batch, d == Durability::FullSync)
            .map_err(io::Error::other)?;
        Ok(())
    }
}

/// okaywal: `begin_entry()`, `write_chunk(rec)`, `commit()`. A commit returns after an
/// fdatasync (`File::sync_data`) covering the entry; commits queued while one sync runs share
/// the next one. Every commit is durable: no NoSync or WriteOnly level.
pub struct OkayWal {
    wal: okaywal::WriteAheadLog,
}

impl OkayWal {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        Ok(OkayWal {
            wal: okaywal::WriteAheadLog::recover(dir, okaywal::LogVoid)?,
        })
    }
}

impl Wal for OkayWal {
    fn name(&self) -> String {
        "okaywal".into()
    }
    fn supports(&self, d: Durability) -> bool {
        d == Durability::FullSync
    }
    fn append(&self, rec: &[u8], _d: Durability) -> io::Result<()> {
        let mut entry = self.wal.begin_entry()?;
        entry.write_chunk(rec)?;
        entry.commit()?;
        Ok(())
    }
}

/// wal-db: `append` reserves a byte range with one atomic add and writes the record there
/// (page cache: WriteOnly, but only for this record, not the ones before it);
/// `append_and_sync` adds a group-committed fdatasync (FullSync). No NoSync level.
pub struct WalDb {
    wal: wal_db::Wal,
}

impl WalDb {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        Ok(WalDb {
            wal: wal_db::Wal::open(dir.join("app.wal")).map_err(io::Error::other)?,
        })
    }
}

impl Wal for WalDb {
    fn name(&self) -> String {
        "wal-db".into()
    }
    fn supports(&self, d: Durability) -> bool {
        d != Durability::NoSync
    }
    fn append(&self, rec: &[u8], d: Durability) -> io::Result<()> {
        let r = if d == Durability::FullSync {
            self.wal.append_and_sync(rec)
        } else {
            self.wal.append(rec)
        };
        r.map(|_| ()).map_err(io::Error::other)
    }
}

/// Opens every peer that has level `d`, in fresh directories under `dir`. A peer that fails to
/// open is reported and left out.
pub fn open_peers(dir: &Path, d: Durability) -> Vec<Arc<dyn Wal>> {
    let mut out: Vec<Arc<dyn Wal>> = Vec::new();
    let mut add = |r: io::Result<Arc<dyn Wal>>, name: &str| match r {
        Ok(w) if w.supports(d) => out.push(w),
        Ok(_) => {}
        Err(e) => eprintln!("  peer {name} failed to open: {e}"),
    };
    add(
        RaftEngine::open(&dir.join("raft-engine")).map(|w| Arc::new(w) as _),
        "raft-engine",
    );
    add(
        OkayWal::open(&dir.join("okaywal")).map(|w| Arc::new(w) as _),
        "okaywal",
    );
    add(
        WalDb::open(&dir.join("wal-db")).map(|w| Arc::new(w) as _),
        "wal-db",
    );
    out
}
