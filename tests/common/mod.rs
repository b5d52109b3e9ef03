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
