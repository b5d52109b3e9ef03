//! The on-disk format: segment headers and record frames. `docs/format.md` is the byte-by-byte
//! description; this module is its only implementation.

use crate::checksum;

/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of the header before every record.
pub const FRAME_HEADER_LEN: usize = 16;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SLOTLOG\0";
/// The version this build writes. Version 3 allows CRC-32C frames (the top bit of the address
/// word); version 2 allows padding frames inside a segment (the rest of a lane's chunk). A
/// version 1 or 2 segment is also a valid version 3 segment, so all three read the same way.
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The oldest version this build reads.
const OLDEST_READABLE_VERSION: u32 = 1;
/// Set in a frame's length word for a padding frame (bytes no record uses).
const PAD_FLAG: u32 = 1 << 31;
const LEN_MASK: u32 = !PAD_FLAG;

/// Set in a frame's address word when its checksum is CRC-32C (Castagnoli) rather than CRC-32
/// (IEEE). Log addresses stay below [`MAX_ADDRESS`], so no address has this bit.
const CRC32C_FLAG: u64 = 1 << 63;
/// Log addresses are below 2^63: the top bit of a frame's address word is [`CRC32C_FLAG`].
pub(crate) const MAX_ADDRESS: u64 = 1 << 63;

/// Whether a segment of `payload` bytes at `base` lies below [`MAX_ADDRESS`].
pub(crate) fn segment_fits(base: u64, payload: u64) -> bool {
    base.checked_add(payload)
        .is_some_and(|end| end <= MAX_ADDRESS)
}

/// The CRC-32 (IEEE) state every frame checksum of that kind starts from: the CRC of the log's
/// random id, so that a frame copied from another log never verifies here.
fn crc_seed(log_id: u64) -> u32 {
    crc32fast::hash(&log_id.to_le_bytes())
}

/// The frame checksums of one log: both seeds, and whether the writer may use CRC-32C.
#[derive(Clone)]
pub(crate) struct FrameCrc {
    /// CRC-32 (IEEE) of the log id, as a crc32fast hasher: cloning it is cheaper than
    /// `Hasher::new_with_initial`, which detects the CPU's CRC instructions on every call.
    ieee: crc32fast::Hasher,
    /// CRC-32C of the log id.
    castagnoli: u32,
    /// The CPU has the CRC-32C instruction, so the writer uses it for short records.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    hardware: bool,
}

impl FrameCrc {
    pub(crate) fn new(log_id: u64) -> FrameCrc {
        FrameCrc {
            ieee: crc32fast::Hasher::new_with_initial(crc_seed(log_id)),
            castagnoli: checksum::append(0, &log_id.to_le_bytes()),
            hardware: checksum::has_hardware(),
        }
    }

    /// The checksum of a frame header's first 12 bytes and `data`, of the kind the header's
    /// address word names.
    fn of(&self, h: &[u8; FRAME_HEADER_LEN], data: &[u8]) -> u32 {
        if u64::from_le_bytes(h[0..8].try_into().unwrap()) & CRC32C_FLAG != 0 {
            checksum::append(checksum::append(self.castagnoli, &h[0..12]), data)
        } else {
            let mut crc = self.ieee.clone();
            crc.update(&h[0..12]);
            crc.update(data);
            crc.finalize()
        }
    }
}

/// Builds the 16-byte header of a record frame at address `lsn`: CRC-32C if the CPU has the
/// instruction and the record is short, CRC-32 (IEEE) otherwise ([`checksum::CRC32C_MAX_RECORD`]).
pub(crate) fn record_header(crc: &FrameCrc, lsn: u64, data: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    // A header built for an address at or past MAX_ADDRESS is never written: no segment holds
    // such an address (`Segments::create` refuses it), so its write fails first.
    debug_assert!(data.len() <= LEN_MASK as usize);
    let len_word = data.len() as u32;
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[8..12].copy_from_slice(&len_word.to_le_bytes());
    #[cfg(target_arch = "x86_64")]
    if crc.hardware && data.len() <= checksum::CRC32C_MAX_RECORD {
        let lsn_word = lsn | CRC32C_FLAG;
        h[0..8].copy_from_slice(&lsn_word.to_le_bytes());
        // SAFETY: `crc.hardware` says the CPU has SSE4.2.
        let sum = unsafe { checksum::frame_hardware(crc.castagnoli, lsn_word, len_word, data) };
        h[12..16].copy_from_slice(&sum.to_le_bytes());
        return h;
    }
    h[0..8].copy_from_slice(&lsn.to_le_bytes());
    let sum = crc.of(&h, data);
    h[12..16].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Builds the header of a padding frame at `lsn` that covers `total` bytes (header included);
/// `total >= FRAME_HEADER_LEN`. The padding bytes after the header are not checksummed; the
/// header's checksum is CRC-32 (IEEE).
pub(crate) fn pad_header(crc: &FrameCrc, lsn: u64, total: u64) -> [u8; FRAME_HEADER_LEN] {
    let body = (total - FRAME_HEADER_LEN as u64) as u32;
    debug_assert!(body <= LEN_MASK);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..8].copy_from_slice(&lsn.to_le_bytes());
    h[8..12].copy_from_slice(&(body | PAD_FLAG).to_le_bytes());
    let sum = crc.of(&h, &[]);
    h[12..16].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Whether `word`, the first 8 bytes of a frame header, names address `lsn` (with either
/// checksum kind).
#[inline]
pub(crate) fn is_address_word_of(word: u64, lsn: u64) -> bool {
    word & !CRC32C_FLAG == lsn
}

/// What a frame header claims, once its address matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A record with `len` data bytes after the header.
    Record { len: u32 },
    /// Padding of `len` bytes after the header; the segment's records end here.
    Pad { len: u32 },
}

impl FrameKind {
    /// Bytes the frame covers, header included.
    pub(crate) fn total_len(self) -> u64 {
        FRAME_HEADER_LEN as u64
            + match self {
                FrameKind::Record { len } | FrameKind::Pad { len } => len as u64,
            }
    }
}

/// Why bytes at an address are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The stored address differs from where the frame sits (zeros, garbage, or a stale frame
    /// of a recycled file).
    WrongAddress,
    /// The length is over the maximum or runs past the segment end.
    BadLength,
    /// The checksum does not match.
    BadChecksum,
}

impl FrameError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FrameError::WrongAddress => {
                "no frame for this address (zeros, garbage or a stale frame)"
            }
            FrameError::BadLength => "frame length out of bounds",
            FrameError::BadChecksum => "frame checksum mismatch",
        }
    }
}

/// Checks the header `h` found at address `lsn`, where `room` bytes (header included) remain
/// in the segment. On success the caller still has to check the record data with
/// [`verify_record`]. Never trusts the length before bounding it.
pub(crate) fn parse_header(
    crc: &FrameCrc,
    lsn: u64,
    h: &[u8; FRAME_HEADER_LEN],
    room: u64,
    max_record: u64,
) -> Result<FrameKind, FrameError> {
    if !is_address_word_of(u64::from_le_bytes(h[0..8].try_into().unwrap()), lsn) {
        return Err(FrameError::WrongAddress);
    }
    let word = u32::from_le_bytes(h[8..12].try_into().unwrap());
    let len = word & LEN_MASK;
    let kind = if word & PAD_FLAG != 0 {
        FrameKind::Pad { len }
    } else {
        if len as u64 > max_record {
            return Err(FrameError::BadLength);
        }
        FrameKind::Record { len }
    };
    if kind.total_len() > room {
        return Err(FrameError::BadLength);
    }
    if let FrameKind::Pad { .. } = kind {
        // A pad ends at the segment end or anywhere before it (the rest of a lane's chunk); its
        // header is checksummed, its body is not.
        if crc.of(h, &[]) != stored_crc(h) {
            return Err(FrameError::BadChecksum);
        }
    }
    Ok(kind)
}

fn stored_crc(h: &[u8; FRAME_HEADER_LEN]) -> u32 {
    u32::from_le_bytes(h[12..16].try_into().unwrap())
}

/// Checks a record's data against its (already parsed) header.
pub(crate) fn verify_record(
    crc: &FrameCrc,
    h: &[u8; FRAME_HEADER_LEN],
    data: &[u8],
) -> Result<(), FrameError> {
    if crc.of(h, data) == stored_crc(h) {
        Ok(())
    } else {
        Err(FrameError::BadChecksum)
    }
}

/// The identity and geometry of one segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) log_id: u64,
    /// Log address of the first payload byte.
    pub(crate) base: u64,
    /// Payload bytes (file size minus the header).
    pub(crate) payload: u64,
    /// The in-flight window of the process that created the segment.
    pub(crate) window: u64,
    /// The max_record_size of the process that created the segment.
    pub(crate) max_record: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.log_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.base.to_le_bytes());
        b[32..40].copy_from_slice(&self.payload.to_le_bytes());
        b[40..48].copy_from_slice(&self.window.to_le_bytes());
        b[48..56].copy_from_slice(&self.max_record.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("file shorter than a segment header");
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad magic (not a slotlog segment)");
        }
        if crc32fast::hash(&b[0..60]) != u32_at(60) {
            return Err("segment header checksum mismatch");
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&u32_at(8)) {
            return Err("unsupported format version");
        }
        if u32_at(12) as usize != SEGMENT_HEADER_LEN {
            return Err("unexpected segment header length");
        }
        let h = SegmentHeader {
            log_id: u64_at(16),
            base: u64_at(24),
            payload: u64_at(32),
            window: u64_at(40),
            max_record: u64_at(48),
        };
        if h.payload < FRAME_HEADER_LEN as u64
            || h.max_record > 1 << 30
            || !segment_fits(h.base, h.payload)
        {
            return Err("segment geometry out of range");
        }
        Ok(h)
    }

    pub(crate) fn end(&self) -> u64 {
        self.base + self.payload
    }
}

/// The file name of the segment whose payload starts at `base`: 16 hex digits, so that `ls`
/// lists segments in log order.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:016x}.seg")
}

/// The base address encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log's checksums as a writer with (`true`) or without the CRC-32C instruction sees them.
    fn frame_crc(log_id: u64, hardware: bool) -> FrameCrc {
        FrameCrc {
            hardware: hardware && checksum::has_hardware(),
            ..FrameCrc::new(log_id)
        }
    }

    fn address_word(h: &[u8; FRAME_HEADER_LEN]) -> u64 {
        u64::from_le_bytes(h[0..8].try_into().unwrap())
    }

    #[test]
    fn record_frame_round_trip_and_damage() {
        let long = vec![7u8; checksum::CRC32C_MAX_RECORD + 1];
        for hardware in [false, true] {
            for data in [&b"hello"[..], &long[..]] {
                let crc = frame_crc(42, hardware);
                let h = record_header(&crc, 1000, data);
                let len = data.len() as u32;
                let ctx = format!("hardware {hardware}, {len} bytes");
                // A log written with either kind reads back (`checksum::append` takes the
                // instruction or the table by the reader's CPU; its tests check that they agree).
                for reader in [frame_crc(42, false), frame_crc(42, true)] {
                    assert_eq!(
                        parse_header(&reader, 1000, &h, 1000, 1 << 20),
                        Ok(FrameKind::Record { len }),
                        "{ctx}"
                    );
                    assert_eq!(verify_record(&reader, &h, data), Ok(()), "{ctx}");
                }
                let mut changed = data.to_vec();
                changed[3] ^= 1;
                assert_eq!(
                    verify_record(&crc, &h, &changed),
                    Err(FrameError::BadChecksum),
                    "{ctx}"
                );
                // The same header claiming the other checksum kind does not verify.
                let mut flipped = h;
                flipped[7] ^= 0x80;
                assert_eq!(
                    verify_record(&crc, &flipped, data),
                    Err(FrameError::BadChecksum),
                    "{ctx}"
                );
                assert_eq!(
                    parse_header(&crc, 1001, &h, 1000, 1 << 20),
                    Err(FrameError::WrongAddress),
                    "{ctx}"
                );
                assert_eq!(
                    parse_header(&crc, 1000, &h, 16 + len as u64 - 1, 1 << 20),
                    Err(FrameError::BadLength),
                    "{ctx}"
                );
                assert_eq!(
                    parse_header(&crc, 1000, &h, 1000, 4),
                    Err(FrameError::BadLength),
                    "{ctx}"
                );
                assert_eq!(
                    verify_record(&FrameCrc::new(43), &h, data),
                    Err(FrameError::BadChecksum),
                    "{ctx}: a frame of another log"
                );
            }
        }
    }

    #[test]
    fn the_writer_picks_crc32c_for_short_records_only() {
        let crc = frame_crc(42, true);
        let short = record_header(&crc, 1000, &[1; checksum::CRC32C_MAX_RECORD]);
        let long = record_header(&crc, 1000, &[1; checksum::CRC32C_MAX_RECORD + 1]);
        assert_eq!(address_word(&long), 1000, "long records: CRC-32 (IEEE)");
        let expect_short = if checksum::has_hardware() {
            1000 | CRC32C_FLAG
        } else {
            1000
        };
        assert_eq!(address_word(&short), expect_short);
        let without = record_header(&frame_crc(42, false), 1000, b"x");
        assert_eq!(
            address_word(&without),
            1000,
            "no instruction: CRC-32 (IEEE)"
        );
    }

    #[test]
    fn crc32c_frames_are_as_docs_format_md_says() {
        // The checksum of a CRC-32C frame: CRC-32C of the log id's 8 bytes, continued over the
        // header's first 12 bytes (flagged address word, length word), then the record.
        if !checksum::has_hardware() {
            return;
        }
        let h = record_header(&frame_crc(0x0123_4567_89ab_cdef, true), 4096, b"record");
        let seed = checksum::append(0, &0x0123_4567_89ab_cdefu64.to_le_bytes());
        let expect = checksum::append(checksum::append(seed, &h[0..12]), b"record");
        assert_eq!(address_word(&h), 4096 | CRC32C_FLAG);
        assert_eq!(h[12..16], expect.to_le_bytes());
        assert!(is_address_word_of(address_word(&h), 4096));
        assert!(!is_address_word_of(address_word(&h), 4096 | CRC32C_FLAG));
    }

    #[test]
    fn pad_frame_stays_inside_its_segment() {
        let crc = FrameCrc::new(7);
        let h = pad_header(&crc, 64, 40);
        assert_eq!(
            parse_header(&crc, 64, &h, 40, 0),
            Ok(FrameKind::Pad { len: 24 })
        );
        // Inside a segment (the rest of a lane's chunk): valid too.
        assert_eq!(
            parse_header(&crc, 64, &h, 41, 0),
            Ok(FrameKind::Pad { len: 24 })
        );
        assert_eq!(
            parse_header(&crc, 64, &h, 39, 0),
            Err(FrameError::BadLength)
        );
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(
            parse_header(&crc, 64, &bad, 4096, 0),
            Err(FrameError::BadChecksum)
        );
    }

    fn sample_header() -> SegmentHeader {
        SegmentHeader {
            log_id: 9,
            base: 4096,
            payload: 1 << 20,
            window: 1 << 22,
            max_record: 1 << 16,
        }
    }

    #[test]
    fn segment_header_round_trip() {
        let h = sample_header();
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        let mut bad = b;
        bad[30] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        assert_eq!(
            parse_segment_file_name(&segment_file_name(4096)),
            Some(4096)
        );
        assert_eq!(parse_segment_file_name("LOCK"), None);
    }

    #[test]
    fn segment_versions_read_and_refused() {
        let h = sample_header();
        let with_version = |v: u32| {
            let mut b = h.encode();
            b[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32fast::hash(&b[0..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            SegmentHeader::decode(&b)
        };
        assert_eq!(FORMAT_VERSION, 3);
        assert_eq!(with_version(1), Ok(h), "version 1 segments stay readable");
        assert_eq!(with_version(2), Ok(h), "version 2 segments stay readable");
        assert_eq!(with_version(3), Ok(h));
        assert_eq!(with_version(4), Err("unsupported format version"));
        assert_eq!(with_version(0), Err("unsupported format version"));
    }
}
