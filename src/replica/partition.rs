//! One hosted partition: its log, its view of leadership from the metadata image, and — on the
//! leader — each follower's progress, from which the high watermark and ISR changes follow.
//!
//! Owned by `ReplicaManager` as `Arc<Partition>`; connection tasks (produce, fetch), fetcher
//! tasks and the ISR task touch it. The state mutex is never held across I/O or an await.
//! The high watermark and log end are published on watch channels: acks=all producers wait on
//! the first, long-polling follower fetches on the second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use bytes::Bytes;

use crate::metadata::PartitionImage;
use crate::storage::batch::{self, BatchError, BatchHeader};
use crate::storage::producers::ActiveProducer;
use crate::storage::{Appended, FileRegion, LogError, PartitionLog};
use crate::types::{now_ms, LeaderEpoch, NodeId, Offset, TopicId, TopicPartition};

/// A follower's progress as the leader sees it.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The follower's log end: it has every offset below (-1: not heard from yet).
    leo: Offset,
    /// The follower's log start, as its fetches report it (-1: not heard from yet).
    log_start: Offset,
    /// The last time the follower had everything the leader had.
    caught_up: Instant,
}

#[derive(Debug)]
struct State {
    me: NodeId,
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    partition_epoch: i32,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    followers: HashMap<NodeId, Progress>,
    /// An AlterPartition is on its way to the controller; no second one until it lands.
    alter_in_flight: bool,
}

pub struct Partition {
    /// The only way to the log from outside `replica` is through the methods below, so every
    /// change to log end, log start and watermarks is published where waiters see it.
    pub(super) log: PartitionLog,
    state: Mutex<State>,
    hw: watch::Sender<Offset>,
    leo: watch::Sender<Offset>,
    /// The low watermark (`low_watermark`), published as followers report their log starts.
    lw: watch::Sender<Offset>,
    /// (leader, leader epoch), so waiters learn at once when this node stops leading.
    leadership: watch::Sender<(NodeId, LeaderEpoch)>,
}

/// What a leader append of a client's records did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub first: Offset,
    pub last: Offset,
    /// The leader epoch it was appended at (acks=all waits on it).
    pub epoch: LeaderEpoch,
    /// The broker's timestamp for a LogAppendTime topic, else -1.
    pub log_append_time: i64,
    pub log_start: Offset,
}

/// Why a client's records were not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("a produce request must carry exactly one record batch per partition")]
    NotOneBatch,
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the ISR has {isr} members, fewer than min.insync.replicas ({min})")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("a record timestamp is outside message.timestamp.before.max.ms / after.max.ms of the broker's clock")]
    Timestamp,
    #[error(transparent)]
    Log(#[from] LogError),
}

/// How a wait for the high watermark ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwWait {
    Reached,
    TimedOut,
    /// Leadership moved while waiting: the record's fate is the new leader's to tell.
    NotLeader,
}

/// An ISR change this leader wants the controller to commit.
#[derive(Clone, Debug, PartialEq)]
pub struct IsrRequest {
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

impl Partition {
    pub fn new(log: PartitionLog, me: NodeId) -> Partition {
        let end = log.log_end_offset();
        let hw = log
            .stored_high_watermark()
            .unwrap_or(0)
            .clamp(log.log_start_offset(), end);
        Partition {
            log,
            state: Mutex::new(State {
                me,
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                followers: HashMap::new(),
                alter_in_flight: false,
            }),
            hw: watch::channel(hw).0,
            leo: watch::channel(end).0,
            lw: watch::channel(-1).0,
            leadership: watch::channel((-1, -1)).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tp(&self) -> &TopicPartition {
        &self.log.tp
    }

    pub fn topic_id(&self) -> TopicId {
        self.log.topic_id
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.state().leader_epoch
    }

    pub fn is_leader(&self) -> bool {
        let s = self.state();
        s.leader == s.me
    }

    pub fn leader(&self) -> (NodeId, LeaderEpoch) {
        let s = self.state();
        (s.leader, s.leader_epoch)
    }

    pub fn isr(&self) -> Vec<NodeId> {
        self.state().isr.clone()
    }

    pub fn is_replica(&self, id: NodeId) -> bool {
        self.state().replicas.contains(&id)
    }

    pub fn high_watermark(&self) -> Offset {
        *self.hw.borrow()
    }

    pub fn watch_hw(&self) -> watch::Receiver<Offset> {
        self.hw.subscribe()
    }

    pub fn watch_leo(&self) -> watch::Receiver<Offset> {
        self.leo.subscribe()
    }

    fn raise_hw(&self, to: Offset) {
        self.hw.send_if_modified(|hw| {
            let moved = to > *hw;
            if moved {
                *hw = to;
            }
            moved
        });
    }

    /// On the leader: the smallest log start over this replica and the ISR's followers (-1
    /// while one has not reported it) — what DeleteRecords waits for.
    pub fn low_watermark(&self) -> Offset {
        let own = self.log.log_start_offset();
        let s = self.state();
        s.isr
            .iter()
            .filter(|r| **r != s.me)
            .map(|r| s.followers.get(r).map(|p| p.log_start).unwrap_or(-1))
            .fold(own, |m, start| m.min(start))
    }

    fn publish_low_watermark(&self) {
        let lw = self.low_watermark();
        self.lw.send_if_modified(|v| {
            let moved = *v != lw;
            *v = lw;
            moved
        });
    }

    /// On the leader: the log starts at `offset` from now on (DeleteRecords, or the group
    /// coordinator's snapshot; never past the high watermark, which the caller checks), and the
    /// segments wholly below go; followers follow from their next fetch. Returns the log start.
    pub fn advance_log_start(&self, offset: Offset) -> Result<Offset, LogError> {
        let start = self.log.advance_start(offset)?;
        self.publish_low_watermark();
        Ok(start)
    }

    /// Validates a client's records (one whole v2 batch within `max.message.bytes`), checks
    /// `min_isr` (acks=all) and the topic's timestamp policy — stamping the batch for
    /// LogAppendTime — and appends it as leader.
    pub fn append_records(
        &self,
        records: &[u8],
        min_isr: Option<usize>,
    ) -> Result<Produced, AppendError> {
        let settings = self.log.settings();
        let batches = batch::validate(records, settings.max_message_bytes)?;
        let [(header, range)] = &batches[..] else {
            return Err(AppendError::NotOneBatch);
        };
        batch::check_client_batch(header)?;
        if let Some(min) = min_isr {
            let isr = self.isr().len();
            if isr < min {
                return Err(AppendError::NotEnoughReplicas { isr, min });
            }
        }
        let raw = &records[range.clone()];
        let policy = settings.timestamps;
        let now = now_ms();
        let stamped;
        let input = if policy.log_append_time {
            stamped = batch::stamp_log_append_time(header, raw, now);
            [(stamped.0, &stamped.1[..])]
        } else if batch::timestamps_in_range(header, now, policy.before_max_ms, policy.after_max_ms)
        {
            [(*header, raw)]
        } else {
            return Err(AppendError::Timestamp);
        };
        let epoch = self.leader_epoch();
        let appended = self.append(&input)?;
        Ok(Produced {
            first: appended.first,
            last: appended.last,
            epoch,
            log_append_time: if policy.log_append_time { now } else { -1 },
            log_start: self.log.log_start_offset(),
        })
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// Bytes of the partition's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The largest epoch at or below `epoch` and where it ends (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, Offset) {
        self.log.end_offset_for_epoch(epoch)
    }

    /// The first record at or after timestamp `ts`: (offset, timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>, LogError> {
        self.log.offset_for_timestamp(ts)
    }

    /// The record with the largest timestamp: (offset, timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, LogError> {
        self.log.max_timestamp()
    }

    /// The file range a consumer read at `offset` covers (see `PartitionLog::region`).
    pub fn region(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
    ) -> Result<Option<FileRegion>, LogError> {
        self.log.region(offset, max_bytes, max_offset, min_one)
    }

    /// Record batches from `offset` into memory (see `PartitionLog::read`).
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
    ) -> Result<Bytes, LogError> {
        self.log.read(offset, max_bytes, max_offset, min_one)
    }

    /// Starts a new segment at the log end unless the active one is empty; returns the log end.
    pub fn roll_segment(&self) -> Result<Offset, LogError> {
        self.log.roll_now()
    }

    /// The idempotent producers with state here (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.log.active_producers()
    }

    fn publish_leo(&self, end: Offset) {
        self.leo.send_if_modified(|leo| {
            let moved = *leo != end;
            *leo = end;
            moved
        });
    }

    /// Takes the partition's state from a new metadata image. On becoming leader the new epoch
    /// is recorded in the epoch cache and every follower gets a fresh lag allowance.
    pub fn apply_image(&self, p: &PartitionImage) -> Result<(), LogError> {
        let became_leader = {
            let mut s = self.state();
            let became_leader =
                p.leader == s.me && (s.leader != s.me || s.leader_epoch != p.leader_epoch);
            if p.partition_epoch != s.partition_epoch {
                s.alter_in_flight = false;
            }
            s.leader = p.leader;
            s.leader_epoch = p.leader_epoch;
            s.partition_epoch = p.partition_epoch;
            s.replicas = p.replicas.clone();
            s.isr = p.isr.clone();
            if became_leader {
                let now = Instant::now();
                let me = s.me;
                s.followers = p
                    .replicas
                    .iter()
                    .filter(|r| **r != me)
                    .map(|r| {
                        (
                            *r,
                            Progress {
                                leo: -1,
                                log_start: -1,
                                caught_up: now,
                            },
                        )
                    })
                    .collect();
            }
            became_leader
        };
        if became_leader {
            self.log.begin_epoch(p.leader_epoch)?;
        }
        self.leadership.send_if_modified(|l| {
            let moved = *l != (p.leader, p.leader_epoch);
            *l = (p.leader, p.leader_epoch);
            moved
        });
        if p.leader == self.state().me {
            self.advance_hw();
        }
        Ok(())
    }

    /// The high watermark on the leader: the smallest log end over the ISR. Never moves back.
    fn advance_hw(&self) {
        let end = self.log.log_end_offset();
        let candidate = {
            let s = self.state();
            s.isr
                .iter()
                .filter(|r| **r != s.me)
                .map(|r| s.followers.get(r).map(|p| p.leo).unwrap_or(-1))
                .fold(end, |m, leo| m.min(leo))
        };
        self.raise_hw(candidate);
    }

    /// Appends as leader, stamping the leader epoch (a retried idempotent batch is answered
    /// with its original offsets instead).
    pub fn append(&self, batches: &[(BatchHeader, &[u8])]) -> Result<Appended, LogError> {
        let r = self.log.append(batches, self.leader_epoch())?;
        if !r.duplicate {
            self.publish_leo(r.last + 1);
            self.advance_hw();
        }
        Ok(r)
    }

    /// Appends batches fetched from the leader and adopts the leader's high watermark (never
    /// beyond what this log holds).
    pub fn append_replica(
        &self,
        batches: &[(BatchHeader, &[u8])],
        leader_hw: Offset,
    ) -> Result<(), LogError> {
        let end = if batches.is_empty() {
            self.log.log_end_offset()
        } else {
            self.log.append_replica(batches)?
        };
        self.publish_leo(end);
        let hw = leader_hw.min(end);
        self.hw.send_if_modified(|cur| {
            let moved = *cur != hw;
            *cur = hw;
            moved
        });
        Ok(())
    }

    /// Truncates a follower's log (to where it agrees with the leader).
    pub fn truncate_to(&self, offset: Offset) -> Result<(), LogError> {
        let end = self.log.truncate_to(offset)?;
        self.publish_leo(end);
        self.hw.send_if_modified(|hw| {
            let moved = *hw > end;
            if moved {
                *hw = end;
            }
            moved
        });
        Ok(())
    }

    /// Restarts a follower's log empty at the leader's log start.
    pub fn reset_to(&self, start: Offset) -> Result<(), LogError> {
        self.log.reset_to(start)?;
        self.publish_leo(start);
        self.hw.send_replace(start);
        Ok(())
    }

    /// A follower fetched at `fetch_offset` (it holds everything below) with its log starting
    /// at `log_start`. Updates its progress, the high and low watermarks; returns an ISR
    /// expansion to ask for once it has caught up.
    pub fn follower_fetched(
        &self,
        follower: NodeId,
        fetch_offset: Offset,
        log_start: Offset,
    ) -> Option<IsrRequest> {
        let end = self.log.log_end_offset();
        let epoch_start = self.log.latest_epoch().map(|e| e.1).unwrap_or(0);
        {
            let mut s = self.state();
            if s.leader != s.me {
                return None;
            }
            let now = Instant::now();
            let p = s.followers.entry(follower).or_insert(Progress {
                leo: -1,
                log_start: -1,
                caught_up: now,
            });
            p.leo = fetch_offset;
            p.log_start = log_start;
            if fetch_offset >= end {
                p.caught_up = now;
            }
        }
        self.advance_hw();
        self.publish_low_watermark();
        let hw = self.high_watermark();
        let mut s = self.state();
        if s.isr.contains(&follower)
            || !s.replicas.contains(&follower)
            || s.alter_in_flight
            || fetch_offset < hw
            || fetch_offset < epoch_start
        {
            return None;
        }
        let mut new_isr = s.isr.clone();
        new_isr.push(follower);
        new_isr.sort_unstable();
        s.alter_in_flight = true;
        Some(IsrRequest {
            topic_id: self.log.topic_id,
            partition: self.log.tp.partition,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr,
        })
    }

    /// On the leader: ISR members that have not caught up for `max_lag` leave the ISR.
    pub fn shrink_request(&self, max_lag: Duration) -> Option<IsrRequest> {
        let mut s = self.state();
        if s.leader != s.me || s.alter_in_flight {
            return None;
        }
        let me = s.me;
        let lagging: Vec<NodeId> = s
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r != me
                    && s.followers
                        .get(r)
                        .is_none_or(|p| p.caught_up.elapsed() > max_lag)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let new_isr: Vec<NodeId> = s
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        s.alter_in_flight = true;
        Some(IsrRequest {
            topic_id: self.log.topic_id,
            partition: self.log.tp.partition,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused or never answered: allow another request.
    pub fn alter_failed(&self) {
        self.state().alter_in_flight = false;
    }

    /// Waits until the high watermark reaches `offset`, `timeout` passes, or this node stops
    /// leading at `epoch`.
    pub async fn wait_for_hw(
        &self,
        offset: Offset,
        epoch: LeaderEpoch,
        timeout: Duration,
    ) -> HwWait {
        self.wait_for(self.hw.subscribe(), offset, epoch, timeout)
            .await
    }

    /// Waits until every ISR member's log starts at `offset` or later (DeleteRecords), while
    /// this node leads at `epoch`.
    pub async fn wait_for_low_watermark(
        &self,
        offset: Offset,
        epoch: LeaderEpoch,
        timeout: Duration,
    ) -> HwWait {
        self.wait_for(self.lw.subscribe(), offset, epoch, timeout)
            .await
    }

    /// Waits until `watermark` reaches `offset`; ends early when leadership moves.
    async fn wait_for(
        &self,
        mut watermark: watch::Receiver<Offset>,
        offset: Offset,
        epoch: LeaderEpoch,
        timeout: Duration,
    ) -> HwWait {
        let mut leadership = self.leadership.subscribe();
        let me = self.state().me;
        let still_leading = |l: &(NodeId, LeaderEpoch)| *l == (me, epoch);
        let wait = async {
            loop {
                if *watermark.borrow_and_update() >= offset {
                    return HwWait::Reached;
                }
                if !still_leading(&leadership.borrow_and_update()) {
                    return HwWait::NotLeader;
                }
                tokio::select! {
                    r = watermark.changed() => if r.is_err() { return HwWait::NotLeader },
                    r = leadership.changed() => if r.is_err() { return HwWait::NotLeader },
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(HwWait::TimedOut)
    }
}
