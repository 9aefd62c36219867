//! RecordBatch v2 headers: parsing and validation. Pure code over byte slices.
//!
//! Layout: baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 | producerId i64 |
//! producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! The CRC-32C covers attributes to the end, so baseOffset and partitionLeaderEpoch can be
//! rewritten without re-encoding anything.

/// Bytes before the records in a v2 batch.
pub const HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the part every batch has, whatever its magic.
pub const LOG_OVERHEAD: usize = 12;

/// The fixed fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The whole batch's size in bytes, LOG_OVERHEAD included.
    pub size: usize,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

/// Reads baseOffset and the total size from the first LOG_OVERHEAD bytes; `None` if too short
/// or the length is impossible.
pub fn peek_size(buf: &[u8]) -> Option<(i64, usize)> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, 8);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some((be_i64(buf, 0), len as usize + LOG_OVERHEAD))
}

/// Parses the fixed header; `None` if `buf` is shorter than a header or the length is impossible.
pub fn parse_header(buf: &[u8]) -> Option<BatchHeader> {
    let (base_offset, size) = peek_size(buf)?;
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some(BatchHeader {
        base_offset,
        size,
        leader_epoch: be_i32(buf, 12),
        magic: buf[16] as i8,
        crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
        attributes: i16::from_be_bytes([buf[21], buf[22]]),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: i16::from_be_bytes([buf[51], buf[52]]),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    })
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch is truncated or malformed: {0}")]
    Corrupt(String),
    #[error("record batch has a bad CRC")]
    BadCrc,
    #[error("record batch of {size} bytes is larger than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("record batch magic {0} is not supported (v2 only)")]
    UnsupportedMagic(i8),
    #[error("{0}")]
    Invalid(String),
    /// A client set the LogAppendTime bit, which only the broker sets (Kafka: INVALID_TIMESTAMP).
    #[error("a producer may not set the timestamp type to LogAppendTime")]
    ClientLogAppendTime,
    /// A transactional batch without a producer id (Kafka: INVALID_TXN_STATE).
    #[error("a transactional batch needs a producer id")]
    Transactional,
}

/// The attributes bit of a transactional batch.
pub const TRANSACTIONAL: i16 = 0x10;
/// The attributes bit of a control batch (transaction markers), which only brokers write.
pub const CONTROL: i16 = 0x20;

/// What Kafka's leader checks of a client's batch header before it appends. The batch must say
/// what it holds: its offset range (last offset delta + 1) equals its record count, and both
/// are positive — without this a batch could claim billions of offsets and force a new segment
/// on every later append. It may not be a control batch (markers are the broker's), an
/// idempotent batch needs a sequence, and the LogAppendTime bit is the broker's to set. A
/// transactional batch must come from a producer id. Replicated and coordinator
/// batches are not checked here (compaction will leave gaps in them).
pub fn check_client_batch(h: &BatchHeader) -> Result<(), BatchError> {
    let range = h.last_offset_delta as i64 + 1;
    if h.record_count <= 0 || range != h.record_count as i64 {
        return Err(BatchError::Invalid(format!(
            "record batch claims {range} offsets but holds {} records",
            h.record_count
        )));
    }
    if h.attributes & CONTROL != 0 {
        return Err(BatchError::Invalid(
            "clients may not write control records".into(),
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err(BatchError::Invalid(format!(
            "batch of producer {} has no sequence number",
            h.producer_id
        )));
    }
    if h.is_log_append_time() {
        return Err(BatchError::ClientLogAppendTime);
    }
    if h.is_transactional() && h.producer_id < 0 {
        return Err(BatchError::Transactional);
    }
    Ok(())
}

impl BatchHeader {
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }
}

/// The key's type field of a transaction marker: abort 0, commit 1 (Kafka's ControlRecordType).
pub const MARKER_ABORT: i16 = 0;
pub const MARKER_COMMIT: i16 = 1;

/// A transaction marker as Kafka's leaders write it on WriteTxnMarkers: a control batch of the
/// producer (transactional, no sequence) holding one record whose key is (version 0, type) and
/// whose value is (version 0, the coordinator's epoch). Offset and leader epoch are placed at
/// append time.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind = if commit { MARKER_COMMIT } else { MARKER_ABORT };
    // One record: attributes, timestamp delta 0, offset delta 0, key of 4 bytes, value of 6,
    // no headers. Varints are zig-zag: 4 -> 8, 6 -> 12, a body of 16 -> 32.
    let mut record = vec![32u8, 0, 0, 0, 8];
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&kind.to_be_bytes());
    record.push(12);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    record.push(0);
    let mut b = Vec::with_capacity(HEADER_LEN + record.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + record.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]); // CRC, below
    b.extend_from_slice(&(CONTROL | TRANSACTIONAL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Checks the CRC-32C of one whole batch.
pub fn crc_ok(batch: &[u8], header: &BatchHeader) -> bool {
    batch.len() >= HEADER_LEN && crc32c::crc32c(&batch[21..]) == header.crc
}

/// Splits `records` into batches and checks each: complete, magic 2, sane counts, CRC-32C, and
/// not larger than `max_bytes`. Returns each batch's header and byte range.
pub fn validate(
    records: &[u8],
    max_bytes: usize,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let (_, size) = peek_size(rest)
            .ok_or_else(|| BatchError::Corrupt("batch header is incomplete".into()))?;
        if rest.len() < HEADER_LEN || rest.len() < size {
            return Err(BatchError::Corrupt(format!(
                "batch declares {size} bytes but {} remain",
                rest.len()
            )));
        }
        let h = parse_header(rest)
            .ok_or_else(|| BatchError::Corrupt("batch header is incomplete".into()))?;
        if h.magic != 2 {
            return Err(BatchError::UnsupportedMagic(h.magic));
        }
        if size > max_bytes {
            return Err(BatchError::TooLarge {
                size,
                max: max_bytes,
            });
        }
        if !crc_ok(&rest[..size], &h) {
            return Err(BatchError::BadCrc);
        }
        if h.last_offset_delta < 0 || h.record_count < 0 {
            return Err(BatchError::Corrupt("negative record count".into()));
        }
        out.push((h, pos..pos + size));
        pos += size;
    }
    if out.is_empty() {
        return Err(BatchError::Corrupt("no record batch".into()));
    }
    Ok(out)
}

/// The attributes bit saying the batch's timestamps are the broker's (LogAppendTime).
pub const LOG_APPEND_TIME: i16 = 0x08;

impl BatchHeader {
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME != 0
    }
}

/// A copy of `batch` stamped with the broker's clock, as Kafka does for a LogAppendTime topic:
/// the timestamp-type bit set, the max timestamp `now` (every record's timestamp, for readers),
/// and the CRC-32C recomputed. Record bytes are unchanged.
pub fn stamp_log_append_time(h: &BatchHeader, batch: &[u8], now: i64) -> (BatchHeader, Vec<u8>) {
    let mut out = batch.to_vec();
    let mut h = *h;
    h.attributes |= LOG_APPEND_TIME;
    h.max_timestamp = now;
    out[21..23].copy_from_slice(&h.attributes.to_be_bytes());
    out[35..43].copy_from_slice(&now.to_be_bytes());
    h.crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&h.crc.to_be_bytes());
    (h, out)
}

/// CreateTime: whether the batch's timestamps lie within `before_max_ms` before and
/// `after_max_ms` after `now` (Kafka's `message.timestamp.*.max.ms`). The first record's
/// timestamp stands for the oldest (producers append in time order) and the batch's max for the
/// newest, so the records need not be decoded; -1 means no timestamp and passes.
pub fn timestamps_in_range(
    h: &BatchHeader,
    now: i64,
    before_max_ms: i64,
    after_max_ms: i64,
) -> bool {
    let oldest_ok = h.base_timestamp < 0 || h.base_timestamp >= now.saturating_sub(before_max_ms);
    let newest_ok = h.max_timestamp < 0 || h.max_timestamp <= now.saturating_add(after_max_ms);
    oldest_ok && newest_ok
}

/// The 16 bytes that replace the start of a batch when it is appended: the assigned base offset,
/// the unchanged length, and the partition leader epoch. Neither rewritten field is under the CRC.
pub fn rewritten_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&base_offset.to_be_bytes());
    p[8..12].copy_from_slice(&batch[8..12]);
    p[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal valid v2 batch of `n` empty-value records for tests.
    pub fn make_batch(n: i32, ts: i64, payload: usize) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..n {
            let mut r = Vec::new();
            r.push(0u8); // attributes
            push_varint(&mut r, 0); // timestamp delta
            push_varint(&mut r, i as i64); // offset delta
            push_varint(&mut r, -1); // key null
            push_varint(&mut r, payload as i64);
            r.extend(std::iter::repeat_n(b'x', payload));
            push_varint(&mut r, 0); // headers
            push_varint(&mut records, r.len() as i64);
            records.extend(r);
        }
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend(0i32.to_be_bytes()); // length, fixed below
        b.extend(0i32.to_be_bytes());
        b.push(2);
        b.extend(0u32.to_be_bytes()); // crc, fixed below
        b.extend(0i16.to_be_bytes());
        b.extend((n - 1).to_be_bytes());
        b.extend(ts.to_be_bytes());
        b.extend(ts.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(n.to_be_bytes());
        b.extend(records);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn push_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    #[test]
    fn valid_batch_passes_and_bad_crc_fails() {
        let b = make_batch(3, 1000, 10);
        let v = validate(&b, 1 << 20).expect("valid");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0.record_count, 3);
        assert_eq!(v[0].0.last_offset_delta, 2);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(validate(&bad, 1 << 20), Err(BatchError::BadCrc));
        assert!(matches!(validate(&b, 10), Err(BatchError::TooLarge { .. })));
        assert!(matches!(
            validate(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate(&b[..20], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn stamping_log_append_time_sets_the_type_and_max_timestamp_and_keeps_the_crc_valid() {
        let b = make_batch(3, 1_000, 10);
        let original = parse_header(&b).expect("header");
        let (stamped_header, stamped) = stamp_log_append_time(&original, &b, 5_000);
        let v = validate(&stamped, 1 << 20).expect("a valid batch after stamping");
        let h = v[0].0;
        assert_eq!(h, stamped_header);
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5_000);
        assert_eq!(
            h.base_timestamp, 1_000,
            "records and base timestamp untouched"
        );
        assert_eq!(&stamped[61..], &b[61..]);
        assert!(!parse_header(&b).expect("header").is_log_append_time());
    }

    #[test]
    fn create_time_bounds_use_the_first_and_the_largest_timestamp() {
        let b = make_batch(3, 1_000, 10);
        let h = parse_header(&b).expect("header");
        assert!(timestamps_in_range(&h, 1_000, 0, 1_000));
        assert!(!timestamps_in_range(&h, 900, i64::MAX, 10), "too far ahead");
        assert!(!timestamps_in_range(&h, 5_000, 100, i64::MAX), "too old");
        assert!(timestamps_in_range(&h, 5_000, i64::MAX, i64::MAX));
    }

    #[test]
    fn a_client_batch_must_claim_as_many_offsets_as_it_holds_records() {
        let b = make_batch(3, 1_000, 10);
        let mut h = parse_header(&b).expect("header");
        assert!(check_client_batch(&h).is_ok());
        h.last_offset_delta = i32::MAX;
        assert!(matches!(
            check_client_batch(&h),
            Err(BatchError::Invalid(_))
        ));
        h.last_offset_delta = -1;
        h.record_count = 0;
        assert!(check_client_batch(&h).is_err());
    }

    #[test]
    fn client_batches_may_not_use_the_brokers_bits() {
        let b = make_batch(3, 1_000, 10);
        let ok = parse_header(&b).expect("header");
        assert!(check_client_batch(&ok).is_ok());
        let with = |attributes: i16| BatchHeader {
            attributes: ok.attributes | attributes,
            ..ok
        };
        assert!(matches!(
            check_client_batch(&with(CONTROL)),
            Err(BatchError::Invalid(_))
        ));
        assert_eq!(
            check_client_batch(&with(LOG_APPEND_TIME)),
            Err(BatchError::ClientLogAppendTime)
        );
        assert_eq!(
            check_client_batch(&with(TRANSACTIONAL)),
            Err(BatchError::Transactional)
        );
        let no_sequence = BatchHeader {
            producer_id: 7,
            base_sequence: -1,
            ..ok
        };
        assert!(matches!(
            check_client_batch(&no_sequence),
            Err(BatchError::Invalid(_))
        ));
    }

    #[test]
    fn rewriting_prefix_keeps_crc_valid() {
        let mut b = make_batch(2, 5, 3);
        let p = rewritten_prefix(&b, 42, 7);
        b[..16].copy_from_slice(&p);
        let v = validate(&b, 1 << 20).expect("still valid");
        assert_eq!(v[0].0.base_offset, 42);
        assert_eq!(v[0].0.leader_epoch, 7);
    }
}
