//! Partition reassignment (KIP-455), pure: what a partition's replica set, ISR and leader become
//! when a reassignment starts, is cancelled, or completes.
//!
//! While a partition moves, its replicas are the target followed by the original replicas the
//! target drops (so the preferred leader is already the target's first); `adding` are the
//! target's new replicas, `removing` the original ones it drops. New replicas fetch as followers
//! and join the ISR the usual way; once every target replica is in the ISR the controller writes
//! the final set — the removed replicas leave, and if the leader was one of them the first
//! in-sync target replica leads at the next epoch. Cancelling returns to the original replicas.
//! The controller (`controller::decide`) turns the results into `ReplicasChange` records.

use serde::{Deserialize, Serialize};

use super::PartitionImage;
use crate::types::{LeaderEpoch, NodeId};

/// A reassignment in progress for one partition, kept in the image beside the partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// A partition's next replica set: the fields of a `ReplicasChange` record but its ids and
/// partition epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSet {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    /// Empty when no reassignment remains.
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// Why a partition's reassignment was refused (Kafka's codes: INVALID_REPLICA_ASSIGNMENT,
/// NO_REASSIGNMENT_IN_PROGRESS).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReassignError {
    #[error("{0}")]
    InvalidAssignment(String),
    #[error("no reassignment is in progress for this partition")]
    NoneInProgress,
}

/// The replicas the partition had before its ongoing reassignment (or has, with none).
pub fn original_replicas(p: &PartitionImage, ongoing: Option<&Reassignment>) -> Vec<NodeId> {
    let adding: &[NodeId] = ongoing.map(|r| r.adding.as_slice()).unwrap_or(&[]);
    p.replicas
        .iter()
        .copied()
        .filter(|b| !adding.contains(b))
        .collect()
}

/// The replicas an ongoing reassignment moves to.
pub fn target_replicas(p: &PartitionImage, ongoing: &Reassignment) -> Vec<NodeId> {
    p.replicas
        .iter()
        .copied()
        .filter(|b| !ongoing.removing.contains(b))
        .collect()
}

/// Starts (or replaces) a reassignment of `p` towards `target` — or, with `None`, cancels the
/// ongoing one. `registered` are the brokers a target may name. Returns the partition's next
/// replica set: finished at once when every target replica is already in the ISR.
pub fn reassign(
    p: &PartitionImage,
    ongoing: Option<&Reassignment>,
    target: Option<&[NodeId]>,
    registered: &[NodeId],
) -> Result<ReplicaSet, ReassignError> {
    let original = original_replicas(p, ongoing);
    let Some(target) = target else {
        if ongoing.is_none() {
            return Err(ReassignError::NoneInProgress);
        }
        return finish(p, &original, &p.isr).ok_or_else(|| {
            ReassignError::InvalidAssignment(
                "no original replica is in sync; the reassignment cannot be cancelled".into(),
            )
        });
    };
    check_replicas(target, registered)
        .map_err(|why| ReassignError::InvalidAssignment(format!("the target {why}")))?;
    let dropped: Vec<NodeId> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let replicas: Vec<NodeId> = target.iter().copied().chain(dropped.clone()).collect();
    let isr: Vec<NodeId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect();
    if target.iter().all(|b| isr.contains(b)) {
        if let Some(done) = finish(p, target, &isr) {
            return Ok(done);
        }
    }
    let (leader, leader_epoch) = choose_leader(p, &replicas, &isr);
    Ok(ReplicaSet {
        adding: target
            .iter()
            .copied()
            .filter(|b| !original.contains(b))
            .collect(),
        removing: dropped,
        replicas,
        isr,
        leader,
        leader_epoch,
    })
}

/// The replica set once `new_isr` is in force, if that finishes `p`'s ongoing reassignment
/// (every target replica in sync).
pub fn complete(
    p: &PartitionImage,
    ongoing: &Reassignment,
    new_isr: &[NodeId],
) -> Option<ReplicaSet> {
    let target = target_replicas(p, ongoing);
    if !target.iter().all(|b| new_isr.contains(b)) {
        return None;
    }
    finish(p, &target, new_isr)
}

/// `p` with exactly `replicas`, its ISR cut to them; None if no in-sync replica would remain.
fn finish(p: &PartitionImage, replicas: &[NodeId], isr: &[NodeId]) -> Option<ReplicaSet> {
    let isr: Vec<NodeId> = isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect();
    if isr.is_empty() {
        return None;
    }
    let (leader, leader_epoch) = choose_leader(p, replicas, &isr);
    Some(ReplicaSet {
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch,
        adding: Vec::new(),
        removing: Vec::new(),
    })
}

/// The leader stays if it is still an in-sync replica; otherwise the first in-sync replica in
/// `replicas` order leads at the next epoch (-1 when none is).
fn choose_leader(p: &PartitionImage, replicas: &[NodeId], isr: &[NodeId]) -> (NodeId, LeaderEpoch) {
    if p.leader >= 0 && replicas.contains(&p.leader) && isr.contains(&p.leader) {
        return (p.leader, p.leader_epoch);
    }
    let leader = replicas
        .iter()
        .copied()
        .find(|b| isr.contains(b))
        .unwrap_or(-1);
    (leader, p.leader_epoch + 1)
}

/// Why a replica list cannot stand, if it cannot: empty, a broker twice, or a broker that is
/// not registered. Shared by topic creation and reassignment.
pub fn check_replicas(list: &[NodeId], registered: &[NodeId]) -> Result<(), String> {
    if list.is_empty() {
        return Err("is empty".into());
    }
    let mut seen = list.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != list.len() {
        return Err(format!("{list:?} lists a broker twice"));
    }
    match list.iter().find(|b| !registered.contains(b)) {
        Some(b) => Err(format!("names broker {b}, which is not registered")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[NodeId], isr: &[NodeId], leader: NodeId) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
        }
    }

    const BROKERS: &[NodeId] = &[1, 2, 3, 4, 5];

    #[test]
    fn a_move_lists_target_then_dropped_replicas_and_keeps_the_leader() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 2);
        let next = reassign(&p, None, Some(&[4, 2, 3]), BROKERS).unwrap();
        assert_eq!(next.replicas, vec![4, 2, 3, 1]);
        assert_eq!(next.isr, vec![1, 2, 3]);
        assert_eq!((next.leader, next.leader_epoch), (2, 4));
        assert_eq!(next.adding, vec![4]);
        assert_eq!(next.removing, vec![1]);
    }

    #[test]
    fn it_completes_when_every_target_replica_is_in_sync_and_a_dropped_leader_hands_over() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let moving = reassign(&p, None, Some(&[4, 2, 3]), BROKERS).unwrap();
        let ongoing = Reassignment {
            adding: moving.adding.clone(),
            removing: moving.removing.clone(),
        };
        let mid = PartitionImage {
            replicas: moving.replicas.clone(),
            isr: moving.isr.clone(),
            leader: moving.leader,
            leader_epoch: moving.leader_epoch,
            partition_epoch: 10,
        };
        // Broker 4 not yet in sync: not complete.
        assert_eq!(complete(&mid, &ongoing, &[1, 2, 3]), None);
        let done = complete(&mid, &ongoing, &[1, 2, 3, 4]).unwrap();
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!(done.isr, vec![2, 3, 4]);
        // Broker 1 led and is dropped: the first in-sync target replica leads at epoch + 1.
        assert_eq!((done.leader, done.leader_epoch), (4, 5));
        assert!(done.adding.is_empty() && done.removing.is_empty());
    }

    #[test]
    fn a_target_already_in_sync_finishes_at_once() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 3);
        let next = reassign(&p, None, Some(&[2, 1]), BROKERS).unwrap();
        assert_eq!(next.replicas, vec![2, 1]);
        assert_eq!(next.isr, vec![1, 2]);
        assert_eq!((next.leader, next.leader_epoch), (2, 5));
        assert!(next.adding.is_empty() && next.removing.is_empty());
    }

    #[test]
    fn cancelling_returns_to_the_original_replicas() {
        let p = partition(&[4, 5, 1, 2], &[1, 2, 4], 4);
        let ongoing = Reassignment {
            adding: vec![4, 5],
            removing: vec![1, 2],
        };
        assert_eq!(original_replicas(&p, Some(&ongoing)), vec![1, 2]);
        let back = reassign(&p, Some(&ongoing), None, BROKERS).unwrap();
        assert_eq!(back.replicas, vec![1, 2]);
        assert_eq!(back.isr, vec![1, 2]);
        assert_eq!((back.leader, back.leader_epoch), (1, 5));
        assert!(back.adding.is_empty());
        // Nothing to cancel without a reassignment.
        assert_eq!(
            reassign(&partition(&[1, 2], &[1, 2], 1), None, None, BROKERS),
            Err(ReassignError::NoneInProgress)
        );
    }

    #[test]
    fn a_new_target_replaces_an_ongoing_one_from_the_original_replicas() {
        let p = partition(&[4, 2, 1], &[1, 2], 1);
        let ongoing = Reassignment {
            adding: vec![4],
            removing: vec![1],
        };
        let next = reassign(&p, Some(&ongoing), Some(&[5, 2]), BROKERS).unwrap();
        assert_eq!(next.replicas, vec![5, 2, 1]);
        assert_eq!(next.adding, vec![5]);
        assert_eq!(next.removing, vec![1]);
    }

    #[test]
    fn bad_targets_are_refused() {
        let p = partition(&[1, 2], &[1, 2], 1);
        for bad in [&[][..], &[1, 1][..], &[1, 9][..]] {
            assert!(matches!(
                reassign(&p, None, Some(bad), BROKERS),
                Err(ReassignError::InvalidAssignment(_))
            ));
        }
    }
}
