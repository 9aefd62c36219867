//! `strom produce TOPIC` and `strom consume TOPIC`: records in and out from the command line,
//! as kcat or rpk do, over the Kafka protocol to each partition's leader.
//!
//! Produce reads stdin lines (`--key-separator` splits key from value), places them with
//! Kafka's default partitioner (murmur2 of the key; keyless lines round-robin) unless
//! `--partition` says, and sends one batch per partition per 1,000 lines. Consume reads every
//! partition — or, with `-g`, joins the group (`member.rs`) and reads the partitions it is
//! assigned, committing where it stopped — from `--offset`, the group's committed offsets,
//! the beginning (`--from-beginning`) or the end, prints each record with a format string or
//! as JSON, and stops after `-n` records or, with `--exit-at-end`, at the end of every
//! partition it reads.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::group::{commit_with, committed, coordinator, layout, offsets_at, Layout};
use super::member::Member;
use super::Client;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Kafka's default partitioner for a keyed record: murmur2 of the key, made positive, modulo
/// the partition count (so records land where Kafka's clients would put them).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) as i32 % partitions.max(1)
}

/// MurmurHash2, 32-bit, with the seed Kafka's clients use.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// What `strom produce` was asked.
pub struct ProduceOptions {
    pub topic: String,
    pub key_separator: Option<String>,
    /// `name=value` headers on every record.
    pub headers: Vec<String>,
    pub partition: Option<i32>,
    pub acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
}

fn compression(name: &str) -> anyhow::Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => anyhow::bail!("unknown compression `{other}`: none, gzip, snappy, lz4 or zstd"),
    })
}

/// One line as a record: (key, value).
fn split_line(line: &str, separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    match separator.and_then(|sep| line.split_once(sep)) {
        Some((k, v)) => (
            Some(Bytes::copy_from_slice(k.as_bytes())),
            Bytes::copy_from_slice(v.as_bytes()),
        ),
        None => (None, Bytes::copy_from_slice(line.as_bytes())),
    }
}

/// `strom produce`: every line of `input` as a record. Returns a summary.
pub fn produce(bootstrap: &str, o: &ProduceOptions, input: impl BufRead) -> anyhow::Result<String> {
    let codec = compression(&o.compression)?;
    let headers: Vec<(StrBytes, Option<Bytes>)> = o
        .headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (s(k), Some(Bytes::copy_from_slice(v.as_bytes()))))
                .ok_or_else(|| anyhow::anyhow!("header `{h}` is not name=value"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut c = Client::connect(bootstrap)?;
    let mut lay = layout(&mut c, Some(std::slice::from_ref(&o.topic)))?;
    let partitions = lay.leaders.keys().filter(|(t, _)| *t == o.topic).count() as i32;
    anyhow::ensure!(partitions > 0, "no topic {}", o.topic);
    if let Some(p) = o.partition {
        anyhow::ensure!(
            (0..partitions).contains(&p),
            "{} has no partition {p}",
            o.topic
        );
    }
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let (mut sent, mut next) = (0usize, 0i32);
    let mut lines = input.lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(line) = &line {
            let (key, value) = split_line(line, o.key_separator.as_deref());
            let partition = match (o.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => {
                    next = (next + 1) % partitions;
                    next
                }
            };
            let records = pending.entry(partition).or_default();
            let mut r = record(records.len(), key, Some(value));
            for (k, v) in &headers {
                r.headers.insert(k.clone(), v.clone());
            }
            records.push(r);
        }
        let queued: usize = pending.values().map(Vec::len).sum();
        if queued >= 1000 || (line.is_none() && queued > 0) {
            send(&mut lay, o, codec, &mut pending)?;
            sent += queued;
        }
        if line.is_none() {
            break;
        }
    }
    Ok(format!("produced {sent} records to {}\n", o.topic))
}

fn record(index: usize, key: Option<Bytes>, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        // Keeps the encoder's base sequence at -1 (no producer id).
        sequence: index as i32 - 1,
        timestamp: crate::types::now_ms(),
        key,
        value,
        headers: Default::default(),
        delete_horizon: false,
    }
}

/// Sends every pending batch to its partition's leader, asking for metadata again (a few
/// times) when a leader moved.
fn send(
    lay: &mut Layout,
    o: &ProduceOptions,
    codec: Compression,
    pending: &mut BTreeMap<i32, Vec<Record>>,
) -> anyhow::Result<()> {
    for attempt in 0.. {
        let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes)>> = BTreeMap::new();
        for (p, records) in pending.iter() {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )?;
            let leader = lay
                .leaders
                .get(&(o.topic.clone(), *p))
                .copied()
                .unwrap_or(-1);
            by_leader
                .entry(leader)
                .or_default()
                .push((*p, buf.freeze()));
        }
        let mut retry = false;
        for (leader, batches) in by_leader {
            let Some(addr) = lay.brokers.get(&leader) else {
                retry = true;
                continue;
            };
            let req = ProduceRequest::default()
                .with_acks(o.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s(&o.topic)))
                    .with_partition_data(
                        batches
                            .into_iter()
                            .map(|(p, b)| {
                                PartitionProduceData::default()
                                    .with_index(p)
                                    .with_records(Some(b))
                            })
                            .collect(),
                    )]);
            let mut leader_conn = Client::connect(addr)?;
            if o.acks == 0 {
                leader_conn.send_only(ApiKey::Produce, 9, &req)?;
                let sent: Vec<i32> = pending.keys().copied().collect();
                for p in sent {
                    if lay.leaders.get(&(o.topic.clone(), p)) == Some(&leader) {
                        pending.remove(&p);
                    }
                }
                continue;
            }
            let r: ProduceResponse = leader_conn.call(ApiKey::Produce, 9, &req)?;
            for t in r.responses {
                for p in t.partition_responses {
                    match p.error_code {
                        0 => {
                            pending.remove(&p.index);
                        }
                        // NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS:
                        // worth another try after fresh metadata.
                        6 | 5 | 19 | 20 => retry = true,
                        code => anyhow::bail!(
                            "produce to {}-{}: {}",
                            o.topic,
                            p.index,
                            super::topic::error_name(code, p.error_message.as_ref())
                        ),
                    }
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            retry && attempt < 20,
            "could not produce to {:?} of {}",
            pending.keys().collect::<Vec<_>>(),
            o.topic
        );
        std::thread::sleep(Duration::from_millis(250));
        let addr = lay.brokers.values().next().cloned().unwrap_or_default();
        *lay = layout(
            &mut Client::connect(&addr)?,
            Some(std::slice::from_ref(&o.topic)),
        )?;
    }
    Ok(())
}

/// What `strom consume` was asked.
pub struct ConsumeOptions {
    pub topic: String,
    pub group: Option<String>,
    pub from_beginning: bool,
    pub offset: Option<i64>,
    /// Stop after this many records.
    pub count: Option<usize>,
    /// Stop once every partition's end (as of the start) is read.
    pub exit_at_end: bool,
    /// `%k` key, `%v` value, `%p` partition, `%o` offset, `%t` timestamp, `%h` headers
    /// (`name=value` comma-separated), `\n` and `\t`.
    pub format: String,
    pub json: bool,
}

/// `strom consume`: writes records to `out` until told to stop; returns a summary.
pub fn consume(bootstrap: &str, o: &ConsumeOptions, out: &mut dyn Write) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let mut lay = layout(&mut c, Some(std::slice::from_ref(&o.topic)))?;
    let tps: Vec<(String, i32)> = lay
        .leaders
        .keys()
        .filter(|(t, _)| *t == o.topic)
        .cloned()
        .collect();
    anyhow::ensure!(!tps.is_empty(), "no topic {}", o.topic);
    let ends = offsets_at(&lay, &tps, -1)?;
    let all: Vec<i32> = tps.iter().map(|(_, p)| *p).collect();
    // With a group: join it, and read only the partitions it assigns this member.
    let mut member = match &o.group {
        Some(g) => {
            let (m, mine) = Member::join(coordinator(&mut c, g)?, g, &o.topic, &all)?;
            Some((m, mine))
        }
        None => None,
    };
    let mut positions = match &mut member {
        Some((m, mine)) => start_positions(&lay, o, mine, Some(&mut m.coord))?,
        None => start_positions(&lay, o, &all, None)?,
    };
    let mut member = member.map(|(m, _)| m);
    let mut read = 0usize;
    let done = |read: usize, positions: &BTreeMap<i32, i64>| {
        o.count.is_some_and(|n| read >= n)
            || (o.exit_at_end
                && positions
                    .iter()
                    .all(|(p, at)| *at >= ends.get(&(o.topic.clone(), *p)).copied().unwrap_or(0)))
    };
    let mut idle_since = Instant::now();
    while !done(read, &positions) {
        if let Some(m) = member.as_mut() {
            if m.heartbeat_if_due()? {
                // A rebalance: commit what was read (refused if the generation already
                // moved on), rejoin, and go on from the group's offsets.
                let _ = commit_as(m, &o.topic, &positions);
                let mine = m.rejoin(&o.topic, &all)?;
                positions = start_positions(&lay, o, &mine, Some(&mut m.coord))?;
                continue;
            }
        }
        let mut got_any = false;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in positions.keys() {
            let leader = lay
                .leaders
                .get(&(o.topic.clone(), *p))
                .copied()
                .unwrap_or(-1);
            by_leader.entry(leader).or_default().push(*p);
        }
        let mut refresh = false;
        for (leader, parts) in by_leader {
            let Some(addr) = lay.brokers.get(&leader) else {
                refresh = true;
                continue;
            };
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(16 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(s(&o.topic)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(positions[p])
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]);
            let r: FetchResponse = Client::connect(addr)?.call(ApiKey::Fetch, 12, &req)?;
            for t in r.responses {
                for p in t.partitions {
                    match p.error_code {
                        0 => {}
                        6 | 5 => {
                            refresh = true;
                            continue;
                        }
                        code => anyhow::bail!(
                            "fetch {}-{}: {}",
                            o.topic,
                            p.partition_index,
                            super::topic::error_name(code, None)
                        ),
                    }
                    let mut bytes = p.records.unwrap_or_default();
                    while !bytes.is_empty() {
                        // A batch cut at the fetch size ends the response's useful part.
                        let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
                            break;
                        };
                        for r in set.records {
                            let at = positions.get(&p.partition_index).copied().unwrap_or(0);
                            if r.offset < at {
                                continue;
                            }
                            // Past -n: the position stays at the first record not shown, so
                            // the group's commit covers exactly what was printed.
                            if o.count.is_some_and(|n| read >= n) {
                                break;
                            }
                            positions.insert(p.partition_index, r.offset + 1);
                            if r.control {
                                continue;
                            }
                            print_record(out, o, p.partition_index, &r)?;
                            read += 1;
                            got_any = true;
                        }
                    }
                }
            }
        }
        if got_any {
            idle_since = Instant::now();
        }
        if refresh || idle_since.elapsed() > Duration::from_secs(5) {
            idle_since = Instant::now();
            lay = layout(&mut c, Some(std::slice::from_ref(&o.topic)))?;
        }
    }
    out.flush()?;
    if let Some(mut m) = member {
        commit_as(&mut m, &o.topic, &positions)?;
        m.leave()?;
    }
    Ok(format!("consumed {read} records from {}\n", o.topic))
}

/// Where reading starts for `parts`: `--offset`, else the group's committed offsets (asked of
/// `coord`), else the beginning (`--from-beginning`) or the end.
fn start_positions(
    lay: &Layout,
    o: &ConsumeOptions,
    parts: &[i32],
    coord: Option<&mut Client>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    if let Some(n) = o.offset {
        return Ok(parts.iter().map(|p| (*p, n)).collect());
    }
    let tps: Vec<(String, i32)> = parts.iter().map(|p| (o.topic.clone(), *p)).collect();
    if tps.is_empty() {
        return Ok(BTreeMap::new());
    }
    let committed = match (coord, &o.group) {
        (Some(coord), Some(g)) => committed(coord, g)?,
        _ => BTreeMap::new(),
    };
    let fallback = offsets_at(lay, &tps, if o.from_beginning { -2 } else { -1 })?;
    Ok(tps
        .iter()
        .map(|tp| {
            (
                tp.1,
                committed.get(tp).or(fallback.get(tp)).copied().unwrap_or(0),
            )
        })
        .collect())
}

/// Commits `positions` as `m`, with its generation.
fn commit_as(m: &mut Member, topic: &str, positions: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
    let offsets: BTreeMap<(String, i32), i64> = positions
        .iter()
        .map(|(p, at)| ((topic.to_string(), *p), *at))
        .collect();
    let (group, member, generation) = (m.group.clone(), m.member_id.clone(), m.generation);
    commit_with(&mut m.coord, &group, generation, &member, topic, &offsets)
}

fn text(b: &Option<Bytes>) -> String {
    b.as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn print_record(
    out: &mut dyn Write,
    o: &ConsumeOptions,
    partition: i32,
    r: &Record,
) -> anyhow::Result<()> {
    if o.json {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(text(v))))
            .collect();
        let v = serde_json::json!({
            "topic": o.topic,
            "partition": partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
            "headers": headers,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let mut line = String::new();
    let mut chars = o.format.chars();
    while let Some(ch) = chars.next() {
        match (ch, ch == '%' || ch == '\\') {
            (_, false) => line.push(ch),
            ('%', true) => match chars.next() {
                Some('k') => line.push_str(&text(&r.key)),
                Some('v') => line.push_str(&text(&r.value)),
                Some('p') => line.push_str(&partition.to_string()),
                Some('o') => line.push_str(&r.offset.to_string()),
                Some('t') => line.push_str(&r.timestamp.to_string()),
                Some('h') => line.push_str(
                    &r.headers
                        .iter()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Some('%') => line.push('%'),
                Some(other) => {
                    line.push('%');
                    line.push(other);
                }
                None => line.push('%'),
            },
            (_, true) => match chars.next() {
                Some('n') => line.push('\n'),
                Some('t') => line.push('\t'),
                Some(other) => line.push(other),
                None => line.push('\\'),
            },
        }
    }
    out.write_all(line.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_kafkas_default_partitioner_puts_them() {
        // Kafka's own murmur2 test vectors (Utils.murmur2 of these strings).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
        for key in [&b"k1"[..], b"", b"a longer key"] {
            assert!((0..7).contains(&partition_for_key(key, 7)));
        }
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line("k:v:w", Some(":")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v:w"))
        );
        assert_eq!(
            split_line("kv", Some(":")),
            (None, Bytes::from_static(b"kv"))
        );
        assert_eq!(split_line("k:v", None), (None, Bytes::from_static(b"k:v")));
    }
}
