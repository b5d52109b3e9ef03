//! The on-disk format: segment headers and record frames. `docs/format.md` is the byte-by-byte
//! description; this module is its only implementation.

/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of the header before every record.
pub const FRAME_HEADER_LEN: usize = 16;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SLOTLOG\0";
/// The version this build writes. Version 2 allows padding frames inside a segment (the rest of
/// a lane's chunk); version 1 segments (padding only at a segment end) read the same way.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
const OLDEST_READABLE_VERSION: u32 = 1;
/// Set in a frame's length word for a padding frame (bytes no record uses).
const PAD_FLAG: u32 = 1 << 31;
const LEN_MASK: u32 = !PAD_FLAG;

/// The CRC state every frame checksum starts from: the CRC of the log's random id, so that a
/// frame copied from another log never verifies here.
pub(crate) fn crc_seed(log_id: u64) -> u32 {
    crc32fast::hash(&log_id.to_le_bytes())
}

/// A CRC hasher already seeded for one log. Cloning it is cheaper than
/// `Hasher::new_with_initial`, which detects the CPU's CRC instructions on every call.
#[derive(Clone)]
pub(crate) struct Seeded(crc32fast::Hasher);

impl Seeded {
    pub(crate) fn new(seed: u32) -> Seeded {
        Seeded(crc32fast::Hasher::new_with_initial(seed))
    }
}

/// Builds the 16-byte header of a record frame at address `lsn`.
pub(crate) fn record_header(seed: &Seeded, lsn: u64, data: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    debug_assert!(data.len() <= LEN_MASK as usize);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..8].copy_from_slice(&lsn.to_le_bytes());
    h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
    let mut crc = seed.0.clone();
    crc.update(&h[0..12]);
    crc.update(data);
    h[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// Builds the header of a padding frame at `lsn` that covers `total` bytes (header included);
/// `total >= FRAME_HEADER_LEN`. The padding bytes after the header are not checksummed.
pub(crate) fn pad_header(seed: u32, lsn: u64, total: u64) -> [u8; FRAME_HEADER_LEN] {
    let body = (total - FRAME_HEADER_LEN as u64) as u32;
    debug_assert!(body <= LEN_MASK);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..8].copy_from_slice(&lsn.to_le_bytes());
    h[8..12].copy_from_slice(&(body | PAD_FLAG).to_le_bytes());
    let mut crc = crc32fast::Hasher::new_with_initial(seed);
    crc.update(&h[0..12]);
    h[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    h
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
    seed: u32,
    lsn: u64,
    h: &[u8; FRAME_HEADER_LEN],
    room: u64,
    max_record: u64,
) -> Result<FrameKind, FrameError> {
    if u64::from_le_bytes(h[0..8].try_into().unwrap()) != lsn {
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
        let mut crc = crc32fast::Hasher::new_with_initial(seed);
        crc.update(&h[0..12]);
        if crc.finalize() != stored_crc(h) {
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
    seed: u32,
    h: &[u8; FRAME_HEADER_LEN],
    data: &[u8],
) -> Result<(), FrameError> {
    let mut crc = crc32fast::Hasher::new_with_initial(seed);
    crc.update(&h[0..12]);
    crc.update(data);
    if crc.finalize() == stored_crc(h) {
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
            || h.base.checked_add(h.payload).is_none()
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

    #[test]
    fn record_frame_round_trip_and_damage() {
        let seed = crc_seed(42);
        let h = record_header(&Seeded::new(seed), 1000, b"hello");
        assert_eq!(
            parse_header(seed, 1000, &h, 100, 1 << 20),
            Ok(FrameKind::Record { len: 5 })
        );
        assert_eq!(verify_record(seed, &h, b"hello"), Ok(()));
        assert_eq!(
            verify_record(seed, &h, b"hellp"),
            Err(FrameError::BadChecksum)
        );
        assert_eq!(
            parse_header(seed, 1001, &h, 100, 1 << 20),
            Err(FrameError::WrongAddress)
        );
        assert_eq!(
            parse_header(seed, 1000, &h, 20, 1 << 20),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            parse_header(seed, 1000, &h, 100, 4),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            verify_record(crc_seed(43), &h, b"hello"),
            Err(FrameError::BadChecksum)
        );
    }

    #[test]
    fn pad_frame_stays_inside_its_segment() {
        let seed = crc_seed(7);
        let h = pad_header(seed, 64, 40);
        assert_eq!(
            parse_header(seed, 64, &h, 40, 0),
            Ok(FrameKind::Pad { len: 24 })
        );
        // Inside a segment (the rest of a lane's chunk): valid too.
        assert_eq!(
            parse_header(seed, 64, &h, 41, 0),
            Ok(FrameKind::Pad { len: 24 })
        );
        assert_eq!(
            parse_header(seed, 64, &h, 39, 0),
            Err(FrameError::BadLength)
        );
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(
            parse_header(seed, 64, &bad, 4096, 0),
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
        assert_eq!(FORMAT_VERSION, 2);
        assert_eq!(with_version(1), Ok(h), "version 1 segments stay readable");
        assert_eq!(with_version(2), Ok(h));
        assert_eq!(with_version(3), Err("unsupported format version"));
        assert_eq!(with_version(0), Err("unsupported format version"));
    }
}
