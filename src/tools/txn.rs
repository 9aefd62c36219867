//! `strom txn list`, `describe ID` and `abort`: what Kafka's `kafka-transactions.sh` of the
//! same names do — every transactional id with its producer and state (ListTransactions to
//! every broker, each answering for the ids it coordinates), one id's open transaction
//! (DescribeTransactions to its coordinator), and aborting a transaction left open on a
//! partition (a hanging one: its producer found with DescribeProducers on the partition's
//! leader, then an abort marker written there with WriteTxnMarkers — which strom takes only
//! on the inter-broker listener, with CLUSTER_ACTION, so bootstrap through that listener).

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::group::layout;
use super::Client;

/// `strom txn list`: every transactional id of every broker.
pub fn list(bootstrap: &str) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let brokers = layout(&mut c, Some(&[]))?.brokers;
    let mut rows = Vec::new();
    for (id, addr) in &brokers {
        let r: ListTransactionsResponse = Client::connect(addr)?.call(
            ApiKey::ListTransactions,
            1,
            &ListTransactionsRequest::default().with_duration_filter(-1),
        )?;
        anyhow::ensure!(
            r.error_code == 0,
            "broker {id} cannot list its transactions yet (error {})",
            r.error_code
        );
        for t in r.transaction_states {
            rows.push((
                t.transactional_id.0.to_string(),
                *id,
                t.producer_id.0,
                t.transaction_state.to_string(),
            ));
        }
    }
    rows.sort();
    let mut out = format!(
        "{:<40} {:>11} {:>12} {}\n",
        "TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"
    );
    for (id, coordinator, producer, state) in rows {
        out.push_str(&format!(
            "{id:<40} {coordinator:>11} {producer:>12} {state}\n"
        ));
    }
    Ok(out)
}

/// `strom txn describe ID`: the id's producer, state, timeout and open transaction.
pub fn describe(bootstrap: &str, transactional_id: &str) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let found: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(transactional_id.to_string()))
            .with_key_type(1),
    )?;
    anyhow::ensure!(
        found.error_code == 0,
        "no coordinator for `{transactional_id}`: {}",
        found.error_message.as_deref().unwrap_or("error")
    );
    let addr = format!("{}:{}", found.host.as_str(), found.port);
    let r: DescribeTransactionsResponse = Client::connect(&addr)?.call(
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.to_string()),
        )]),
    )?;
    let t = r
        .transaction_states
        .first()
        .ok_or_else(|| anyhow::anyhow!("the coordinator answered nothing"))?;
    anyhow::ensure!(
        t.error_code != 105,
        "transactional id `{transactional_id}` is not known"
    );
    anyhow::ensure!(t.error_code == 0, "error {} describing it", t.error_code);
    let partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|d| {
            d.partitions
                .iter()
                .map(move |p| format!("{}-{p}", d.topic.0))
        })
        .collect();
    let started = if t.transaction_start_time_ms < 0 {
        "-".to_string()
    } else {
        let age = crate::types::now_ms() - t.transaction_start_time_ms;
        format!("{} ({} ms ago)", t.transaction_start_time_ms, age.max(0))
    };
    Ok(format!(
        "transactional id: {transactional_id}\ncoordinator:      {}\nproducer:         {} epoch {}\nstate:            {}\ntimeout:          {} ms\nstarted:          {started}\npartitions:       {}\n",
        found.node_id.0,
        t.producer_id.0,
        t.producer_epoch,
        t.transaction_state,
        t.transaction_timeout_ms,
        if partitions.is_empty() {
            "-".to_string()
        } else {
            partitions.join(", ")
        }
    ))
}

/// `strom txn abort --topic T --partition P --start-offset O`: aborts the transaction that
/// began at offset O of T-P and is still open there (the producer whose open transaction
/// starts there, by DescribeProducers), with an abort marker at its producer epoch and the
/// partition's last coordinator epoch.
pub fn abort(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    start_offset: i64,
) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let lay = layout(&mut c, Some(&[topic.to_string()]))?;
    let leader = *lay
        .leaders
        .get(&(topic.to_string(), partition))
        .ok_or_else(|| anyhow::anyhow!("{topic}-{partition} does not exist"))?;
    let addr = lay
        .brokers
        .get(&leader)
        .ok_or_else(|| anyhow::anyhow!("{topic}-{partition} has no leader now; try again"))?;
    let mut at = Client::connect(addr)?;
    let name = || TopicName(StrBytes::from_string(topic.to_string()));
    let r: DescribeProducersResponse = at.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(name())
            .with_partition_indexes(vec![partition])]),
    )?;
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow::anyhow!("broker {leader} answered nothing"))?;
    anyhow::ensure!(
        p.error_code == 0,
        "broker {leader} cannot describe {topic}-{partition}: {}",
        super::topic::error_name(p.error_code, None)
    );
    let producer = p
        .active_producers
        .iter()
        .find(|s| s.current_txn_start_offset == start_offset)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no transaction open on {topic}-{partition} starts at offset {start_offset}"
            )
        })?;
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer.producer_id.0))
        .with_producer_epoch(i16::try_from(producer.producer_epoch)?)
        .with_transaction_result(false)
        .with_coordinator_epoch(producer.coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(name())
            .with_partition_indexes(vec![partition])]);
    let r: WriteTxnMarkersResponse = at.call(
        ApiKey::WriteTxnMarkers,
        1,
        &WriteTxnMarkersRequest::default().with_markers(vec![marker]),
    )?;
    let code = r
        .markers
        .first()
        .and_then(|m| m.topics.first())
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or_else(|| anyhow::anyhow!("broker {leader} answered nothing"))?;
    anyhow::ensure!(
        code == 0,
        "broker {leader} did not write the abort marker: {}{}",
        super::topic::error_name(code, None),
        if code == 31 {
            " (bootstrap through the inter-broker listener, as a principal with CLUSTER_ACTION)"
        } else {
            ""
        }
    );
    Ok(format!(
        "aborted the transaction of producer {} (epoch {}) that began at offset {start_offset} of {topic}-{partition}\n",
        producer.producer_id.0, producer.producer_epoch
    ))
}
