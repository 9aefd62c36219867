//! The sweep's transaction cases: each version of each transaction API gets a transactional id
//! of its own, initialized on its coordinator (found with FindCoordinator key type 1), and its
//! call runs there.

use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;

use super::{s, tn, Sweep, TOPIC};
use crate::harness::wait_until;

/// The coordinator of `key` (type 0: group, 1: transactional id).
fn coordinator(sw: &mut Sweep, key: &str, key_type: i8) -> i32 {
    let mut node = -1;
    wait_until("a coordinator", Duration::from_secs(30), || {
        let req = FindCoordinatorRequest::default()
            .with_key(s(key))
            .with_key_type(key_type);
        match sw.call(1, ApiKey::FindCoordinator, 3, "setup", &req) {
            ResponseKind::FindCoordinator(r) if r.error_code == 0 => {
                node = r.node_id.0;
                true
            }
            _ => false,
        }
    });
    node
}

/// A producer of transactional id `id` initialized on its coordinator: (node, id, epoch).
fn init(sw: &mut Sweep, id: &str) -> (i32, ProducerId, i16) {
    let node = coordinator(sw, id, 1);
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000);
    let mut got = (ProducerId(-1), -1);
    wait_until(
        "an initialized producer",
        Duration::from_secs(30),
        || match sw.call(node, ApiKey::InitProducerId, 4, "setup", &req) {
            ResponseKind::InitProducerId(r) if r.error_code == 0 => {
                got = (r.producer_id, r.producer_epoch);
                true
            }
            _ => false,
        },
    );
    (node, got.0, got.1)
}

fn topics(names: &[(&str, i32)]) -> Vec<AddPartitionsToTxnTopic> {
    names
        .iter()
        .map(|(t, p)| {
            AddPartitionsToTxnTopic::default()
                .with_name(tn(t))
                .with_partitions(vec![*p])
        })
        .collect()
}

/// Adds TOPIC/0 at the newest producer version, so the transaction is open.
fn open(sw: &mut Sweep, node: i32, id: &str, pid: ProducerId, epoch: i16) {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics(&[(TOPIC, 0)]));
    sw.call(node, ApiKey::AddPartitionsToTxn, 3, "setup", &req);
}

pub(super) fn txn(sw: &mut Sweep, key: ApiKey, v: i16) {
    let id = format!("sweep-{key:?}-{v}");
    let (node, pid, epoch) = init(sw, &id);
    let tid = TransactionalId(s(&id));
    match key {
        ApiKey::AddPartitionsToTxn if v <= 3 => {
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid)
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(topics(&[(TOPIC, 0), ("no-such-topic", 0)]));
            let ResponseKind::AddPartitionsToTxn(r) =
                sw.call(node, key, v, "one unknown topic", &req)
            else {
                panic!("AddPartitionsToTxn v{v}")
            };
            let codes: Vec<i16> = r
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| {
                    t.results_by_partition
                        .iter()
                        .map(|p| p.partition_error_code)
                })
                .collect();
            assert_eq!(
                codes,
                [55, 3],
                "OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION"
            );
            let ok = req.with_v3_and_below_topics(topics(&[(TOPIC, 0), (TOPIC, 1)]));
            sw.call(node, key, v, "known partitions", &ok);
        }
        ApiKey::AddPartitionsToTxn => {
            let txn = AddPartitionsToTxnTransaction::default()
                .with_transactional_id(tid)
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_topics(topics(&[(TOPIC, 0)]));
            let verify = AddPartitionsToTxnRequest::default()
                .with_transactions(vec![txn.clone().with_verify_only(true)]);
            let code = |r: &ResponseKind| {
                let ResponseKind::AddPartitionsToTxn(r) = r else {
                    panic!("AddPartitionsToTxn v{v}")
                };
                r.results_by_transaction[0].topic_results[0].results_by_partition[0]
                    .partition_error_code
            };
            let r = sw.call(node, key, v, "verify only, not added", &verify);
            // v5 added TRANSACTION_ABORTABLE (KIP-890); v4's senders knew INVALID_TXN_STATE.
            assert_eq!(code(&r), if v >= 5 { 120 } else { 48 }, "v{v}");
            let req = AddPartitionsToTxnRequest::default().with_transactions(vec![txn]);
            sw.call(node, key, v, "batched add", &req);
            let r = sw.call(node, key, v, "verify only, added", &verify);
            assert_eq!(code(&r), 0, "v{v}");
        }
        ApiKey::AddOffsetsToTxn => {
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid)
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("sweep-txn-group")));
            let ResponseKind::AddOffsetsToTxn(r) = sw.call(node, key, v, "a group", &req) else {
                panic!("AddOffsetsToTxn v{v}")
            };
            assert_eq!(r.error_code, 0);
        }
        ApiKey::EndTxn => {
            open(sw, node, &id, pid, epoch);
            let req = EndTxnRequest::default()
                .with_transactional_id(tid)
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(true);
            let ResponseKind::EndTxn(r) = sw.call(node, key, v, "commit", &req) else {
                panic!("EndTxn v{v}")
            };
            assert_eq!(r.error_code, 0);
            let stale = req.with_producer_epoch(epoch - 1);
            sw.call(node, key, v, "a fenced epoch", &stale);
        }
        ApiKey::TxnOffsetCommit => {
            let group = format!("sweep-txn-{v}");
            let at = coordinator(sw, &group, 0);
            // The group's offsets partition joins the transaction first, as clients do (the
            // commit is verified against it: KIP-890).
            let add = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid.clone())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s(&group)));
            let ResponseKind::AddOffsetsToTxn(r) =
                sw.call(node, ApiKey::AddOffsetsToTxn, 3, "setup", &add)
            else {
                panic!("AddOffsetsToTxn")
            };
            assert_eq!(r.error_code, 0);
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(tid)
                .with_group_id(GroupId(s(&group)))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_member_id(s(""))
                .with_topics(vec![
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(tn(TOPIC))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1)]),
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(tn("no-such-topic"))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()]),
                ]);
            let ResponseKind::TxnOffsetCommit(r) = sw.call(at, key, v, "one unknown", &req) else {
                panic!("TxnOffsetCommit v{v}")
            };
            let codes: Vec<i16> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect();
            assert_eq!(codes, [0, 3]);
        }
        ApiKey::WriteTxnMarkers => {
            let marker = WritableTxnMarker::default()
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(0)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(tn(TOPIC))
                    .with_partition_indexes(vec![0, 1, 2])]);
            let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
            sw.call(1, key, v, "led and not led partitions", &req);
        }
        ApiKey::DescribeTransactions => {
            let req = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![tid, TransactionalId(s("sweep-unknown"))]);
            sw.call(node, key, v, "known and unknown", &req);
        }
        ApiKey::ListTransactions => {
            let mut req =
                ListTransactionsRequest::default().with_state_filters(vec![s("Empty"), s("Bogus")]);
            if v >= 1 {
                req = req.with_duration_filter(-1);
            }
            let ResponseKind::ListTransactions(r) = sw.call(node, key, v, "filtered", &req) else {
                panic!("ListTransactions v{v}")
            };
            assert_eq!(r.unknown_state_filters, [s("Bogus")]);
            assert!(
                r.transaction_states
                    .iter()
                    .any(|t| t.transactional_id.0.as_str() == id),
                "{:?}",
                r.transaction_states
            );
        }
        other => panic!("{other:?} is no transaction API"),
    }
}
