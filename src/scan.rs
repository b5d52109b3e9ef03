//! Reading frames out of a segment file, for recovery and for the iterator. Every length is
//! bounded (by the segment's room and `max_record`) before anything is allocated or read.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, FrameCrc, FrameKind, FRAME_HEADER_LEN};
use crate::segment::Segment;
use crate::storage::read_full;

/// Bytes read from the file at a time.
const CHUNK: usize = 256 << 10;

/// One step of reading a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A valid record frame of `total` bytes; its data is `Scanner::data()`.
    Record { total: u64 },
    /// A valid padding frame of `total` bytes: no record uses them. It runs to the segment end,
    /// or covers the unused rest of a lane's chunk inside it.
    Pad { total: u64 },
    /// Too little room for a header: the segment's frames end here.
    SegmentEnd,
    /// No valid frame at this address.
    Damage { reason: &'static str },
}

/// Reads frames of one segment through a buffer.
pub(crate) struct Scanner {
    seg: Arc<Segment>,
    crc: FrameCrc,
    max_record: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    /// Range of the current record's data in `buf`.
    data: std::ops::Range<usize>,
    /// The file's size, read at the first read: no read goes past it, so a corrupt length
    /// never sizes the buffer beyond the bytes the file holds.
    file_len: Option<u64>,
}

impl Scanner {
    pub(crate) fn new(seg: Arc<Segment>, crc: FrameCrc, max_record: u64) -> Self {
        Scanner {
            seg,
            crc,
            max_record,
            buf: Vec::new(),
            buf_at: 0,
            data: 0..0,
            file_len: None,
        }
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The bytes at file offset `at..at + len`, or `None` if the file is shorter.
    fn bytes(&mut self, at: u64, len: usize) -> Result<Option<std::ops::Range<usize>>> {
        let have = self.buf_at..self.buf_at + self.buf.len() as u64;
        if at < have.start || at + len as u64 > have.end {
            let file_len = match self.file_len {
                Some(n) => n,
                None => {
                    let n = self
                        .seg
                        .file
                        .size()
                        .map_err(|e| Error::io("stat", &self.seg.path, None, e))?;
                    *self.file_len.insert(n)
                }
            };
            if at + len as u64 > file_len {
                return Ok(None);
            }
            self.buf
                .resize(len.max(CHUNK).min((file_len - at) as usize), 0);
            let n = read_full(self.seg.file.as_ref(), at, &mut self.buf)
                .map_err(|e| Error::io("read", &self.seg.path, Some(at), e))?;
            self.buf.truncate(n);
            self.buf_at = at;
        }
        let start = (at - self.buf_at) as usize;
        Ok((start + len <= self.buf.len()).then_some(start..start + len))
    }

    /// Reads the frame at address `lsn`.
    pub(crate) fn step(&mut self, lsn: u64) -> Result<Step> {
        let room = self.seg.end() - lsn;
        if room < FRAME_HEADER_LEN as u64 {
            return Ok(Step::SegmentEnd);
        }
        let at = self.seg.offset_of(lsn);
        let Some(r) = self.bytes(at, FRAME_HEADER_LEN)? else {
            return Ok(Step::Damage {
                reason: "file ends inside a frame header",
            });
        };
        let header: [u8; FRAME_HEADER_LEN] = self.buf[r].try_into().expect("header length");
        let len = match format::parse_header(&self.crc, lsn, &header, room, self.max_record) {
            Err(e) => {
                return Ok(Step::Damage {
                    reason: e.describe(),
                })
            }
            Ok(kind @ FrameKind::Pad { .. }) => {
                return Ok(Step::Pad {
                    total: kind.total_len(),
                })
            }
            Ok(FrameKind::Record { len }) => len as usize,
        };
        // `len` is bounded by max_record and by the segment's room (checked above).
        let Some(r) = self.bytes(at + FRAME_HEADER_LEN as u64, len)? else {
            return Ok(Step::Damage {
                reason: "file ends inside a record",
            });
        };
        if let Err(e) = format::verify_record(&self.crc, &header, &self.buf[r.clone()]) {
            return Ok(Step::Damage {
                reason: e.describe(),
            });
        }
        self.data = r;
        Ok(Step::Record {
            total: (FRAME_HEADER_LEN + len) as u64,
        })
    }

    /// The data of the record the last `step` returned.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.data.clone()]
    }
}

/// What a search for valid frames after a damaged address found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Survivors {
    /// Address of the first valid frame found.
    pub(crate) first: Option<u64>,
    /// The largest address of a valid frame found.
    pub(crate) last: Option<u64>,
    /// End of the last valid frame found.
    pub(crate) end: u64,
}

/// Searches `from..` of a segment for valid frames (records or padding), at every byte address:
/// after damage, frame boundaries are unknown. A frame stores its own address, so a candidate
/// costs one 8-byte compare unless it really is a frame of this log at this address.
pub(crate) fn find_survivors(
    seg: &Arc<Segment>,
    crc: &FrameCrc,
    max_record: u64,
    from: u64,
) -> Result<Survivors> {
    let mut found = Survivors::default();
    let mut verify = Scanner::new(seg.clone(), crc.clone(), max_record);
    let mut chunk = vec![0u8; CHUNK + 8];
    let mut pos = from;
    let last_candidate = seg.end().saturating_sub(FRAME_HEADER_LEN as u64);
    while pos <= last_candidate {
        let n = read_full(seg.file.as_ref(), seg.offset_of(pos), &mut chunk)
            .map_err(|e| Error::io("read", &seg.path, Some(seg.offset_of(pos)), e))?;
        if n < 8 {
            break;
        }
        let mut i = 0usize;
        let mut next = pos + (n - 7) as u64;
        while i + 8 <= n {
            let lsn = pos + i as u64;
            if lsn > last_candidate {
                next = lsn;
                break;
            }
            if format::is_address_word_of(
                u64::from_le_bytes(chunk[i..i + 8].try_into().unwrap()),
                lsn,
            ) {
                let total = match verify.step(lsn)? {
                    Step::Record { total } | Step::Pad { total } => Some(total),
                    _ => None,
                };
                if let Some(total) = total {
                    found.first.get_or_insert(lsn);
                    found.last = Some(lsn);
                    found.end = lsn + total;
                    next = lsn + total;
                    break;
                }
            }
            i += 1;
        }
        pos = next;
    }
    Ok(found)
}
