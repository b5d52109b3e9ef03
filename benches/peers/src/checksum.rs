//! The checksum choice, measured: slotlog checksums records of at most 256 bytes with hardware
//! CRC32C (one chain of SSE4.2 `crc32` instructions) and longer ones with crc32fast (CRC-32/IEEE,
//! PCLMULQDQ / VPCLMULQDQ folding); `docs/format.md`, "Checksum kinds". All three are timed here
//! the way a frame header needs them: continue from the log's seed over the 12 header bytes, then
//! over the record. The sizes around 256 B show where the two cross.

use std::hint::black_box;
use std::time::Instant;

/// Sizes timed: the report's NoSync record, slotlog's CRC32C limit and the next step above it,
/// MuopDB's record, WriteOnly's and the largest sweep size.
pub const SIZES: [usize; 6] = [128, 256, 384, 561, 4096, 16384];

/// Nanoseconds per record: (size, crc32fast, CRC32C one `crc32` stream, the `crc32c` crate).
pub fn measure() -> Vec<(usize, f64, f64, f64)> {
    let seed = crc32fast::hash(b"a log id");
    let seeded = crc32fast::Hasher::new_with_initial(seed);
    let header = [0x5au8; 12];
    SIZES
        .iter()
        .map(|&len| {
            let data = vec![0xa5u8; len];
            let n = (100_000_000 / (len + 12)).max(20_000);
            let time = |f: &dyn Fn(u32) -> u32| {
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let mut acc = 0u32;
                    for i in 0..n as u32 {
                        acc ^= f(i);
                    }
                    black_box(acc);
                    best = best.min(t0.elapsed().as_nanos() as f64 / n as f64);
                }
                best
            };
            let fast = time(&|i| {
                let mut h = seeded.clone();
                h.update(black_box(&header));
                h.update(black_box(&data));
                h.finalize() ^ i
            });
            let one_stream = if std::is_x86_feature_detected!("sse4.2") {
                time(&|i| {
                    // SAFETY: SSE4.2 was detected just above.
                    unsafe {
                        crc32c_one_stream(
                            crc32c_one_stream(seed, black_box(&header)),
                            black_box(&data),
                        ) ^ i
                    }
                })
            } else {
                f64::NAN
            };
            let crate_ = time(&|i| {
                crc32c::crc32c_append(
                    crc32c::crc32c_append(seed, black_box(&header)),
                    black_box(&data),
                ) ^ i
            });
            (len, fast, one_stream, crate_)
        })
        .collect()
}

/// CRC32C continued from `crc` over `data` with one dependent chain of `crc32` instructions
/// (8 bytes each): the simplest hardware CRC32C, fastest on short inputs.
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_one_stream(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        // The 12-byte frame header ends here: one 4-byte step, as slotlog's writer takes it.
        c = _mm_crc32_u32(
            c,
            u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")),
        );
        rest = &rest[4..];
    }
    for &b in rest {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_stream_matches_the_crate() {
        if !std::is_x86_feature_detected!("sse4.2") {
            return;
        }
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 100, 1000] {
            let (a, b) = data.split_at(cut);
            // SAFETY: SSE4.2 was detected above.
            let ours = unsafe { super::crc32c_one_stream(super::crc32c_one_stream(0, a), b) };
            assert_eq!(ours, crc32c::crc32c(&data), "split at {cut}");
        }
    }
}
