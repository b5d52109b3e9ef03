//! CRC-32C (Castagnoli), the checksum of short frames: the SSE4.2 `crc32` instruction where the
//! CPU has it, a table where it does not. Longer frames use CRC-32 (IEEE) through crc32fast,
//! whose carry-less-multiply folding is faster past a few hundred bytes ("Checksum" in
//! `docs/performance.md`); `docs/format.md` says which frame uses which.

/// The longest record the writer checksums with CRC-32C when the CPU has the instruction. One
/// dependent chain of `crc32` instructions costs ~0.1 ns per byte here, crc32fast ~18 ns plus
/// ~0.03 ns per byte, so they cross between 320 and 384 bytes (header and record: 128 B 7.4
/// against 17.2 ns, 256 B 15.3 against 19.2, 384 B 27.6 against 23.7; table "Checksum" in
/// `docs/performance.md` measures it in every report).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const CRC32C_MAX_RECORD: usize = 256;

/// CRC-32C's reflected polynomial.
const POLY: u32 = 0x82f6_3b78;

/// Eight tables for the slice-by-8 software path, built at compile time.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

/// Whether this CPU computes CRC-32C in hardware (std caches the answer).
#[inline]
pub(crate) fn has_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("sse4.2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CRC-32C of `data`, continued from the finished CRC `crc` (0 for a fresh one), so
/// `append(append(0, a), b) == append(0, a ++ b)`.
pub(crate) fn append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if has_hardware() {
        // SAFETY: the CPU has SSE4.2 (checked just above), the only feature `hardware` needs.
        return unsafe { hardware::append(crc, data) };
    }
    software(crc, data)
}

/// The frame checksum the writer uses for short records: CRC-32C continued from `crc` over the
/// 12 header bytes `lsn_word ++ len_word`, then over `data`.
///
/// # Safety
/// The CPU must have SSE4.2 ([`has_hardware`]).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) unsafe fn frame_hardware(crc: u32, lsn_word: u64, len_word: u32, data: &[u8]) -> u32 {
    // SAFETY: forwarded from this function's contract.
    unsafe { hardware::frame(crc, lsn_word, len_word, data) }
}

fn software(crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut c = !crc;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][w[4] as usize]
            ^ t[2][w[5] as usize]
            ^ t[1][w[6] as usize]
            ^ t[0][w[7] as usize];
    }
    for &b in words.remainder() {
        c = (c >> 8) ^ t[0][((c ^ b as u32) & 0xff) as usize];
    }
    !c
}

#[cfg(target_arch = "x86_64")]
mod hardware {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

    /// One dependent chain of 8-byte `crc32` instructions: the fastest form for the short
    /// inputs it is used for (interleaved chains only pay off on long ones).
    /// # Safety
    /// The CPU must have SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn append(crc: u32, data: &[u8]) -> u32 {
        // SAFETY: this function's contract.
        unsafe { !raw(!crc, data) }
    }

    /// # Safety
    /// The CPU must have SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn frame(crc: u32, lsn_word: u64, len_word: u32, data: &[u8]) -> u32 {
        // SAFETY: this function's contract (SSE4.2) is all these instructions need.
        unsafe {
            let c = _mm_crc32_u64(u64::from(!crc), lsn_word) as u32;
            let c = _mm_crc32_u32(c, len_word);
            !raw(c, data)
        }
    }

    /// CRC-32C without the pre- and post-inversion, from register `c`.
    ///
    /// # Safety
    /// The CPU must have SSE4.2.
    #[target_feature(enable = "sse4.2")]
    unsafe fn raw(c: u32, data: &[u8]) -> u32 {
        let mut c = u64::from(c);
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            // SAFETY: the CPU has SSE4.2 (this function's contract). The block is needed up to
            // Rust 1.86, where these intrinsics are unsafe to call even here.
            #[allow(unused_unsafe)]
            let next = unsafe { _mm_crc32_u64(c, w) };
            c = next;
        }
        let mut c = c as u32;
        for &b in words.remainder() {
            // SAFETY: as above.
            #[allow(unused_unsafe)]
            let next = unsafe { _mm_crc32_u8(c, b) };
            c = next;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC-32C (the CRC of "123456789" in every CRC catalogue).
    const CHECK: u32 = 0xe306_9283;

    #[test]
    fn software_matches_the_check_value_and_splits() {
        assert_eq!(software(0, b"123456789"), CHECK);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = software(0, &data);
        for cut in [0, 1, 7, 8, 9, 100, 999, 1000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(software(software(0, a), b), whole, "split at {cut}");
        }
    }

    #[test]
    fn dispatch_matches_software() {
        assert_eq!(append(0, b"123456789"), CHECK);
        let data: Vec<u8> = (0..777u32).map(|i| (i * 31) as u8).collect();
        for len in [0, 1, 5, 8, 12, 13, 64, 128, 255, 256, 777] {
            for seed in [0, 1, 0xdead_beef] {
                assert_eq!(
                    append(seed, &data[..len]),
                    software(seed, &data[..len]),
                    "len {len} seed {seed:#x}"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn hardware_frame_is_the_crc_of_header_then_data() {
        if !has_hardware() {
            return;
        }
        let data: Vec<u8> = (0..300u32).map(|i| (i * 5) as u8).collect();
        for len in [0, 3, 8, 128, 300] {
            let lsn_word = 0x8000_0000_0012_3456u64 + len as u64;
            let len_word = len as u32;
            let mut header = lsn_word.to_le_bytes().to_vec();
            header.extend_from_slice(&len_word.to_le_bytes());
            let seed = software(0, b"log id");
            let expect = software(software(seed, &header), &data[..len]);
            // SAFETY: SSE4.2 was detected above.
            let got = unsafe { frame_hardware(seed, lsn_word, len_word, &data[..len]) };
            assert_eq!(got, expect, "len {len}");
        }
    }
}
