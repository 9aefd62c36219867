//! The leader's side of Fetch, for consumers and for followers.
//!
//! Consumers read whole batches up to the high watermark; followers (a replica id >= 0) read up
//! to the log end, and their fetch offset tells the leader how far they have come (which moves
//! the high watermark and may add them to the ISR). Both are bounded by the request's max_bytes
//! and each partition's max_bytes, with the first batch of the first non-empty partition whole
//! even when larger (KIP-74). With fewer than min_bytes available the fetch waits in the
//! purgatory until enough arrives, a partition changes leadership, or max_wait ends. A follower
//! whose last fetched epoch ends earlier on the leader is told the diverging epoch instead of
//! data.
//!
//! A consumer's records are a byte range of a segment (`PartitionLog::region`, sliced as Kafka
//! does): with `zero_copy` the range is not read at all — the connection's writer sends it from
//! the file with sendfile — otherwise it is read into memory. Followers get whole batches up to
//! the log end, always read into memory (a follower-visible tail may still be truncated by a
//! leader change; below the high watermark nothing ever is).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::delayed::{Upto, Watched};
use super::throttle::Quota;
use super::{check_leader_epoch, EpochError, Partition, PartitionError, ReplicaManager};
use crate::metadata::MetadataImage;
use crate::protocol::Part;
use crate::storage::{LogError, Window};
use crate::types::{NodeId, Offset, TopicPartition};

/// A fetch as the manager sees it, decoded from any Fetch version.
pub struct FetchParams {
    /// The fetching follower's id; None for a consumer.
    pub follower: Option<NodeId>,
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
    /// Leave consumers' records in their files (sendfile) rather than reading them.
    pub zero_copy: bool,
    /// A consumer's `isolation_level=read_committed`: records stop at the last stable offset
    /// and the answer lists the aborted transactions among them.
    pub read_committed: bool,
    pub partitions: Vec<FetchPartition>,
}

pub struct FetchPartition {
    /// None: the request named the topic by an id no topic has.
    pub tp: Option<TopicPartition>,
    pub fetch_offset: Offset,
    /// The fetcher's log start (followers report theirs; -1 before v5).
    pub log_start_offset: Offset,
    pub max_bytes: usize,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

/// Why a partition was not read.
#[derive(Debug)]
pub enum FetchError {
    Refused(Refused),
    Log(LogError),
}

/// Why a partition cannot be read here at all.
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    UnknownTopicId,
    Partition(PartitionError),
    /// A follower fetched a partition it is not a replica of.
    NotAReplica,
    Epoch(EpochError),
}

/// One partition's answer, in request order.
pub struct PartitionRead {
    pub error: Option<FetchError>,
    /// (high watermark, last stable offset, log start), once the partition was found here.
    pub watermarks: Option<(Offset, Offset, Offset)>,
    /// For `read_committed`: the aborted transactions the records may hold, as (producer id,
    /// first offset).
    pub aborted: Option<Vec<(i64, Offset)>>,
    /// The follower's log diverges: (the largest epoch the leader has at or below the
    /// follower's last one, the offset where it ends).
    pub diverging: Option<(i32, Offset)>,
    /// The records: None when there was an error or a divergence; an empty `Part::Bytes` when
    /// there was nothing to read.
    pub records: Option<Part>,
}

pub struct Fetched {
    pub partitions: Vec<PartitionRead>,
    /// Leaders named in NOT_LEADER answers, whose endpoints the response carries (KIP-951).
    pub moved_leaders: Vec<NodeId>,
}

/// A requested partition, resolved once per fetch.
struct Slot<'a> {
    req: &'a FetchPartition,
    partition: Result<Arc<Partition>, Refused>,
}

impl ReplicaManager {
    /// Serves a fetch: records follower progress, reads, and waits in the purgatory while
    /// fewer than `min_bytes` are available.
    pub async fn fetch(&self, image: &Arc<MetadataImage>, params: FetchParams) -> Fetched {
        let slots: Vec<Slot> = params
            .partitions
            .iter()
            .map(|req| Slot {
                req,
                partition: self.fetch_partition(image, req, params.follower),
            })
            .collect();

        // A follower's fetch offset is its log end: record it before reading (it moves the HW).
        if let Some(f) = params.follower {
            for slot in &slots {
                let Ok(p) = &slot.partition else { continue };
                if check_leader_epoch(slot.req.current_leader_epoch, p.leader_epoch()).is_err() {
                    continue;
                }
                if let Some(change) =
                    p.follower_fetched(f, slot.req.fetch_offset, slot.req.log_start_offset)
                {
                    self.request_isr_change(p.clone(), change);
                }
            }
        }

        let deadline = Instant::now() + params.max_wait;
        let mut waited = false;
        loop {
            let (reads, total) = read_all(&slots, &params, &self.throttles.leader, &self.counters);
            let failed = reads
                .iter()
                .any(|r| r.error.is_some() || r.diverging.is_some());
            let resolved = slots.iter().any(|s| s.partition.is_ok());
            let late = Instant::now() >= deadline;
            if waited || late || total >= params.min_bytes || failed || !resolved {
                let moved_leaders = reads
                    .iter()
                    .filter_map(|r| match r.error {
                        Some(FetchError::Refused(Refused::Partition(
                            PartitionError::NotLeader { leader, .. },
                        ))) if leader >= 0 => Some(leader),
                        _ => None,
                    })
                    .collect();
                return Fetched {
                    partitions: reads,
                    moved_leaders,
                };
            }
            // Throttled replicas of a spent quota do not wake the wait: more data for them
            // would be left out again.
            let held_back = params.follower.is_some() && self.throttles.leader.exceeded();
            let watched = slots
                .iter()
                .filter_map(|s| {
                    let p = s.partition.as_ref().ok()?;
                    if held_back && params.follower.is_some_and(|f| p.throttled_for(true, f)) {
                        return None;
                    }
                    Some(Watched {
                        partition: p.clone(),
                        fetch_offset: s.req.fetch_offset,
                        max_bytes: s.req.max_bytes,
                        epoch: p.leader_epoch(),
                    })
                })
                .collect();
            let upto = if params.follower.is_some() {
                Upto::LogEnd
            } else if params.read_committed {
                Upto::LastStable
            } else {
                Upto::HighWatermark
            };
            self.waits
                .fetch(watched, upto, params.min_bytes, deadline)
                .await;
            // Completed (enough data, leadership moved, or the deadline): read once more.
            waited = true;
        }
    }

    fn fetch_partition(
        &self,
        image: &Arc<MetadataImage>,
        req: &FetchPartition,
        follower: Option<NodeId>,
    ) -> Result<Arc<Partition>, Refused> {
        let tp = req.tp.as_ref().ok_or(Refused::UnknownTopicId)?;
        let p = self
            .leader_partition(image, tp)
            .map_err(Refused::Partition)?;
        match follower {
            Some(f) if !p.is_replica(f) => Err(Refused::NotAReplica),
            _ => Ok(p),
        }
    }
}

/// Reads every slot: what each returns and the bytes in total. A follower's throttled replicas
/// get nothing while the leader's `quota` is spent, and count against it otherwise.
fn read_all(
    slots: &[Slot],
    params: &FetchParams,
    quota: &Quota,
    counters: &super::Counters,
) -> (Vec<PartitionRead>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let mut read = PartitionRead {
            error: None,
            watermarks: None,
            aborted: None,
            diverging: None,
            records: None,
        };
        let p = match &slot.partition {
            Ok(p) => p,
            Err(e) => {
                read.error = Some(FetchError::Refused(*e));
                out.push(read);
                continue;
            }
        };
        let req = slot.req;
        // Leadership may have moved (or the replica left this broker) while the fetch waited:
        // answer NOT_LEADER, never an offset error from a log that is going away — a consumer
        // told OFFSET_OUT_OF_RANGE resets its position and skips records.
        let (leader, epoch) = p.leader();
        if leader != p.me() {
            read.error = Some(FetchError::Refused(Refused::Partition(
                PartitionError::NotLeader { leader, epoch },
            )));
            out.push(read);
            continue;
        }
        let hw = p.high_watermark();
        let lso = p.last_stable_offset().min(hw);
        read.watermarks = Some((hw, lso, p.log_start_offset()));
        // How far a consumer may read.
        let visible = if params.read_committed { lso } else { hw };
        if let Err(e) = check_leader_epoch(req.current_leader_epoch, epoch) {
            read.error = Some(FetchError::Refused(Refused::Epoch(e)));
            out.push(read);
            continue;
        }
        if params.follower.is_some() && req.last_fetched_epoch >= 0 {
            let (epoch, end) = p.end_offset_for_epoch(req.last_fetched_epoch);
            if epoch != req.last_fetched_epoch || end < req.fetch_offset {
                read.diverging = Some((epoch, end));
                out.push(read);
                continue;
            }
        }
        let remaining = params.max_bytes.saturating_sub(total);
        let limit = req.max_bytes.min(remaining);
        let throttled = params.follower.is_some_and(|f| p.throttled_for(true, f));
        if (limit == 0 && total > 0) || (throttled && quota.exceeded()) {
            read.records = Some(Part::Bytes(bytes::Bytes::new()));
            out.push(read);
            continue;
        }
        // What the partition returns: nothing, a file range (zero-copy) or records read. A
        // follower at the log end (most of them, most of the time) needs no look at the log.
        let got = if params.follower.is_some() && req.fetch_offset == p.log_end_offset() {
            Ok(None)
        } else if params.follower.is_some() {
            p.read(req.fetch_offset, Window::new(limit, i64::MAX, total == 0))
                .map(|b| (!b.is_empty()).then_some(Part::Bytes(b)))
        } else {
            if params.read_committed {
                read.aborted = Some(p.aborted_between(req.fetch_offset, visible));
            }
            match p.region(req.fetch_offset, Window::new(limit, visible, total == 0)) {
                Ok(None) => Ok(None),
                Ok(Some(r)) if params.zero_copy => Ok(Some(Part::File {
                    file: r.file,
                    offset: r.offset,
                    len: r.len,
                })),
                Ok(Some(r)) => r
                    .read()
                    .map(|b| Some(Part::Bytes(b)))
                    .map_err(LogError::from),
                Err(e) => Err(e),
            }
        };
        match got {
            Ok(None) => read.records = Some(Part::Bytes(bytes::Bytes::new())),
            Ok(Some(part)) => {
                total += part.wire_len();
                if params.follower.is_none() {
                    use std::sync::atomic::Ordering::Relaxed;
                    let n = part.wire_len() as u64;
                    p.traffic.bytes_out.fetch_add(n, Relaxed);
                    match part {
                        Part::File { .. } => counters.fetch_zero_copy_bytes.fetch_add(n, Relaxed),
                        _ => counters.fetch_copied_bytes.fetch_add(n, Relaxed),
                    };
                } else if throttled {
                    quota.record(part.wire_len());
                }
                read.records = Some(part);
            }
            Err(e) => read.error = Some(FetchError::Log(e)),
        }
        out.push(read);
    }
    (out, total)
}
