//! Fetch for consumers: whole batches up to the high watermark, bounded by the request's
//! max_bytes and each partition's max_bytes, with the first batch of the first non-empty
//! partition returned whole even when larger (KIP-74). With fewer than min_bytes available the
//! request waits on the partitions' high watermarks until enough arrives or max_wait_ms ends.
//! Fetch sessions are not kept: every answer carries session id 0 (a full, sessionless fetch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{broker, errors, Context};
use crate::replica::{Partition, PartitionError};
use crate::types::{TopicId, TopicPartition};

/// Why a partition cannot be read here: the error code and, for NOT_LEADER, (leader, epoch).
type Refused = (i16, Option<(i32, i32)>);

/// A requested partition, resolved once per request.
struct Slot {
    topic: usize,
    index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    partition: Result<Arc<Partition>, Refused>,
}

pub async fn handle(ctx: &Context, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default().with_error_code(E::FetchSessionIdNotFound.code());
    }
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
                    }),
            };
            slots.push(Slot {
                topic: ti,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                partition,
            });
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
            .filter_map(|s| s.partition.as_ref().ok().map(|p| p.watch_hw()))
            .collect();
        let (datas, total, any_error) = read_all(&slots, max_bytes);
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || watchers.is_empty() {
            let mut topics = topics;
            for (slot, data) in slots.iter().zip(datas) {
                topics[slot.topic].partitions.push(data);
            }
            return FetchResponse::default().with_responses(topics);
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let _ = tokio::time::timeout(deadline - now, changed).await;
    }
}

fn read_all(slots: &[Slot], max_bytes: usize) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
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
        let log_start = p.log.log_start_offset();
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
        let remaining = max_bytes.saturating_sub(total);
        let limit = slot.max_bytes.min(remaining);
        if limit == 0 && total > 0 {
            out.push(data.with_records(Some(bytes::Bytes::new())));
            continue;
        }
        match p.log.read(slot.fetch_offset, limit, hw, total == 0) {
            Ok(records) => {
                total += records.len();
                out.push(data.with_records(Some(records)));
            }
            Err(e) => {
                any_error = true;
                out.push(data.with_error_code(errors::log(&e)));
            }
        }
    }
    (out, total, any_error)
}
