//! The Fetch response, written straight into the pieces a connection sends: in-memory bytes for
//! the response's fields, and — where each partition's records go — the records themselves,
//! either bytes already read or a file range the writer sends with sendfile. Nothing is copied
//! into the encoded response and nothing is searched for afterwards.
//!
//! The three levels that hold records (response, topic, partition) are written here field by
//! field as the Fetch schema lays them out for versions 4–18; every other struct (leader hints,
//! diverging epochs, aborted transactions, node endpoints) is encoded by `kafka_protocol`. The
//! frame size is known before the first byte: the codec's own size of the response without
//! records, adjusted by each partition's records. The test below holds the output to the codec's
//! byte for byte, across every version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::Encodable;

use super::Part;

/// The first and last Fetch versions this writer knows.
pub const VERSIONS: (i16, i16) = (4, 18);

/// Writes a whole response frame (size, header, body). `response`'s partitions carry no records
/// (None or empty: either takes as many bytes as a null or empty field); `records` gives each
/// partition's, in the order the partitions appear (None: a null records field).
pub fn write(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    records: Vec<Option<Part>>,
) -> anyhow::Result<Vec<Part>> {
    anyhow::ensure!(
        (VERSIONS.0..=VERSIONS.1).contains(&version),
        "Fetch v{version} is not written here"
    );
    let partitions: usize = response.responses.iter().map(|t| t.partitions.len()).sum();
    anyhow::ensure!(
        partitions == records.len(),
        "{partitions} partitions but {} records",
        records.len()
    );
    let flexible = version >= 12;
    let null_len = if flexible { 1 } else { 4 };
    let header_len = 4 + usize::from(flexible);
    let mut size = header_len + response.compute_size(version)?;
    for r in &records {
        size = size - null_len + records_len(r, flexible);
    }
    let size = i32::try_from(size).map_err(|_| anyhow::anyhow!("response larger than 2 GiB"))?;

    let mut w = Writer {
        buf: BytesMut::with_capacity(256),
        parts: Vec::with_capacity(records.len() + 2),
        version,
    };
    w.buf.put_i32(size);
    w.buf.put_i32(correlation_id);
    if flexible {
        w.buf.put_u8(0); // response header v1: no tagged fields
    }
    let mut records = records.into_iter();
    w.response(response, &mut records)?;
    Ok(w.finish())
}

/// The bytes a records field takes: its length prefix and its contents.
fn records_len(r: &Option<Part>, flexible: bool) -> usize {
    match r {
        None if flexible => 1,
        None => 4,
        Some(p) if flexible => varint_len(p.wire_len() as u64 + 1) + p.wire_len(),
        Some(p) => 4 + p.wire_len(),
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

struct Writer {
    buf: BytesMut,
    parts: Vec<Part>,
    version: i16,
}

impl Writer {
    fn flexible(&self) -> bool {
        self.version >= 12
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    fn array_len(&mut self, n: usize) {
        if self.flexible() {
            self.varint(n as u64 + 1)
        } else {
            self.buf.put_i32(n as i32)
        }
    }

    /// A struct the codec encodes, at this response's version.
    fn put<T: Encodable>(&mut self, value: &T) -> anyhow::Result<()> {
        value.encode(&mut self.buf, self.version)
    }

    /// A (nullable, for `None`) array of structs the codec encodes.
    fn put_array<T: Encodable>(&mut self, items: Option<&[T]>) -> anyhow::Result<()> {
        match items {
            None if self.flexible() => self.varint(0),
            None => self.buf.put_i32(-1),
            Some(items) => {
                self.array_len(items.len());
                for item in items {
                    self.put(item)?;
                }
            }
        }
        Ok(())
    }

    /// No tagged fields but those strom writes: an empty set, or fail if a struct has some.
    fn no_tags(&mut self, unknown: usize) -> anyhow::Result<()> {
        anyhow::ensure!(unknown == 0, "unknown tagged fields are not written");
        if self.flexible() {
            self.varint(0);
        }
        Ok(())
    }

    fn response(
        &mut self,
        r: &FetchResponse,
        records: &mut impl Iterator<Item = Option<Part>>,
    ) -> anyhow::Result<()> {
        let v = self.version;
        self.buf.put_i32(r.throttle_time_ms);
        if v >= 7 {
            self.buf.put_i16(r.error_code);
            self.buf.put_i32(r.session_id);
        }
        self.array_len(r.responses.len());
        for t in &r.responses {
            self.topic(t, records)?;
        }
        if self.flexible() {
            anyhow::ensure!(r.unknown_tagged_fields.is_empty(), "unknown tagged fields");
            let endpoints = v >= 16 && !r.node_endpoints.is_empty();
            self.varint(u64::from(endpoints));
            if endpoints {
                let mut len = varint_len(r.node_endpoints.len() as u64 + 1);
                for e in &r.node_endpoints {
                    len += e.compute_size(v)?;
                }
                self.varint(0);
                self.varint(len as u64);
                self.put_array(Some(&r.node_endpoints))?;
            }
        }
        Ok(())
    }

    fn topic(
        &mut self,
        t: &FetchableTopicResponse,
        records: &mut impl Iterator<Item = Option<Part>>,
    ) -> anyhow::Result<()> {
        let v = self.version;
        let name = t.topic.0.as_bytes();
        if v == 12 {
            self.varint(name.len() as u64 + 1);
            self.buf.put_slice(name);
        } else if v < 12 {
            self.buf.put_i16(i16::try_from(name.len())?);
            self.buf.put_slice(name);
        } else {
            self.buf.put_slice(t.topic_id.as_bytes());
        }
        self.array_len(t.partitions.len());
        for p in &t.partitions {
            let r = records.next().flatten();
            self.partition(p, r)?;
        }
        self.no_tags(t.unknown_tagged_fields.len())
    }

    fn partition(&mut self, p: &PartitionData, records: Option<Part>) -> anyhow::Result<()> {
        let v = self.version;
        anyhow::ensure!(
            p.records.as_ref().is_none_or(|r| r.is_empty()),
            "records are passed beside the response"
        );
        self.buf.put_i32(p.partition_index);
        self.buf.put_i16(p.error_code);
        self.buf.put_i64(p.high_watermark);
        self.buf.put_i64(p.last_stable_offset);
        if v >= 5 {
            self.buf.put_i64(p.log_start_offset);
        }
        self.put_array(p.aborted_transactions.as_deref())?;
        if v >= 11 {
            self.buf.put_i32(p.preferred_read_replica.0);
        }
        self.records(records)?;
        if self.flexible() {
            anyhow::ensure!(p.unknown_tagged_fields.is_empty(), "unknown tagged fields");
            let diverging = p.diverging_epoch != Default::default();
            let leader = p.current_leader != Default::default();
            let snapshot = p.snapshot_id != Default::default();
            let count = [diverging, leader, snapshot].iter().filter(|b| **b).count();
            self.varint(count as u64);
            if diverging {
                self.tagged(0, &p.diverging_epoch)?;
            }
            if leader {
                self.tagged(1, &p.current_leader)?;
            }
            if snapshot {
                self.tagged(2, &p.snapshot_id)?;
            }
        }
        Ok(())
    }

    fn tagged<T: Encodable>(&mut self, tag: u64, value: &T) -> anyhow::Result<()> {
        let len = value.compute_size(self.version)?;
        self.varint(tag);
        self.varint(len as u64);
        self.put(value)
    }

    /// A records field: its length, then the records as their own part (never copied here).
    fn records(&mut self, records: Option<Part>) -> anyhow::Result<()> {
        let flexible = self.flexible();
        match records {
            None if flexible => self.varint(0),
            None => self.buf.put_i32(-1),
            Some(part) => {
                let len = part.wire_len();
                if flexible {
                    self.varint(len as u64 + 1);
                } else {
                    self.buf.put_i32(i32::try_from(len)?);
                }
                if len > 0 {
                    let head = self.buf.split().freeze();
                    self.parts.push(Part::Bytes(head));
                    self.parts.push(part);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<Part> {
        if !self.buf.is_empty() {
            let tail: Bytes = self.buf.split().freeze();
            self.parts.push(Part::Bytes(tail));
        }
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, LeaderIdAndEpoch, NodeEndpoint, SnapshotId,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn bytes_of(parts: &[Part]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::File { file, offset, len } => {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0; *len];
                    file.read_exact_at(&mut buf, *offset).unwrap();
                    out.extend_from_slice(&buf);
                }
            }
        }
        out
    }

    /// A response with every kind of partition strom answers with, at `version`.
    fn sample(
        version: i16,
        file: &std::sync::Arc<std::fs::File>,
    ) -> (FetchResponse, Vec<Option<Part>>) {
        let flexible = version >= 12;
        let mut records = Vec::new();
        let mut topics = Vec::new();
        for t in 0..3u8 {
            let mut partitions = Vec::new();
            for i in 0..4i32 {
                let mut p = PartitionData::default()
                    .with_partition_index(i)
                    .with_high_watermark(1000 + i as i64)
                    .with_last_stable_offset(900)
                    .with_log_start_offset(if version >= 5 { 7 } else { -1 });
                let r = match (t as i32 + i) % 5 {
                    0 => None,
                    1 => Some(Part::Bytes(Bytes::new())),
                    2 => Some(Part::Bytes(Bytes::from(vec![t; 300 + i as usize]))),
                    3 => Some(Part::File {
                        file: file.clone(),
                        offset: 10 * i as u64,
                        len: 200 + i as usize,
                    }),
                    _ => Some(Part::Bytes(Bytes::from(vec![9; 70]))),
                };
                if r.is_none() {
                    p = p.with_error_code(6);
                    if flexible {
                        p = p
                            .with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(2))
                                    .with_leader_epoch(4),
                            )
                            .with_diverging_epoch(
                                EpochEndOffset::default().with_epoch(3).with_end_offset(55),
                            )
                            .with_snapshot_id(
                                SnapshotId::default().with_epoch(1).with_end_offset(2),
                            );
                    }
                }
                if i == 2 {
                    p = p.with_aborted_transactions(Some(vec![AbortedTransaction::default()
                        .with_producer_id(kafka_protocol::messages::ProducerId(5))
                        .with_first_offset(6)]));
                }
                if version >= 11 && i == 3 {
                    p = p.with_preferred_read_replica(BrokerId(1));
                }
                partitions.push(p);
                records.push(r);
            }
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version <= 12 {
                topic = topic.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))));
            } else {
                topic = topic.with_topic_id(uuid::Uuid::from_u128(t as u128 + 1));
            }
            topics.push(topic);
        }
        let mut resp = FetchResponse::default()
            .with_throttle_time_ms(3)
            .with_responses(topics);
        if version >= 7 {
            resp = resp.with_error_code(0).with_session_id(0);
        }
        if version >= 16 {
            resp = resp.with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9192)
                .with_rack(Some(StrBytes::from_static_str("r1")))]);
        }
        (resp, records)
    }

    #[test]
    fn every_version_matches_the_codec_byte_for_byte() {
        let path = std::env::temp_dir().join(format!("strom-fetch-write-{}", std::process::id()));
        std::fs::write(
            &path,
            (0..1024u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        for version in VERSIONS.0..=VERSIONS.1 {
            let (resp, records) = sample(version, &file);
            // What the codec writes with the records inside the response.
            let mut whole = resp.clone();
            let mut it = records.iter();
            for t in &mut whole.responses {
                for p in &mut t.partitions {
                    p.records = it
                        .next()
                        .unwrap()
                        .as_ref()
                        .map(|r| Bytes::from(bytes_of(std::slice::from_ref(r))));
                }
            }
            let expected =
                crate::protocol::encode_response(ApiKey::Fetch, version, 77, &whole).unwrap();
            let parts = write(version, 77, &resp, records).unwrap();
            assert_eq!(bytes_of(&parts), expected.to_vec(), "Fetch v{version}");
            // Records are parts of their own, not copied: files stay files.
            assert!(parts.iter().any(|p| matches!(p, Part::File { .. })));
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_mismatch_between_partitions_and_records_is_refused() {
        let resp =
            FetchResponse::default()
                .with_responses(vec![FetchableTopicResponse::default()
                    .with_partitions(vec![PartitionData::default()])]);
        assert!(write(12, 1, &resp, vec![]).is_err());
        assert!(write(3, 1, &resp, vec![None]).is_err());
        assert!(write(12, 1, &resp, vec![None]).is_ok());
    }
}
