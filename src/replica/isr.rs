//! The leader's arithmetic over its replicas, as plain data: each follower's progress, the high
//! and low watermarks that follow from it, and when to ask the controller to grow or shrink the
//! ISR. No locks, no clock reads (the caller passes `now`), no I/O: `Partition` holds one
//! `Replicas` under its state mutex and publishes what these functions decide.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metadata::PartitionImage;
use crate::types::{LeaderEpoch, NodeId, Offset};

/// A follower's progress as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Progress {
    /// The follower's log end: it has every offset below (-1: not heard from yet).
    leo: Offset,
    /// The follower's log start, as its fetches report it (-1: not heard from yet).
    log_start: Offset,
    /// The last time the follower had everything the leader had.
    caught_up: Instant,
}

impl Progress {
    fn fresh(now: Instant) -> Progress {
        Progress {
            leo: -1,
            log_start: -1,
            caught_up: now,
        }
    }
}

/// One partition's leadership and replica set as this node knows it.
#[derive(Debug)]
pub(super) struct Replicas {
    pub me: NodeId,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    followers: HashMap<NodeId, Progress>,
    /// An AlterPartition is on its way to the controller; no second one until it lands.
    alter_in_flight: bool,
}

/// The ISR a leader asks the controller for, with the epochs that make a stale ask fail.
#[derive(Clone, Debug, PartialEq)]
pub struct IsrChange {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

impl Replicas {
    pub fn new(me: NodeId) -> Replicas {
        Replicas {
            me,
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            followers: HashMap::new(),
            alter_in_flight: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }

    /// Takes leadership and replicas from the image. Returns whether this node became leader
    /// (or leads at a new epoch): then every follower starts with a fresh lag allowance.
    pub fn apply(&mut self, p: &PartitionImage, now: Instant) -> bool {
        let became_leader =
            p.leader == self.me && (self.leader != self.me || self.leader_epoch != p.leader_epoch);
        if p.partition_epoch != self.partition_epoch {
            self.alter_in_flight = false;
        }
        self.leader = p.leader;
        self.leader_epoch = p.leader_epoch;
        self.partition_epoch = p.partition_epoch;
        self.replicas = p.replicas.clone();
        self.isr = p.isr.clone();
        if became_leader {
            let me = self.me;
            self.followers = p
                .replicas
                .iter()
                .filter(|r| **r != me)
                .map(|r| (*r, Progress::fresh(now)))
                .collect();
        }
        became_leader
    }

    /// The smallest of `own` and what `pick` reads from each other ISR member (-1 for one not
    /// heard from).
    fn min_over_isr(&self, own: Offset, pick: fn(&Progress) -> Offset) -> Offset {
        self.isr
            .iter()
            .filter(|r| **r != self.me)
            .map(|r| self.followers.get(r).map(pick).unwrap_or(-1))
            .fold(own, Offset::min)
    }

    /// The high watermark a leader whose log ends at `log_end` may publish: the smallest log
    /// end over the ISR. (The caller never lets it move back.)
    pub fn high_watermark(&self, log_end: Offset) -> Offset {
        self.min_over_isr(log_end, |p| p.leo)
    }

    /// The smallest log start over this replica (`own`) and the ISR's followers (-1 while one
    /// has not reported it): what DeleteRecords waits for.
    pub fn low_watermark(&self, own: Offset) -> Offset {
        self.min_over_isr(own, |p| p.log_start)
    }

    /// Records a follower's fetch: it holds every offset below `fetch_offset` and its log starts
    /// at `log_start`; it has caught up if it asked from the leader's `log_end`. Whether its log
    /// end or start moved (only then can a watermark move); `None` if this node does not lead.
    pub fn follower_fetched(
        &mut self,
        follower: NodeId,
        fetch_offset: Offset,
        log_start: Offset,
        log_end: Offset,
        now: Instant,
    ) -> Option<bool> {
        if !self.is_leader() {
            return None;
        }
        let p = self
            .followers
            .entry(follower)
            .or_insert(Progress::fresh(now));
        let moved = p.leo != fetch_offset || p.log_start != log_start;
        p.leo = fetch_offset;
        p.log_start = log_start;
        if fetch_offset >= log_end {
            p.caught_up = now;
        }
        Some(moved)
    }

    /// An ISR expansion to ask for: `follower`, a replica outside the ISR, has reached the high
    /// watermark `hw` and the start of the leader's current epoch (`epoch_start`), and no
    /// other change is in flight.
    pub fn expansion(
        &mut self,
        follower: NodeId,
        fetch_offset: Offset,
        hw: Offset,
        epoch_start: Offset,
    ) -> Option<IsrChange> {
        if !self.is_leader()
            || self.isr.contains(&follower)
            || !self.replicas.contains(&follower)
            || self.alter_in_flight
            || fetch_offset < hw
            || fetch_offset < epoch_start
        {
            return None;
        }
        let mut new_isr = self.isr.clone();
        new_isr.push(follower);
        new_isr.sort_unstable();
        Some(self.ask(new_isr))
    }

    /// An ISR shrink to ask for: the members that have not caught up within `max_lag` leave.
    pub fn shrink(&mut self, now: Instant, max_lag: Duration) -> Option<IsrChange> {
        if !self.is_leader() || self.alter_in_flight {
            return None;
        }
        let lagging = |r: &NodeId| {
            *r != self.me
                && self
                    .followers
                    .get(r)
                    .is_none_or(|p| now.saturating_duration_since(p.caught_up) > max_lag)
        };
        if !self.isr.iter().any(lagging) {
            return None;
        }
        let new_isr = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        Some(self.ask(new_isr))
    }

    fn ask(&mut self, new_isr: Vec<NodeId>) -> IsrChange {
        self.alter_in_flight = true;
        IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        }
    }

    /// The controller refused or never answered: allow another request.
    pub fn alter_failed(&mut self) {
        self.alter_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(leader: NodeId, epoch: i32, replicas: &[NodeId], isr: &[NodeId]) -> PartitionImage {
        PartitionImage {
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    fn leader_of_three(now: Instant) -> Replicas {
        let mut r = Replicas::new(1);
        assert!(r.apply(&image(1, 5, &[1, 2, 3], &[1, 2, 3]), now));
        r
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_over_the_isr() {
        let t = Instant::now();
        let mut r = leader_of_three(t);
        assert_eq!(r.high_watermark(100), -1, "followers not heard from yet");
        r.follower_fetched(2, 80, 0, 100, t);
        r.follower_fetched(3, 90, 0, 100, t);
        assert_eq!(r.high_watermark(100), 80);
        r.follower_fetched(2, 100, 0, 100, t);
        assert_eq!(r.high_watermark(100), 90);
        // A follower outside the ISR does not hold it back.
        r.apply(&image(1, 5, &[1, 2, 3], &[1, 2]), t);
        assert_eq!(r.high_watermark(100), 100);
        assert_eq!(r.high_watermark(120), 100);
    }

    #[test]
    fn the_low_watermark_waits_for_every_isr_members_log_start() {
        let t = Instant::now();
        let mut r = leader_of_three(t);
        assert_eq!(r.low_watermark(50), -1);
        r.follower_fetched(2, 100, 40, 100, t);
        r.follower_fetched(3, 100, 60, 100, t);
        assert_eq!(r.low_watermark(50), 40);
        r.follower_fetched(2, 100, 55, 100, t);
        assert_eq!(r.low_watermark(50), 50);
    }

    #[test]
    fn a_caught_up_follower_is_asked_into_the_isr_once() {
        let t = Instant::now();
        let mut r = Replicas::new(1);
        r.apply(&image(1, 7, &[1, 2, 3], &[1, 2]), t);
        assert_eq!(r.expansion(3, 40, 50, 0), None, "below the high watermark");
        assert_eq!(r.expansion(3, 50, 50, 60), None, "before the epoch's start");
        let ask = r.expansion(3, 60, 50, 60).unwrap();
        assert_eq!(ask.new_isr, vec![1, 2, 3]);
        assert_eq!((ask.leader_epoch, ask.partition_epoch), (7, 7));
        assert_eq!(r.expansion(3, 60, 50, 60), None, "one change in flight");
        r.alter_failed();
        assert!(r.expansion(3, 60, 50, 60).is_some());
        assert_eq!(r.expansion(2, 60, 50, 0), None, "already a member");
        assert_eq!(r.expansion(4, 60, 50, 0), None, "not a replica");
    }

    #[test]
    fn followers_that_stop_catching_up_are_shrunk_out_after_the_lag_allowance() {
        let t = Instant::now();
        let lag = Duration::from_secs(10);
        let mut r = leader_of_three(t);
        assert_eq!(r.shrink(t + Duration::from_secs(9), lag), None);
        r.follower_fetched(2, 100, 0, 100, t + Duration::from_secs(9));
        let ask = r.shrink(t + Duration::from_secs(11), lag).unwrap();
        assert_eq!(ask.new_isr, vec![1, 2], "3 never caught up; 2 did at 9 s");
        assert_eq!(
            r.shrink(t + Duration::from_secs(30), lag),
            None,
            "in flight"
        );
        // The committed change arrives with a new partition epoch; 2 then lags too.
        let mut next = image(1, 5, &[1, 2, 3], &[1, 2]);
        next.partition_epoch = 6;
        assert!(
            !r.apply(&next, t + Duration::from_secs(12)),
            "same leader epoch"
        );
        assert_eq!(
            r.shrink(t + Duration::from_secs(30), lag).unwrap().new_isr,
            vec![1]
        );
    }

    #[test]
    fn a_new_leader_epoch_gives_every_follower_a_fresh_allowance() {
        let t = Instant::now();
        let lag = Duration::from_secs(10);
        let mut r = leader_of_three(t);
        let later = t + Duration::from_secs(60);
        assert!(r.apply(&image(1, 6, &[1, 2, 3], &[1, 2, 3]), later));
        assert_eq!(r.shrink(later + Duration::from_secs(5), lag), None);
        assert!(r.shrink(later + Duration::from_secs(11), lag).is_some());
    }

    #[test]
    fn a_follower_records_nothing_and_asks_for_nothing() {
        let t = Instant::now();
        let mut r = Replicas::new(2);
        assert!(!r.apply(&image(1, 5, &[1, 2, 3], &[1, 2, 3]), t));
        assert_eq!(r.follower_fetched(3, 10, 0, 10, t), None);
        assert_eq!(r.shrink(t + Duration::from_secs(100), Duration::ZERO), None);
        assert_eq!(r.expansion(3, 10, 0, 0), None);
    }
}
