//! ISR changes (AlterPartition) committed together: each leader's ask waits in a queue, and one
//! task on the controller plans everything waiting against the current image and writes it as
//! one entry of at most `decide::RECORDS_PER_ENTRY` records, then answers each ask from its
//! record's outcome. A broker coming back to a cluster of 30,000 partitions sets off an ISR
//! expansion for each it follows; one entry per ask queued thousands of entries behind each
//! other, held admin writes past their timeout and kept the quorum busy for minutes.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::decide::{self, AlterPartition};
use super::{AdminError, Handle};
use crate::metadata::{ApplyOutcome, MetadataImage, MetadataRecord};
use crate::types::NodeId;

/// What an ask is answered with: the partition's new epoch and ISR.
pub(crate) type IsrAnswer = Result<(i32, Vec<NodeId>), AdminError>;

/// Asks waiting for the next entry.
#[derive(Default)]
pub(super) struct IsrQueue {
    waiting: Mutex<Vec<(AlterPartition, oneshot::Sender<IsrAnswer>)>>,
    wake: Notify,
}

impl IsrQueue {
    fn push(&self, ask: AlterPartition) -> oneshot::Receiver<IsrAnswer> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ask, tx));
        self.wake.notify_one();
        rx
    }

    /// The oldest `max` asks.
    fn take(&self, max: usize) -> Vec<(AlterPartition, oneshot::Sender<IsrAnswer>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let n = waiting.len().min(max);
        waiting.drain(..n).collect()
    }
}

/// One ask's place in a planned entry: the index of its record (and the answer it gets when
/// that record applies), or why it was refused before anything was written.
pub(super) type Placed = Result<(usize, (i32, Vec<NodeId>)), AdminError>;

/// Plans `asks` against `image`, in order: the records of one entry, and each ask's place in
/// it. A second ask for a partition already in the entry is refused as stale (it was planned
/// against the epoch the first one replaces; its leader asks again from the next image).
pub(super) fn plan(
    image: &MetadataImage,
    asks: &[AlterPartition],
) -> (Vec<MetadataRecord>, Vec<Placed>) {
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    let placed = asks
        .iter()
        .map(|ask| {
            if !seen.insert((ask.topic_id, ask.partition)) {
                return Err(AdminError::Stale(format!(
                    "another ISR change of partition {} is being written",
                    ask.partition
                )));
            }
            let record = decide::alter_partition(image, ask)?;
            let isr = match &record {
                MetadataRecord::PartitionChange { isr, .. }
                | MetadataRecord::ReplicasChange { isr, .. } => isr.clone(),
                _ => ask.new_isr.clone(),
            };
            records.push(record);
            Ok((records.len() - 1, (ask.partition_epoch + 1, isr)))
        })
        .collect();
    (records, placed)
}

impl Handle {
    /// An ISR change asked for by a partition's leader, on the controller: queued, written with
    /// the others waiting (`run_isr_changes`), and answered with the new partition epoch and
    /// ISR.
    pub(super) async fn alter_partition_local(&self, ask: &AlterPartition) -> IsrAnswer {
        let answer = self.isr.push(ask.clone());
        // The writer answers within its proposal's timeout; this bound only guards a writer
        // that stopped (the node shutting down).
        let limit = Duration::from_millis(self.config.quorum_request_timeout_ms) * 2;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(answer)) => answer,
            _ => Err(AdminError::NoQuorum(
                "the ISR change was not written in time".into(),
            )),
        }
    }

    /// Writes queued ISR changes, as many as one entry takes each time, until cancelled.
    pub(super) async fn run_isr_changes(self, token: CancellationToken) {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.isr.wake.notified() => {}
            }
            loop {
                let batch = self.isr.take(decide::RECORDS_PER_ENTRY);
                if batch.is_empty() {
                    break;
                }
                let (asks, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let (records, placed) = plan(&self.image(), &asks);
                let outcomes = if records.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.propose(records).await
                };
                for (place, answer) in placed.into_iter().zip(answers) {
                    let _ = answer.send(conclude(place, &outcomes));
                }
            }
        }
    }
}

/// One ask's answer from its place and the entry's outcome.
fn conclude(place: Placed, outcomes: &Result<Vec<ApplyOutcome>, AdminError>) -> IsrAnswer {
    let (index, answer) = place?;
    match outcomes.as_ref().map_err(Clone::clone)?.get(index) {
        Some(ApplyOutcome::Applied) => Ok(answer),
        other => Err(AdminError::Stale(format!(
            "the ISR change did not apply: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::BrokerRegistration;
    use crate::types::TopicId;

    fn image() -> MetadataImage {
        let mut img = MetadataImage::default();
        for id in 1..=3 {
            img.apply_mut(&MetadataRecord::RegisterBroker(BrokerRegistration {
                id,
                incarnation: uuid::Uuid::from_u128(id as u128),
                endpoints: Vec::new(),
                rack: None,
                fenced: false,
            }));
        }
        img.apply_mut(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: TopicId(uuid::Uuid::from_u128(9)),
            assignments: (0..4).map(|_| vec![1, 2, 3]).collect(),
            configs: BTreeMap::new(),
        });
        img
    }

    fn ask(img: &MetadataImage, partition: i32, new_isr: Vec<NodeId>) -> AlterPartition {
        let p = &img.topic("t").unwrap().partitions[partition as usize];
        AlterPartition {
            broker: p.leader,
            topic_id: TopicId(uuid::Uuid::from_u128(9)),
            partition,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr,
        }
    }

    #[test]
    fn isr_changes_of_many_partitions_go_in_one_entry_and_each_is_answered_by_its_own_outcome() {
        let img = image();
        // Shrinks on three partitions, a second ask for partition 0, and one from a broker
        // that does not lead.
        let mut not_leader = ask(&img, 3, vec![1, 2]);
        not_leader.broker = 2;
        let asks = vec![
            ask(&img, 0, vec![1, 2]),
            ask(&img, 1, vec![1, 3]),
            ask(&img, 0, vec![1]),
            ask(&img, 2, vec![1]),
            not_leader,
        ];
        let (records, placed) = plan(&img, &asks);
        assert_eq!(records.len(), 3, "one record per partition, in one entry");
        let places: Vec<Option<usize>> = placed
            .iter()
            .map(|p| p.as_ref().ok().map(|p| p.0))
            .collect();
        assert_eq!(places, [Some(0), Some(1), None, Some(2), None]);
        assert!(
            matches!(placed[2], Err(AdminError::Stale(_))),
            "the second ask for 0"
        );
        assert!(
            matches!(placed[4], Err(AdminError::Stale(_))),
            "not the leader"
        );

        // Applied as one entry: every planned change lands.
        let mut next = img.clone();
        let outcomes: Vec<ApplyOutcome> = records.iter().map(|r| next.apply_mut(r)).collect();
        assert!(outcomes.iter().all(|o| *o == ApplyOutcome::Applied));
        let t = next.topic("t").unwrap();
        assert_eq!(t.partitions[0].isr, vec![1, 2]);
        assert_eq!(t.partitions[1].isr, vec![1, 3]);
        assert_eq!(t.partitions[2].isr, vec![1]);
        assert_eq!(t.partitions[3].isr, vec![1, 2, 3]);

        // Each answer from its own record's outcome.
        let mixed = Ok(vec![
            ApplyOutcome::Applied,
            ApplyOutcome::Conflict("epoch".into()),
            ApplyOutcome::Applied,
        ]);
        let answers: Vec<IsrAnswer> = placed.into_iter().map(|p| conclude(p, &mixed)).collect();
        assert_eq!(answers[0], Ok((1, vec![1, 2])));
        assert!(
            matches!(answers[1], Err(AdminError::Stale(_))),
            "its record conflicted"
        );
        assert_eq!(answers[3], Ok((1, vec![1])));
        let failed: Result<Vec<ApplyOutcome>, AdminError> =
            Err(AdminError::NoQuorum("no quorum".into()));
        let (_, placed) = plan(&img, &asks[..1]);
        assert_eq!(
            conclude(placed.into_iter().next().unwrap(), &failed),
            Err(AdminError::NoQuorum("no quorum".into()))
        );
    }
}
