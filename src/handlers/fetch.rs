//! Fetch, for consumers and for followers.
//!
//! Consumers read whole batches up to the high watermark; followers (a replica id >= 0) read up
//! to the log end, and their fetch offset tells the leader how far they have come (which moves
//! the high watermark and may add them to the ISR). Both are bounded by the request's max_bytes
//! and each partition's max_bytes, with the first batch of the first non-empty partition whole
//! even when larger (KIP-74). With fewer than min_bytes available the request waits — on the
//! high watermark for consumers, on the log end for followers — until enough arrives or
//! max_wait_ms ends. A follower whose last fetched epoch ends earlier on the leader is told the
//! diverging epoch instead of data. Fetch sessions are not kept: every answer carries session
//! id 0 (a full, sessionless fetch).
//!
//! A consumer's records are a byte range of a segment (`PartitionLog::region`, sliced as Kafka
//! does). On listeners with `fetch.zero.copy.enable` the range is not read at all: the response
//! carries a placeholder, and the connection's writer sends the range from the file with
//! sendfile (`protocol::splice`). Otherwise the same range is read into memory. Followers get
//! whole batches up to the log end, always read into memory (a follower-visible tail may still
//! be truncated by a leader change; below the high watermark nothing ever is). Records read into
//! memory take a placeholder too, so they go to the socket from the buffer they were read into
//! rather than being copied into the encoded response first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{broker, errors, Context};
use crate::protocol::{marker, Part};
use crate::replica::{Partition, PartitionError};
use crate::types::{TopicId, TopicPartition};

/// Why a partition cannot be read here: the error code and, for NOT_LEADER, (leader, epoch).
type Refused = (i16, Option<(i32, i32)>);

/// A requested partition, resolved once per request.
struct Slot {
    topic: usize,
    index: i32,
    fetch_offset: i64,
    /// The fetcher's log start (followers report theirs; -1 before v5).
    log_start_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    partition: Result<Arc<Partition>, Refused>,
}

/// A fetch answer: the response, and the regions its placeholders stand for (file ranges to
/// send with sendfile, or records already read into memory).
pub struct Fetched {
    pub response: FetchResponse,
    pub nonce: [u8; 16],
    pub regions: Vec<Part>,
}

pub async fn handle(ctx: &Context, req: FetchRequest, version: i16) -> Fetched {
    let nonce = uuid::Uuid::new_v4().into_bytes();
    if req.session_id != 0 {
        return Fetched {
            response: FetchResponse::default().with_error_code(E::FetchSessionIdNotFound.code()),
            nonce,
            regions: Vec::new(),
        };
    }
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower = (replica >= 0).then_some(replica);
    let image = ctx.controller.image();
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut slots = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = if version >= 13 {
            image
                .topic_by_id(TopicId(t.topic_id))
                .map(|x| x.name.clone())
        } else {
            Some(t.topic.0.to_string())
        };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id),
        );
        for p in &t.partitions {
            let partition = match &name {
                None => Err((E::UnknownTopicId.code(), None)),
                Some(n) => ctx
                    .replicas
                    .leader_partition(&image, &TopicPartition::new(n.clone(), p.partition))
                    .map_err(|e| {
                        let leader = match e {
                            PartitionError::NotLeader { leader, epoch } => Some((leader, epoch)),
                            PartitionError::UnknownTopicOrPartition => None,
                        };
                        (errors::partition(&e), leader)
                    })
                    .and_then(|part| match follower {
                        Some(f) if !part.is_replica(f) => {
                            Err((E::NotLeaderOrFollower.code(), None))
                        }
                        _ => Ok(part),
                    }),
            };
            slots.push(Slot {
                topic: ti,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                log_start_offset: p.log_start_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
                partition,
            });
        }
    }

    // A follower's fetch offset is its log end: record it before reading (it moves the HW).
    if let Some(f) = follower {
        for slot in &slots {
            let Ok(p) = &slot.partition else { continue };
            if errors::leader_epoch(slot.current_leader_epoch, p.leader_epoch()) != errors::NONE {
                continue;
            }
            if let Some(change) = p.follower_fetched(f, slot.fetch_offset, slot.log_start_offset) {
                ctx.replicas.request_isr_change(p.clone(), change);
            }
        }
    }

    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Subscribe before reading so an append between the read and the wait is not missed.
        let mut watchers: Vec<_> = slots
            .iter()
            .filter_map(|s| s.partition.as_ref().ok())
            .map(|p| {
                if follower.is_some() {
                    p.watch_leo()
                } else {
                    p.watch_hw()
                }
            })
            .collect();
        let (datas, total, any_error, regions) = read_all(
            &slots,
            max_bytes,
            follower.is_some(),
            ctx.config.fetch_zero_copy,
            &nonce,
        );
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || watchers.is_empty() {
            let mut topics = topics;
            for (slot, data) in slots.iter().zip(datas) {
                topics[slot.topic].partitions.push(data);
            }
            let moved: Vec<i32> = slots
                .iter()
                .filter_map(|s| s.partition.as_ref().err().and_then(|(_, l)| l.map(|l| l.0)))
                .filter(|l| *l >= 0)
                .collect();
            let endpoints = super::leader_endpoints(ctx, &image, &moved)
                .into_iter()
                .map(|(id, host, port, rack)| {
                    NodeEndpoint::default()
                        .with_node_id(broker(id))
                        .with_host(super::s(host))
                        .with_port(port)
                        .with_rack(rack.map(super::s))
                })
                .collect();
            return Fetched {
                response: FetchResponse::default()
                    .with_responses(topics)
                    .with_node_endpoints(endpoints),
                nonce,
                regions,
            };
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let _ = tokio::time::timeout(deadline - now, changed).await;
    }
}

/// Reads every slot: partition data, bytes in total, whether any slot failed, and the regions
/// behind the placeholders (marked with the response's nonce): file ranges where `zero_copy`,
/// otherwise the records read.
fn read_all(
    slots: &[Slot],
    max_bytes: usize,
    follower: bool,
    zero_copy: bool,
    nonce: &[u8; 16],
) -> (Vec<PartitionData>, usize, bool, Vec<Part>) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut regions = Vec::new();
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let mut data = PartitionData::default().with_partition_index(slot.index);
        let p = match &slot.partition {
            Ok(p) => p,
            Err((code, leader)) => {
                any_error = true;
                if let Some((id, epoch)) = leader {
                    data = data.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(broker(*id))
                            .with_leader_epoch(*epoch),
                    );
                }
                out.push(data.with_error_code(*code));
                continue;
            }
        };
        let hw = p.high_watermark();
        let log_start = p.log_start_offset();
        data = data
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(log_start);
        let epoch_code = errors::leader_epoch(slot.current_leader_epoch, p.leader_epoch());
        if epoch_code != errors::NONE {
            any_error = true;
            out.push(data.with_error_code(epoch_code));
            continue;
        }
        if follower && slot.last_fetched_epoch >= 0 {
            let (epoch, end) = p.end_offset_for_epoch(slot.last_fetched_epoch);
            if epoch != slot.last_fetched_epoch || end < slot.fetch_offset {
                any_error = true;
                out.push(
                    data.with_diverging_epoch(
                        EpochEndOffset::default()
                            .with_epoch(epoch)
                            .with_end_offset(end),
                    ),
                );
                continue;
            }
        }
        let remaining = max_bytes.saturating_sub(total);
        let limit = slot.max_bytes.min(remaining);
        if limit == 0 && total > 0 {
            out.push(data.with_records(Some(bytes::Bytes::new())));
            continue;
        }
        // What the partition returns: nothing, a file range (zero-copy) or records read.
        let read = if follower {
            p.read(slot.fetch_offset, limit, i64::MAX, total == 0)
                .map(|b| (!b.is_empty()).then_some(Part::Bytes(b)))
        } else {
            match p.region(slot.fetch_offset, limit, hw, total == 0) {
                Ok(None) => Ok(None),
                Ok(Some(r)) if zero_copy => Ok(Some(Part::File {
                    file: r.file,
                    offset: r.offset,
                    len: r.len,
                })),
                Ok(Some(r)) => r
                    .read()
                    .map(|b| Some(Part::Bytes(b)))
                    .map_err(crate::replica::LogError::from),
                Err(e) => Err(e),
            }
        };
        match read {
            Ok(None) => out.push(data.with_records(Some(bytes::Bytes::new()))),
            Ok(Some(part)) => {
                total += part.wire_len();
                out.push(data.with_records(Some(marker(nonce, regions.len()))));
                regions.push(part);
            }
            Err(e) => {
                any_error = true;
                out.push(data.with_error_code(errors::log(&e)));
            }
        }
    }
    (out, total, any_error, regions)
}
