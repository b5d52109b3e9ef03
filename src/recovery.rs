//! Recovery at `open`: find the segments, verify every frame, and decide where the log ends.
//! `docs/design.md`, "Recovery", gives the rules and why they lose no acknowledged record.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::options::{Options, RecoveryMode};
use crate::scan::{find_survivors, Scanner, Step, Survivors};
use crate::segment::{Geometry, Segment};
use crate::storage::{read_full, Storage};

/// The state `open` continues from.
pub(crate) struct Recovered {
    pub(crate) geometry: Geometry,
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) spares: Vec<PathBuf>,
    /// Where the next record goes.
    pub(crate) end: u64,
}

/// A random 64-bit log id, without a dependency: the standard library seeds `RandomState` from
/// the OS's randomness.
fn random_log_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn open_segment(storage: &dyn Storage, path: PathBuf, base: u64) -> Result<Segment> {
    let file = storage
        .open(&path, false)
        .map_err(|e| Error::io("open", &path, None, e))?;
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let n =
        read_full(file.as_ref(), 0, &mut buf).map_err(|e| Error::io("read", &path, Some(0), e))?;
    let header = SegmentHeader::decode(&buf[..n]).map_err(|why| Error::corrupt(&path, 0, why))?;
    if header.base != base {
        return Err(Error::corrupt(
            &path,
            24,
            format!(
                "header says base {} but the file name says {base}",
                header.base
            ),
        ));
    }
    Ok(Segment { header, path, file })
}

pub(crate) fn recover(storage: &dyn Storage, dir: &Path, options: &Options) -> Result<Recovered> {
    // A process that died between a rename, creation or removal and its directory fsync left
    // a change that a power cut could still undo, and recovery decides by these names what is
    // a segment and what a spare: a segment `truncate_front` had renamed to a spare name was
    // not fdatasynced below, came back after a power cut with a hole, and the log was cut there,
    // with records acknowledged in this session after it (found by review, 2026-12-07;
    // `tests/powercut.rs` `open_makes_the_directory_it_recovers_from_durable`).
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync", dir, None, e))?;
    let names = storage
        .list(dir)
        .map_err(|e| Error::io("list", dir, None, e))?;
    let mut bases = Vec::new();
    let mut spares = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(".tmp") {
            // An unfinished segment creation: it was never used.
            storage
                .remove(&path)
                .map_err(|e| Error::io("remove", &path, None, e))?;
        } else if name.ends_with(".seg.free") {
            spares.push(path);
        } else if let Some(base) = format::parse_segment_file_name(&name) {
            bases.push((base, path));
        }
    }
    bases.sort();

    let mut geometry = Geometry {
        log_id: random_log_id(),
        payload: options.segment_size - SEGMENT_HEADER_LEN as u64,
        window: options.recovery_window(),
        max_record: options.max_record_size as u64,
    };
    if bases.is_empty() {
        return Ok(Recovered {
            geometry,
            segments: Vec::new(),
            spares,
            end: 0,
        });
    }

    // Headers: every segment must be of this log and follow its predecessor.
    let mut segments: Vec<Arc<Segment>> = Vec::new();
    let mut structural: Option<Error> = None;
    for (base, path) in bases {
        let seg = match open_segment(storage, path, base) {
            Ok(seg) => seg,
            Err(e) => {
                structural = Some(e);
                break;
            }
        };
        if let Some(first) = segments.first() {
            let prev = segments.last().unwrap();
            if seg.header.log_id != first.header.log_id {
                structural = Some(Error::corrupt(
                    &seg.path,
                    16,
                    "segment belongs to another log (log id differs)",
                ));
                break;
            }
            if seg.base() != prev.end() {
                structural = Some(Error::corrupt(
                    &seg.path,
                    24,
                    format!("segment starts at {} but the previous one ends at {}: a segment is missing", seg.base(), prev.end()),
                ));
                break;
            }
        }
        segments.push(Arc::new(seg));
    }
    if let Some(err) = structural {
        if options.recovery != RecoveryMode::KeepValidPrefix || segments.is_empty() {
            return Err(err);
        }
        // Keep the segments before the damage; everything after the bad one goes below.
    }

    // Read what the disk holds, not what the cache does. First make durable what a crashed
    // process wrote without fdatasync (`NoSync`/`WriteOnly` records, in any segment): it is
    // part of the log now, and must be durable before anything is acknowledged after it (an
    // fdatasync of a clean file is cheap). Then drop the cached pages: a page whose writeback
    // failed (an `EIO` the crashed session got from fdatasync, or one in the background) is
    // clean and cached with bytes the disk never got, and no fdatasync writes it. Read from the
    // cache it passed for records, and the records acknowledged after it sat behind a hole on
    // disk (found by review, 2026-12-07).
    for seg in &segments {
        seg.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &seg.path, None, e))?;
        seg.file
            .drop_cache()
            .map_err(|e| Error::io("drop cached pages", &seg.path, None, e))?;
    }
    geometry.log_id = segments[0].header.log_id;
    let crc = format::FrameCrc::new(geometry.log_id);
    let window = segments
        .iter()
        .map(|s| s.header.window)
        .max()
        .unwrap_or(0)
        .max(geometry.window);
    let max_record = segments
        .iter()
        .map(|s| s.header.max_record)
        .max()
        .unwrap_or(0)
        .max(geometry.max_record);

    // Walk the frames until the first address that holds none.
    let mut pos = segments[0].base();
    let mut damage: Option<(usize, &'static str)> = None;
    'segments: for (i, seg) in segments.iter().enumerate() {
        pos = seg.base();
        let mut scanner = Scanner::new(seg.clone(), crc.clone(), max_record);
        loop {
            match scanner.step(pos)? {
                Step::Record { total } | Step::Pad { total } => pos += total,
                Step::SegmentEnd => {
                    pos = seg.end();
                    continue 'segments;
                }
                Step::Damage { reason } => {
                    damage = Some((i, reason));
                    break 'segments;
                }
            }
        }
    }

    if let Some((i, reason)) = damage {
        // Damage at `pos`. Valid frames after it can only come from out-of-order slot writes,
        // which stay inside the in-flight window; any further back means real corruption.
        let mut survivors: Vec<(usize, Survivors)> = Vec::new();
        for (j, seg) in segments.iter().enumerate().skip(i) {
            let from = if j == i { pos + 1 } else { seg.base() };
            let found = find_survivors(seg, &crc, max_record, from)?;
            if found.first.is_some() {
                survivors.push((j, found));
            }
        }
        let beyond = survivors
            .iter()
            .any(|(_, s)| s.last.is_some_and(|l| l >= pos.saturating_add(window)));
        let seg = &segments[i];
        if beyond && options.recovery == RecoveryMode::TolerateTornTail {
            return Err(Error::corrupt(
                &seg.path,
                seg.offset_of(pos),
                format!("{reason}, and valid records follow more than the in-flight window ({window} bytes) later"),
            ));
        }
        // Cut here: erase the survivors so that they can never reappear after the new tail.
        for (j, found) in &survivors {
            let s = &segments[*j];
            if *j > i {
                continue; // later segments are removed whole below
            }
            let start = pos;
            let zeros = vec![0u8; (found.end - start).min(1 << 20) as usize];
            let mut at = start;
            while at < found.end {
                let n = (found.end - at).min(zeros.len() as u64) as usize;
                s.file
                    .write_at(s.offset_of(at), &[&zeros[..n]])
                    .map_err(|e| Error::io("write", &s.path, Some(s.offset_of(at)), e))?;
                at += n as u64;
            }
            s.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &s.path, None, e))?;
        }
        if survivors.iter().any(|(j, _)| *j > i)
            || options.recovery == RecoveryMode::KeepValidPrefix
        {
            remove_segments_from(storage, dir, &mut segments, i + 1)?;
        }
    }

    // Every segment after the one holding `pos` is empty now (the walk found no frame there,
    // or its survivors were removed just above). One made by an earlier session with a smaller
    // `segment_size` must not stay: an unbuffered record that does not fit before a segment
    // end goes whole at the next segment's base, which holds it only if that segment is as
    // large as this process makes them; placed in a smaller one, the acknowledged record
    // crossed its end and the next read cut it (found by review, 2026-12-07). The preparer
    // makes new segments of this process's size.
    let tail = segments.partition_point(|s| s.end() <= pos);
    if let Some(k) =
        (tail + 1..segments.len()).find(|&k| segments[k].header.payload < geometry.payload)
    {
        remove_segments_from(storage, dir, &mut segments, k)?;
    }
    if options.recovery == RecoveryMode::KeepValidPrefix {
        // Segments after a structural error were never pushed; remove their files, highest
        // first and each durably, as above.
        let kept: Vec<PathBuf> = segments.iter().map(|s| s.path.clone()).collect();
        let mut dropped: Vec<(u64, PathBuf)> = storage
            .list(dir)
            .map_err(|e| Error::io("list", dir, None, e))?
            .into_iter()
            .filter_map(|name| Some((format::parse_segment_file_name(&name)?, dir.join(&name))))
            .filter(|(_, path)| !kept.contains(path))
            .collect();
        dropped.sort_unstable_by_key(|(base, _)| std::cmp::Reverse(*base));
        for (_, path) in dropped {
            remove_durably(storage, dir, &path)?;
        }
    }

    // New appends go into the segment holding `pos` and the ones after it (the preparer often
    // made one more before the last close), and may put frames there that older builds cannot
    // read: padding inside a segment (format version 2, "Lanes") and CRC-32C frames (version 3).
    // A build that reads only an older version would take such a frame for damage and cut the
    // log there: give each of these segments this version's header (durably, in place: 64
    // bytes, one sector) so that such a build refuses them instead.
    // The header also says how large a record and how wide an in-flight window a reader must
    // allow, and it was written by the process that made the segment: this one may append
    // larger records and keep more in flight. Raise both to this process's, or an opener with
    // the old options would take this process's longest records for damage (and cut
    // acknowledged ones at the tail) or a legitimate hole for corruption (found by review).
    for seg in segments.iter_mut().filter(|s| s.end() > pos) {
        let header = SegmentHeader {
            window: seg.header.window.max(geometry.window),
            max_record: seg.header.max_record.max(geometry.max_record),
            ..seg.header
        };
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        read_full(seg.file.as_ref(), 0, &mut buf)
            .map_err(|e| Error::io("read", &seg.path, Some(0), e))?;
        let current = header.encode();
        if buf != current {
            seg.file
                .write_durable_at(0, &current)
                .map_err(|e| Error::io("write", &seg.path, Some(0), e))?;
        }
        if header != seg.header {
            *seg = Arc::new(Segment {
                header,
                path: seg.path.clone(),
                file: seg.file.clone(),
            });
        }
    }

    // Everything recovery wrote itself (zeroed survivors, raised headers) was made durable
    // where it was written.
    Ok(Recovered {
        geometry,
        segments,
        spares,
        end: pos,
    })
}

/// Removes `segments[from..]` and their files, highest first, each removal durable before the
/// next: whatever stops us (a crash, a failed removal, a power cut), the files left are a
/// contiguous run, which the next `open` recovers the same way. Removed lowest first, they
/// could leave a gap that the next `open` refuses as a missing segment (found by review).
fn remove_segments_from(
    storage: &dyn Storage,
    dir: &Path,
    segments: &mut Vec<Arc<Segment>>,
    from: usize,
) -> Result<()> {
    for s in segments.drain(from..).rev() {
        remove_durably(storage, dir, &s.path)?;
    }
    Ok(())
}

/// Removes the file `path` of directory `dir` and makes the removal durable.
fn remove_durably(storage: &dyn Storage, dir: &Path, path: &Path) -> Result<()> {
    storage
        .remove(path)
        .map_err(|e| Error::io("remove", path, None, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync", dir, None, e))
}
