//! One transactional id's state and the coordinator's decisions on it, as plain functions over
//! plain data (no clock reads: callers pass `now`). Kafka's state machine (KIP-98):
//!
//! ```text
//! Empty ──AddPartitions──▶ Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!                            │      ──EndTxn(abort) / timeout / fenced──▶ PrepareAbort ──▶ CompleteAbort
//! ```
//!
//! Every decision returns the next state to be written to `__transaction_state`; nothing is
//! answered before that record is replicated. A Prepare state is answered at once (the
//! outcome is decided) and completed in the background by writing the markers.

use std::collections::BTreeSet;

/// Kafka's transaction states, with their `__transaction_state` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name ListTransactions and DescribeTransactions use (Kafka's `TransactionState`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn is_prepare(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// A transactional id's state as `__transaction_state` keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions the open (or deciding) transaction wrote to.
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub update_ms: i64,
    /// The epoch before the coordinator bumped it itself to abort (a timeout, or a producer
    /// recovering with KIP-360): that producer may still ask InitProducerId with it. Kept in
    /// memory only (-1 after a reload).
    pub last_epoch: i16,
}

/// Why the coordinator refused a request on a transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("this broker is not the transaction coordinator for the id")]
    NotCoordinator,
    #[error("the coordinator is still loading its transactions")]
    LoadInProgress,
    #[error("the transaction coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("another operation on the transaction is still completing")]
    ConcurrentTransactions,
    #[error("a newer producer with the same transactional id fenced this one")]
    ProducerFenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("the transaction is not in a state that allows this")]
    InvalidTxnState,
    #[error("transaction.timeout.ms is larger than transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("unknown transactional id")]
    UnknownTransactionalId,
    /// KIP-890: a partition leader asked about a partition the transaction does not have.
    #[error("the partition is not in the producer's transaction")]
    NotInTransaction,
}

/// What InitProducerId does with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Allocate a new producer id, then write `fresh(id)`.
    NewProducer,
    /// Write this (the same producer at the next epoch, Empty) and answer with it.
    Write(TxnMeta),
    /// An open transaction is aborted first, at the bumped epoch: write this PrepareAbort,
    /// complete it, and let the producer retry (CONCURRENT_TRANSACTIONS).
    AbortFirst(TxnMeta),
}

/// A new transactional id's (or an exhausted epoch's) state: `producer_id` at epoch 0.
pub fn fresh(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMeta {
    TxnMeta {
        producer_id,
        epoch: 0,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        update_ms: now,
        last_epoch: -1,
    }
}

/// InitProducerId: `request` is the producer id and epoch the client already had (KIP-360;
/// -1 when it has none).
pub fn init(
    meta: Option<&TxnMeta>,
    request: (i64, i16),
    timeout_ms: i32,
    now: i64,
) -> Result<InitStep, TxnError> {
    let Some(m) = meta else {
        return Ok(InitStep::NewProducer);
    };
    let known = request.0 < 0
        || (request.0 == m.producer_id
            && (request.1 == m.epoch || (m.last_epoch >= 0 && request.1 == m.last_epoch)));
    if !known {
        return Err(TxnError::ProducerFenced);
    }
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
            Err(TxnError::ConcurrentTransactions)
        }
        TxnState::Ongoing => Ok(InitStep::AbortFirst(TxnMeta {
            epoch: next_epoch(m.epoch),
            state: TxnState::PrepareAbort,
            update_ms: now,
            // A producer recovering itself (KIP-360) retries with the epoch it had; a new
            // producer (no id) fences the old one for good.
            last_epoch: if request.0 >= 0 { m.epoch } else { -1 },
            ..m.clone()
        })),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
            if m.epoch >= i16::MAX - 1 {
                return Ok(InitStep::NewProducer);
            }
            Ok(InitStep::Write(TxnMeta {
                epoch: m.epoch + 1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                update_ms: now,
                last_epoch: -1,
                ..m.clone()
            }))
        }
    }
}

/// The epoch a fence or a coordinator's abort moves to: up to `i16::MAX`, which no producer
/// can still hold (the next InitProducerId then gives a new producer id).
fn next_epoch(epoch: i16) -> i16 {
    epoch.saturating_add(1)
}

/// The producer's id and epoch must be the transactional id's current ones.
fn check_producer(m: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
    if producer_id != m.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if epoch != m.epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(())
}

/// KIP-890's verification, for a partition leader about to append a transaction's first batch:
/// for each partition, whether it is in the producer's transaction. Pending writes are not
/// waited for (the leader's guard catches a marker written meanwhile); a transaction being
/// decided refuses (CONCURRENT_TRANSACTIONS), as in Kafka.
pub fn verify(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<bool>, TxnError> {
    check_producer(m, producer_id, epoch)?;
    if m.state.is_prepare() {
        return Err(TxnError::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|p| m.state == TxnState::Ongoing && m.partitions.contains(p))
        .collect())
}

/// AddPartitionsToTxn / AddOffsetsToTxn: `None` when every partition is already in the open
/// transaction (nothing to write).
pub fn add_partitions(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMeta>, TxnError> {
    check_producer(m, producer_id, epoch)?;
    if m.state.is_prepare() {
        return Err(TxnError::ConcurrentTransactions);
    }
    if m.state == TxnState::Dead {
        return Err(TxnError::InvalidTxnState);
    }
    let ongoing = m.state == TxnState::Ongoing;
    if ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if !ongoing {
        next.partitions.clear();
        next.start_ms = now;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.state = TxnState::Ongoing;
    next.update_ms = now;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Write this Prepare state, answer, then complete it.
    Prepare(TxnMeta),
    /// The same outcome was already reached (a retried EndTxn): answer success.
    Done,
}

pub fn end(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now: i64,
) -> Result<EndStep, TxnError> {
    check_producer(m, producer_id, epoch)?;
    match (m.state, commit) {
        (TxnState::Ongoing, _) => Ok(EndStep::Prepare(TxnMeta {
            state: if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            },
            update_ms: now,
            ..m.clone()
        })),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndStep::Done),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::ConcurrentTransactions)
        }
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// A transaction open past its timeout at `now`: aborted at a bumped epoch, which fences the
/// producer that left it open.
pub fn timed_out(m: &TxnMeta, now: i64) -> Option<TxnMeta> {
    (m.state == TxnState::Ongoing && now > m.start_ms.saturating_add(m.timeout_ms as i64)).then(
        || TxnMeta {
            epoch: next_epoch(m.epoch),
            state: TxnState::PrepareAbort,
            update_ms: now,
            last_epoch: m.epoch,
            ..m.clone()
        },
    )
}

/// The state after every marker of a Prepare state is written.
pub fn complete(m: &TxnMeta, now: i64) -> Option<TxnMeta> {
    let state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort | TxnState::PrepareEpochFence => TxnState::CompleteAbort,
        _ => return None,
    };
    Some(TxnMeta {
        state,
        partitions: BTreeSet::new(),
        update_ms: now,
        ..m.clone()
    })
}

/// Whether a transactional id with no transaction has been idle past `expiration_ms`.
pub fn expired(m: &TxnMeta, now: i64, expiration_ms: i64) -> bool {
    matches!(
        m.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && now.saturating_sub(m.update_ms) > expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn verification_names_the_partitions_of_the_open_transaction_only() {
        let m = add_partitions(&fresh(7, 60_000, 1), 7, 0, &[tp("a", 0)], 10)
            .expect("added")
            .expect("written");
        assert_eq!(
            verify(&m, 7, 0, &[tp("a", 0), tp("a", 1)]),
            Ok(vec![true, false])
        );
        assert_eq!(
            verify(&m, 8, 0, &[tp("a", 0)]),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            verify(&m, 7, 1, &[tp("a", 0)]),
            Err(TxnError::ProducerFenced)
        );
        let EndStep::Prepare(p) = end(&m, 7, 0, false, 20).expect("ends") else {
            panic!("expected a prepare");
        };
        assert_eq!(
            verify(&p, 7, 0, &[tp("a", 0)]),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = complete(&p, 30).expect("completes");
        assert_eq!(
            verify(&done, 7, 0, &[tp("a", 0)]),
            Ok(vec![false]),
            "a late batch of a completed transaction is not in one"
        );
    }

    #[test]
    fn a_transaction_runs_from_empty_to_complete_commit() {
        let m = fresh(7, 60_000, 1);
        let m = add_partitions(&m, 7, 0, &[tp("a", 0), tp("b", 1)], 10)
            .expect("added")
            .expect("written");
        assert_eq!(
            (m.state, m.start_ms, m.partitions.len()),
            (TxnState::Ongoing, 10, 2)
        );
        assert_eq!(add_partitions(&m, 7, 0, &[tp("a", 0)], 11), Ok(None));
        let EndStep::Prepare(p) = end(&m, 7, 0, true, 20).expect("ends") else {
            panic!("expected a prepare");
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(
            add_partitions(&p, 7, 0, &[tp("c", 0)], 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end(&p, 7, 0, true, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(end(&p, 7, 0, false, 21), Err(TxnError::InvalidTxnState));
        let c = complete(&p, 30).expect("completes");
        assert_eq!((c.state, c.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(
            end(&c, 7, 0, true, 31),
            Ok(EndStep::Done),
            "a retried commit"
        );
        assert_eq!(end(&c, 7, 0, false, 31), Err(TxnError::InvalidTxnState));
        // The next transaction starts afresh.
        let n = add_partitions(&c, 7, 0, &[tp("z", 0)], 40)
            .unwrap()
            .unwrap();
        assert_eq!((n.start_ms, n.partitions.len()), (40, 1));
    }

    #[test]
    fn init_bumps_the_epoch_and_fences_the_old_producer() {
        assert_eq!(init(None, (-1, -1), 1000, 0), Ok(InitStep::NewProducer));
        let m = fresh(7, 1000, 0);
        let InitStep::Write(next) = init(Some(&m), (-1, -1), 2000, 5).unwrap() else {
            panic!("expected a write");
        };
        assert_eq!(
            (next.producer_id, next.epoch, next.timeout_ms),
            (7, 1, 2000)
        );
        // The old producer (epoch 0) is fenced from now on.
        assert_eq!(
            add_partitions(&next, 7, 0, &[tp("a", 0)], 6),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            end(&next, 8, 1, true, 6),
            Err(TxnError::InvalidProducerIdMapping)
        );
        // KIP-360: the producer names itself; a stale one is fenced.
        assert!(matches!(
            init(Some(&next), (7, 1), 2000, 7),
            Ok(InitStep::Write(_))
        ));
        assert_eq!(
            init(Some(&next), (7, 0), 2000, 7),
            Err(TxnError::ProducerFenced)
        );
        // An exhausted epoch takes a new producer id.
        let old = TxnMeta {
            epoch: i16::MAX - 1,
            ..next
        };
        assert_eq!(
            init(Some(&old), (-1, -1), 2000, 8),
            Ok(InitStep::NewProducer)
        );
    }

    #[test]
    fn init_during_a_transaction_aborts_it_first_and_the_timeout_does_too() {
        let m = add_partitions(&fresh(7, 1000, 0), 7, 0, &[tp("a", 0)], 100)
            .unwrap()
            .unwrap();
        let InitStep::AbortFirst(a) = init(Some(&m), (-1, -1), 1000, 200).unwrap() else {
            panic!("expected an abort first");
        };
        assert_eq!((a.state, a.epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(
            init(Some(&a), (-1, -1), 1000, 201),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(timed_out(&m, 1100), None, "not past its timeout yet");
        let t = timed_out(&m, 1101).expect("timed out");
        assert_eq!((t.state, t.epoch), (TxnState::PrepareAbort, 1));
        let done = complete(&t, 1200).unwrap();
        assert_eq!(done.state, TxnState::CompleteAbort);
        // The timed-out producer is fenced from its transaction, but may recover (KIP-360)
        // with the epoch it had; a stranger may not.
        assert_eq!(end(&done, 7, 0, true, 1201), Err(TxnError::ProducerFenced));
        let InitStep::Write(back) = init(Some(&done), (7, 0), 1000, 1202).unwrap() else {
            panic!("expected a write");
        };
        assert_eq!((back.epoch, back.last_epoch), (2, -1));
        assert_eq!(
            init(Some(&back), (7, 0), 1000, 1203),
            Err(TxnError::ProducerFenced)
        );
        // A new producer fencing an open transaction leaves no way back for the old one.
        let InitStep::AbortFirst(f) = init(Some(&m), (-1, -1), 1000, 300).unwrap() else {
            panic!("expected an abort first");
        };
        assert_eq!(f.last_epoch, -1);
        assert!(!expired(&done, 1300, 1000));
        assert!(expired(&done, 2201, 1000));
        assert!(
            !expired(&m, 1_000_000, 1000),
            "an open transaction never expires"
        );
    }
}
