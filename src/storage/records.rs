//! The records inside one v2 batch, read only where the broker must look inside a batch (a
//! ListOffsets by timestamp, compaction, a compacted topic's keys), with decompression
//! bounded: a small batch that would expand past `limit` bytes (a decompression bomb) is not
//! expanded, and the caller answers at batch granularity instead. And the one way the broker
//! writes a batch of its own (the group coordinator's records). Pure code over byte slices.

use std::io::Read;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{BatchHeader, HEADER_LEN};
use crate::types::Offset;

/// One v2 batch of `records` — (key, value, timestamp); no value is a tombstone — with no
/// producer and CreateTime timestamps.
pub fn encode_batch(
    records: &[(Option<Bytes>, Option<Bytes>, i64)],
    compression: Compression,
) -> anyhow::Result<Bytes> {
    encode_producer_batch(records, compression, None)
}

/// `encode_batch`, as a transactional batch of `producer` (id, epoch) when given, with no
/// sequence (the group coordinator's offsets committed inside a transaction, as Kafka writes
/// them).
pub fn encode_producer_batch(
    records: &[(Option<Bytes>, Option<Bytes>, i64)],
    compression: Compression,
    producer: Option<(i64, i16)>,
) -> anyhow::Result<Bytes> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; this
            // leaves the batch's base sequence at -1 (no producer).
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)?;
    Ok(buf.freeze())
}

/// Snappy as Java's clients frame it (xerial): this header, then length-prefixed raw blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// The record section of `batch`, decompressed to at most `limit` bytes; `None` when it holds
/// more, or cannot be decompressed.
pub(super) fn records_section(batch: &[u8], h: &BatchHeader, limit: usize) -> Option<Vec<u8>> {
    let body = batch.get(HEADER_LEN..)?;
    let bounded = |reader: &mut dyn Read| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        reader.take(limit as u64 + 1).read_to_end(&mut out).ok()?;
        (out.len() <= limit).then_some(out)
    };
    match h.compression() {
        0 => (body.len() <= limit).then(|| body.to_vec()),
        1 => bounded(&mut flate2::read::GzDecoder::new(body)),
        2 => snappy(body, limit),
        3 => bounded(&mut lz4::Decoder::new(body).ok()?),
        4 => bounded(&mut zstd::stream::read::Decoder::new(body).ok()?),
        _ => None,
    }
}

/// Snappy, framed (xerial) or raw; every block's expanded size is known before expanding it.
fn snappy(body: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let expand = |block: &[u8], out: &mut Vec<u8>| -> Option<()> {
        let len = snap::raw::decompress_len(block).ok()?;
        if out.len() + len > limit {
            return None;
        }
        out.extend(snap::raw::Decoder::new().decompress_vec(block).ok()?);
        Some(())
    };
    if !body.starts_with(XERIAL_MAGIC) {
        expand(body, &mut out)?;
        return Some(out);
    }
    let mut rest = body.get(XERIAL_HEADER_LEN..)?;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let block = rest.get(4..4 + len)?;
        expand(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Some(out)
}

/// A zig-zag varint at `pos`, advancing it.
fn varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// One record inside a batch's (decompressed) record section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset: Offset,
    pub timestamp: i64,
    /// Where the key is in the section; `None` for a record without a key.
    pub key: Option<Range<usize>>,
    /// The record has no value: it deletes its key.
    pub tombstone: bool,
    /// The whole record, its length prefix included.
    pub bytes: Range<usize>,
}

/// The records of a batch whose record section is `section`; `None` when they do not parse.
pub fn parse_records(section: &[u8], h: &BatchHeader) -> Option<Vec<RecordInfo>> {
    let count = usize::try_from(h.record_count).ok()?;
    let mut out = Vec::with_capacity(count.min(section.len()));
    let mut pos = 0;
    for _ in 0..count {
        let start = pos;
        let len = usize::try_from(varint(section, &mut pos)?).ok()?;
        let end = pos.checked_add(len)?;
        if end > section.len() {
            return None;
        }
        let mut at = pos + 1; // attributes
        let ts_delta = varint(section, &mut at)?;
        let offset_delta = varint(section, &mut at)?;
        let key_len = varint(section, &mut at)?;
        let key = if key_len < 0 {
            None
        } else {
            let k = at..at.checked_add(usize::try_from(key_len).ok()?)?;
            at = k.end;
            Some(k)
        };
        let value_len = varint(section, &mut at)?;
        if at > end || (value_len > 0 && at + value_len as usize > end) {
            return None;
        }
        out.push(RecordInfo {
            offset: h.base_offset.saturating_add(offset_delta),
            timestamp: if h.is_log_append_time() {
                h.max_timestamp
            } else {
                h.base_timestamp.saturating_add(ts_delta)
            },
            key,
            tombstone: value_len < 0,
            bytes: start..end,
        });
        pos = end;
    }
    Some(out)
}

/// A transaction marker's record: its type (`batch::MARKER_ABORT` or `MARKER_COMMIT`, from the
/// key) and the epoch of the coordinator that wrote it (from the value; -1 if absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    pub kind: i16,
    pub coordinator_epoch: i32,
}

/// The transaction marker `batch` holds; `None` when it is no control batch or its record does
/// not parse. Control batches are never compressed.
pub fn control_record(batch: &[u8], h: &BatchHeader) -> Option<ControlRecord> {
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let section = batch.get(HEADER_LEN..h.size.min(batch.len()))?;
    let first = parse_records(section, h)?.into_iter().next()?;
    let key = section.get(first.key.clone()?)?;
    if key.len() < 4 {
        return None;
    }
    // The value follows the key: a varint length, then version i16 and coordinator epoch i32.
    let mut at = first.key?.end;
    let len = varint(section, &mut at)?;
    let value = section.get(at..at + usize::try_from(len).ok()?)?;
    let coordinator_epoch = value
        .get(2..6)
        .map_or(-1, |e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]));
    Some(ControlRecord {
        kind: i16::from_be_bytes([key[2], key[3]]),
        coordinator_epoch,
    })
}

/// (offset, timestamp) of every record of `batch`; `None` when the records cannot be read
/// within `limit` bytes. A LogAppendTime batch's records all carry the batch's timestamp.
pub fn record_times(batch: &[u8], h: &BatchHeader, limit: usize) -> Option<Vec<(i64, i64)>> {
    let section = records_section(batch, h, limit)?;
    Some(
        parse_records(&section, h)?
            .into_iter()
            .map(|r| (r.offset, r.timestamp))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::parse_header;

    fn batch(compression: Compression, values: &[Vec<u8>]) -> Vec<u8> {
        let records: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (None, Some(Bytes::copy_from_slice(v)), 1_000 + 10 * i as i64))
            .collect();
        encode_batch(&records, compression)
            .expect("encode")
            .to_vec()
    }

    #[test]
    fn every_codec_gives_each_records_offset_and_time() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(c, &[b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
            let h = parse_header(&b).expect("header");
            assert_eq!(
                record_times(&b, &h, 1 << 20),
                Some(vec![(0, 1_000), (1, 1_010), (2, 1_020)]),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_batch_that_expands_past_the_limit_is_not_expanded() {
        // 4 MiB of zeros compress to a few KiB.
        let big = vec![0u8; 4 << 20];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(c, std::slice::from_ref(&big));
            assert!(b.len() < 1 << 20, "{c:?} compresses");
            let h = parse_header(&b).expect("header");
            assert_eq!(record_times(&b, &h, 1 << 20), None, "{c:?}");
            assert!(record_times(&b, &h, 8 << 20).is_some(), "{c:?}");
        }
    }

    #[test]
    fn a_marker_batch_is_valid_and_says_its_type() {
        use crate::storage::batch::{control_batch, validate, MARKER_ABORT, MARKER_COMMIT};
        for (commit, kind) in [(true, MARKER_COMMIT), (false, MARKER_ABORT)] {
            let b = control_batch(42, 3, commit, 7, 1_000);
            let batches = validate(&b, usize::MAX).expect("valid batch");
            let h = batches[0].0;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            assert_eq!(
                control_record(&b, &h),
                Some(ControlRecord {
                    kind,
                    coordinator_epoch: 7
                })
            );
            // kafka-protocol's decoder reads it as Kafka's clients would.
            let mut buf = Bytes::from(b);
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).expect("decodes");
            assert!(set.records[0].control);
        }
        let plain = batch(Compression::None, &[b"abc".to_vec()]);
        let h = parse_header(&plain).expect("header");
        assert_eq!(control_record(&plain, &h), None);
    }

    #[test]
    fn truncated_records_are_refused_not_read_past() {
        let b = batch(Compression::None, &[b"abc".to_vec(), b"def".to_vec()]);
        let mut h = parse_header(&b).expect("header");
        h.record_count = 5;
        assert_eq!(record_times(&b, &h, 1 << 20), None);
        assert_eq!(record_times(&b[..b.len() - 2], &h, 1 << 20), None);
    }
}
