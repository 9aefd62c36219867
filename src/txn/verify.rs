//! KIP-890 part 1, both ends. A partition leader about to append the first batch of a
//! transaction asks the coordinator whether the partition is in that producer's transaction
//! (`verify_for_leader`): itself when it leads the id's `__transaction_state` partition, else
//! with AddPartitionsToTxn v5 `verify_only` to the broker that does. The coordinator answers
//! from the id's state (`verify`, over `state::verify`). Without this a batch that arrives
//! after its transaction ended — or one a client sends without AddPartitionsToTxn — would open
//! a transaction no coordinator knows of, and hold the last stable offset (and every
//! `read_committed` reader) forever.

use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::state::{self, TxnError};
use super::{Coordinator, TXN_TOPIC};
use crate::group::partition_for;

/// How long a leader waits for the coordinator's answer; the producer is told to retry after.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// The AddPartitionsToTxn version a leader asks with (v5 knows TRANSACTION_ABORTABLE).
const VERIFY_VERSION: i16 = 5;

impl Coordinator {
    /// The coordinator's side: for each partition, whether it is in the producer's open
    /// transaction (see `state::verify`).
    pub async fn verify(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, TxnError> {
        let (_, cell) = self
            .existing(transactional_id, TxnError::InvalidProducerIdMapping)
            .await?;
        let guard = cell.lock().await;
        let meta = guard.as_ref().ok_or(TxnError::InvalidProducerIdMapping)?;
        state::verify(meta, producer.0, producer.1, partitions)
    }

    /// The leader's side: asks the id's coordinator about `partitions`; per partition, `Ok`
    /// when it is in the producer's transaction.
    pub async fn verify_for_leader(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Vec<Result<(), TxnError>> {
        let answer = match self.coordinator_of(transactional_id) {
            Err(e) => Err(e),
            Ok(node) if node == self.config.node_id => self
                .verify(transactional_id, producer, partitions)
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|yes| {
                            if yes {
                                Ok(())
                            } else {
                                Err(TxnError::NotInTransaction)
                            }
                        })
                        .collect()
                }),
            Ok(node) => {
                self.verify_remote(node, transactional_id, producer, partitions)
                    .await
            }
        };
        match answer {
            Ok(each) => each,
            Err(e) => vec![Err(e); partitions.len()],
        }
    }

    /// The broker leading the id's `__transaction_state` partition, as this node's image has
    /// it (a leader verifying does not create the topic: with no coordinator there is no
    /// transaction; FindCoordinator does, `coordinator_for`).
    pub(super) fn coordinator_of(&self, transactional_id: &str) -> Result<i32, TxnError> {
        let image = self.controller.image();
        let topic = image
            .topic(TXN_TOPIC)
            .ok_or(TxnError::CoordinatorNotAvailable)?;
        let p = partition_for(transactional_id, topic.partitions.len() as i32);
        match topic.partitions.get(p as usize) {
            Some(pi) if pi.leader >= 0 => Ok(pi.leader),
            _ => Err(TxnError::CoordinatorNotAvailable),
        }
    }

    async fn verify_remote(
        &self,
        node: i32,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), TxnError>>, TxnError> {
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, p) in partitions {
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(*p),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    transactional_id.to_string(),
                )))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_verify_only(true)
                .with_topics(topics),
        ]);
        let resp: AddPartitionsToTxnResponse = self
            .call(
                node,
                ApiKey::AddPartitionsToTxn,
                VERIFY_VERSION,
                &req,
                VERIFY_TIMEOUT,
            )
            .await
            .map_err(|e| {
                tracing::debug!(node, error = %e, "transaction verification failed");
                TxnError::CoordinatorNotAvailable
            })?;
        if resp.error_code != 0 {
            return Err(from_peer(resp.error_code));
        }
        let answered = |topic: &str, p: i32| {
            resp.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| &t.results_by_partition)
                .find(|r| r.partition_index == p)
                .map(|r| r.partition_error_code)
        };
        Ok(partitions
            .iter()
            .map(|(topic, p)| match answered(topic, *p) {
                Some(0) => Ok(()),
                Some(code) => Err(from_peer(code)),
                None => Err(TxnError::CoordinatorNotAvailable),
            })
            .collect())
    }
}

/// A coordinator's error code as the typed error it stands for. Anything a leader cannot act
/// on counts as "not available now", which the producer retries.
fn from_peer(code: i16) -> TxnError {
    match E::try_from_code(code) {
        Some(E::TransactionAbortable) => TxnError::NotInTransaction,
        Some(E::InvalidTxnState | E::ClusterAuthorizationFailed) => TxnError::InvalidTxnState,
        Some(E::ProducerFenced | E::InvalidProducerEpoch) => TxnError::ProducerFenced,
        Some(E::InvalidProducerIdMapping) => TxnError::InvalidProducerIdMapping,
        Some(E::ConcurrentTransactions) => TxnError::ConcurrentTransactions,
        Some(E::NotCoordinator) => TxnError::NotCoordinator,
        Some(E::CoordinatorLoadInProgress) => TxnError::LoadInProgress,
        _ => TxnError::CoordinatorNotAvailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_codes_read_back_as_their_errors() {
        for e in [
            TxnError::NotInTransaction,
            TxnError::InvalidTxnState,
            TxnError::ProducerFenced,
            TxnError::InvalidProducerIdMapping,
            TxnError::ConcurrentTransactions,
            TxnError::NotCoordinator,
            TxnError::LoadInProgress,
        ] {
            assert_eq!(
                from_peer(crate::handlers::errors::txn_verify_answer(
                    &e,
                    VERIFY_VERSION
                )),
                e
            );
        }
        assert_eq!(from_peer(9999), TxnError::CoordinatorNotAvailable);
    }
}
