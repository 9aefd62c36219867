//! Compaction's pure part: the key map of one cleaning pass, which records of a batch the
//! cleaner keeps, the batch that holds what is kept (recompressed with the batch's own codec,
//! offsets and producer fields unchanged), how segments are grouped into cleaned segments, and
//! when a tombstone may go. Plain functions over bytes and numbers; the files and the swap are
//! `log/cleaning.rs`'s, the threads `replica/cleaner.rs`'s.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::ops::Range;

use super::batch::{BatchHeader, CONTROL, HEADER_LEN, LOG_OVERHEAD};
use super::records::{parse_records, records_section, RecordInfo};
use crate::types::Offset;

/// How far one batch is decompressed to read its keys (64 MiB, as for timestamps). A batch
/// that cannot be read within it is kept whole.
const RECORDS_LIMIT: usize = 64 << 20;

/// Memory per map entry: a 128-bit key hash, an offset, and the table's overhead.
pub const ENTRY_BYTES: usize = 32;

/// Key → offset of its latest record in the dirty part of a log. Keys are kept as 128-bit
/// hashes (two independently seeded SipHashes), as Kafka keeps MD5s: a collision would drop a
/// live record, and at 2^-128 per pair it is never expected.
pub struct OffsetMap {
    entries: HashMap<u128, Offset>,
    capacity: usize,
    seeds: (RandomState, RandomState),
}

impl OffsetMap {
    /// A map that holds as many keys as fit in `bytes`.
    pub fn with_memory(bytes: usize) -> OffsetMap {
        OffsetMap {
            entries: HashMap::new(),
            capacity: (bytes / ENTRY_BYTES).max(1),
            seeds: (RandomState::new(), RandomState::new()),
        }
    }

    fn hash(&self, key: &[u8]) -> u128 {
        (u128::from(self.seeds.0.hash_one(key)) << 64) | u128::from(self.seeds.1.hash_one(key))
    }

    /// Records that `key`'s latest record is at `offset`; false (and nothing changed) when the
    /// key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: Offset) -> bool {
        let h = self.hash(key);
        if let Some(o) = self.entries.get_mut(&h) {
            *o = (*o).max(offset);
            return true;
        }
        if self.entries.len() >= self.capacity {
            return false;
        }
        self.entries.insert(h, offset);
        true
    }

    pub fn latest(&self, key: &[u8]) -> Option<Offset> {
        self.entries.get(&self.hash(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Whether every record of a client's batch has a key (a compacted topic takes no other);
/// `None` when the records cannot be read within the decompression bound.
pub fn all_keyed(batch: &[u8], h: &BatchHeader) -> Option<bool> {
    let section = records_section(batch, h, RECORDS_LIMIT)?;
    let records = parse_records(&section, h)?;
    Some(records.iter().all(|r| r.key.is_some()))
}

/// What one cleaning pass keeps.
pub struct Retain<'a> {
    pub map: &'a OffsetMap,
    /// Records at or after this offset were not mapped: all of them stay.
    pub map_end: Offset,
    /// Tombstones below this offset were passed by a cleaning at least `delete.retention.ms`
    /// ago and may go.
    pub tombstone_horizon: Offset,
    /// The smallest offset of a tombstone this pass kept (below `map_end`), so the log is
    /// cleaned again once it may go even if nothing new is written.
    pub oldest_tombstone: std::cell::Cell<Option<Offset>>,
}

impl Retain<'_> {
    /// Kafka's rule: a record stays when it is the latest of its key (or after the map), and a
    /// latest record that is a tombstone stays until its horizon. Records without a key cannot
    /// be compacted by key and go.
    pub fn keeps(&self, section: &[u8], r: &RecordInfo) -> bool {
        if r.offset >= self.map_end {
            return true;
        }
        let Some(key) = &r.key else { return false };
        if self
            .map
            .latest(&section[key.clone()])
            .is_some_and(|latest| latest > r.offset)
        {
            return false;
        }
        if r.tombstone {
            if r.offset < self.tombstone_horizon {
                return false;
            }
            let oldest = self
                .oldest_tombstone
                .get()
                .map_or(r.offset, |o| o.min(r.offset));
            self.oldest_tombstone.set(Some(oldest));
        }
        true
    }

    pub fn new(map: &OffsetMap, map_end: Offset, tombstone_horizon: Offset) -> Retain<'_> {
        Retain {
            map,
            map_end,
            tombstone_horizon,
            oldest_tombstone: std::cell::Cell::new(None),
        }
    }
}

/// What the cleaner writes for one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays (or the batch cannot be looked into): copied as it is.
    Whole,
    /// No record stays.
    Dropped,
    /// Some records stay: this new batch holds them.
    Rebuilt(Vec<u8>),
}

/// Filters one stored batch. `keep_header`: the batch is its producer's last in the log, so
/// it stays even when empty, keeping the producer's sequence (as Kafka's cleaner does).
pub fn filter_batch(batch: &[u8], h: &BatchHeader, retain: &Retain, keep_header: bool) -> Filtered {
    if h.attributes & CONTROL != 0 || h.magic != 2 {
        return Filtered::Whole;
    }
    let Some(section) = records_section(batch, h, RECORDS_LIMIT) else {
        return Filtered::Whole;
    };
    let Some(records) = parse_records(&section, h) else {
        return Filtered::Whole;
    };
    if records.is_empty() {
        // An emptied batch kept earlier: it stays only while it is still its producer's last.
        return if keep_header {
            Filtered::Whole
        } else {
            Filtered::Dropped
        };
    }
    let kept: Vec<&RecordInfo> = records
        .iter()
        .filter(|r| retain.keeps(&section, r))
        .collect();
    if kept.len() == records.len() {
        return Filtered::Whole;
    }
    if kept.is_empty() && !keep_header {
        return Filtered::Dropped;
    }
    match rebuild(batch, h, &section, &kept) {
        Some(b) => Filtered::Rebuilt(b),
        None => Filtered::Whole,
    }
}

/// A batch with the header of `batch` holding `kept` records: base offset, last offset delta,
/// producer id, epoch and base sequence unchanged (each record keeps its offset delta), the
/// record count and (CreateTime) max timestamp recomputed, the body recompressed with the
/// batch's codec and the CRC-32C recomputed. An empty batch is written uncompressed, with no
/// body, as Kafka writes one.
fn rebuild(batch: &[u8], h: &BatchHeader, section: &[u8], kept: &[&RecordInfo]) -> Option<Vec<u8>> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for r in kept {
        raw.extend_from_slice(&section[r.bytes.clone()]);
    }
    let xerial = batch
        .get(HEADER_LEN..)
        .is_some_and(|b| b.starts_with(XERIAL_MAGIC));
    let codec = if kept.is_empty() { 0 } else { h.compression() };
    let body = compress(codec, &raw, xerial)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(batch.get(..HEADER_LEN)?);
    if kept.is_empty() {
        let attributes = h.attributes & !0x7;
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
    }
    out.extend_from_slice(&body);
    let len = i32::try_from(out.len() - LOG_OVERHEAD).ok()?;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    if !h.is_log_append_time() {
        let max = kept
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(h.base_timestamp);
        out[35..43].copy_from_slice(&max.to_be_bytes());
    }
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_BLOCK: usize = 32 << 10;

/// `raw` compressed as Kafka's clients expect each codec: gzip, snappy (raw, or xerial-framed
/// when the batch came so), LZ4 frames with independent blocks, zstd.
fn compress(codec: i16, raw: &[u8], xerial: bool) -> Option<Vec<u8>> {
    match codec {
        0 => Some(raw.to_vec()),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).ok()?;
            e.finish().ok()
        }
        2 if xerial => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in raw.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).ok()?;
                out.extend_from_slice(&u32::try_from(block.len()).ok()?.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Some(out)
        }
        2 => snap::raw::Encoder::new().compress_vec(raw).ok(),
        3 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .ok()?;
            e.write_all(raw).ok()?;
            let (out, result) = e.finish();
            result.ok()?;
            Some(out)
        }
        4 => zstd::stream::encode_all(raw, 3).ok(),
        _ => None,
    }
}

/// One segment as the grouping sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    pub base: Offset,
    pub size: u64,
    pub next_offset: Offset,
}

/// Consecutive segments cleaned into one: as many as fit together in `segment_bytes` (their
/// sizes before cleaning, as Kafka counts) and within a 32-bit offset span of the first base.
/// Returns index ranges into `segments`.
pub fn group_segments(segments: &[SegmentSpan], segment_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut size = segments[start].size;
        while end < segments.len()
            && size + segments[end].size <= segment_bytes
            && segments[end].next_offset - segments[start].base <= i32::MAX as i64
        {
            size += segments[end].size;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

/// Where tombstones may go: the furthest a cleaning pass had reached (`(cleaned_to, at_ms)`
/// per pass, oldest first) at least `delete_retention_ms` before `now_ms`. A tombstone below it
/// was first passed that long ago.
pub fn tombstone_horizon(
    passes: &[(Offset, i64)],
    now_ms: i64,
    delete_retention_ms: i64,
) -> Offset {
    let cutoff = now_ms.saturating_sub(delete_retention_ms);
    passes
        .iter()
        .filter(|(_, at)| *at <= cutoff)
        .map(|(to, _)| *to)
        .max()
        .unwrap_or(0)
}

/// The passes still worth remembering: the newest one at or before `now_ms - keep_ms` (it
/// alone sets the horizon) and every later one.
pub fn prune_passes(passes: &mut Vec<(Offset, i64)>, now_ms: i64, keep_ms: i64) {
    let cutoff = now_ms.saturating_sub(keep_ms);
    if let Some(last_old) = passes.iter().rposition(|(_, at)| *at <= cutoff) {
        passes.drain(..last_old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{parse_header, validate};
    use crate::storage::records::encode_batch;
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn kv(k: &str, v: Option<&str>, ts: i64) -> (Option<Bytes>, Option<Bytes>, i64) {
        (
            Some(Bytes::copy_from_slice(k.as_bytes())),
            v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            ts,
        )
    }

    fn placed(mut b: Vec<u8>, base: i64) -> Vec<u8> {
        b[..8].copy_from_slice(&base.to_be_bytes());
        b
    }

    /// (offset, key, value) of every record, read back with kafka-protocol's decoder.
    fn decoded(b: &[u8]) -> Vec<(i64, String, Option<String>)> {
        let mut buf = Bytes::copy_from_slice(b);
        let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
        set.records
            .into_iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned(),
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn the_map_keeps_the_latest_offset_and_refuses_new_keys_when_full() {
        let mut m = OffsetMap::with_memory(2 * ENTRY_BYTES);
        assert!(m.put(b"a", 3));
        assert!(m.put(b"b", 4));
        assert!(m.put(b"a", 9), "a known key still updates");
        assert!(!m.put(b"c", 10), "full");
        assert_eq!(m.latest(b"a"), Some(9));
        assert_eq!(m.latest(b"c"), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_filtered_batch_keeps_offsets_codec_and_reads_back_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let recs = vec![
                kv("a", Some("1"), 100),
                kv("b", Some("2"), 110),
                kv("a", Some("3"), 120),
                kv("c", None, 130),
                kv("d", Some("5"), 140),
            ];
            let b = placed(encode_batch(&recs, c).expect("encode").to_vec(), 50);
            let h = parse_header(&b).expect("header");
            let mut map = OffsetMap::with_memory(1 << 20);
            // A later batch (offset 60) holds b's latest value.
            for (k, o) in [("a", 52), ("b", 60), ("c", 53), ("d", 54)] {
                map.put(k.as_bytes(), o);
            }
            let retain = Retain::new(&map, 61, 0);
            let Filtered::Rebuilt(out) = filter_batch(&b, &h, &retain, false) else {
                panic!("{c:?}: some records go")
            };
            let nh = validate(&out, usize::MAX).expect("valid batch")[0].0;
            assert_eq!(nh.base_offset, 50, "{c:?}");
            assert_eq!(
                nh.last_offset(),
                h.last_offset(),
                "{c:?}: offsets span kept"
            );
            assert_eq!(nh.compression(), h.compression(), "{c:?}");
            assert_eq!(nh.record_count, 3);
            assert_eq!(nh.max_timestamp, 140);
            assert_eq!(
                decoded(&out),
                [
                    (52, "a".to_string(), Some("3".to_string())),
                    (53, "c".to_string(), None),
                    (54, "d".to_string(), Some("5".to_string())),
                ],
                "{c:?}"
            );
            // Past the tombstone horizon the tombstone goes too.
            assert_eq!(retain.oldest_tombstone.get(), Some(53), "{c:?}");
            let retain = Retain::new(&map, 61, 54);
            let Filtered::Rebuilt(out) = filter_batch(&b, &h, &retain, false) else {
                panic!("{c:?}")
            };
            assert_eq!(decoded(&out).len(), 2, "{c:?}");
        }
    }

    #[test]
    fn whole_dropped_and_kept_empty_batches() {
        let b = encode_batch(
            &[kv("a", Some("1"), 1), kv("b", Some("2"), 2)],
            Compression::Zstd,
        )
        .expect("encode")
        .to_vec();
        let h = parse_header(&b).expect("header");
        let mut map = OffsetMap::with_memory(1 << 20);
        let nothing_newer = Retain::new(&map, 2, 0);
        assert_eq!(filter_batch(&b, &h, &nothing_newer, false), Filtered::Whole);
        map.put(b"a", 7);
        map.put(b"b", 8);
        let all_newer = Retain::new(&map, 9, 0);
        assert_eq!(filter_batch(&b, &h, &all_newer, false), Filtered::Dropped);
        let Filtered::Rebuilt(empty) = filter_batch(&b, &h, &all_newer, true) else {
            panic!("a producer's last batch stays, empty")
        };
        let eh = validate(&empty, usize::MAX).expect("valid")[0].0;
        assert_eq!((eh.record_count, eh.last_offset_delta), (0, 1));
        assert_eq!(eh.compression(), 0, "an empty batch is uncompressed");
        // Once it is no longer its producer's last, a later pass drops it.
        assert_eq!(filter_batch(&empty, &eh, &all_newer, true), Filtered::Whole);
        assert_eq!(
            filter_batch(&empty, &eh, &all_newer, false),
            Filtered::Dropped
        );
        // Records after the map stay whatever the map says.
        let unmapped = Retain::new(&map, 0, 0);
        assert_eq!(filter_batch(&b, &h, &unmapped, false), Filtered::Whole);
    }

    #[test]
    fn keyless_records_are_found() {
        let keyed = encode_batch(&[kv("a", Some("1"), 1)], Compression::Zstd).expect("encode");
        let h = parse_header(&keyed).expect("header");
        assert_eq!(all_keyed(&keyed, &h), Some(true));
        let keyless = encode_batch(
            &[
                kv("a", Some("1"), 1),
                (None, Some(Bytes::from_static(b"x")), 2),
            ],
            Compression::Lz4,
        )
        .expect("encode");
        let h = parse_header(&keyless).expect("header");
        assert_eq!(all_keyed(&keyless, &h), Some(false));
    }

    #[test]
    fn segments_group_by_size_and_offset_span() {
        let s = |base, size, next| SegmentSpan {
            base,
            size,
            next_offset: next,
        };
        let segs = [
            s(0, 400, 10),
            s(10, 500, 20),
            s(20, 200, 30),
            s(30, 900, 40),
        ];
        assert_eq!(group_segments(&segs, 1000), [0..2, 2..3, 3..4]);
        assert_eq!(group_segments(&segs, 10_000), vec![(0..4)]);
        let wide = [s(0, 1, 10), s(10, 1, i32::MAX as i64 + 5)];
        assert_eq!(group_segments(&wide, 10_000), [0..1, 1..2]);
    }

    #[test]
    fn tombstones_wait_for_delete_retention_after_the_first_pass() {
        let passes = vec![(100, 1_000), (250, 5_000), (400, 9_000)];
        assert_eq!(tombstone_horizon(&passes, 5_500, 1_000), 100);
        assert_eq!(tombstone_horizon(&passes, 6_000, 1_000), 250);
        assert_eq!(tombstone_horizon(&passes, 5_500, 10_000), 0);
        assert_eq!(tombstone_horizon(&passes, 20_000, 0), 400);
        let mut p = passes.clone();
        prune_passes(&mut p, 8_000, 1_000);
        assert_eq!(p, [(250, 5_000), (400, 9_000)]);
        assert_eq!(tombstone_horizon(&p, 8_000, 1_000), 250);
    }
}
