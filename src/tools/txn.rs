//! `strom txn list` and `strom txn describe ID`: what Kafka's `kafka-transactions.sh list` and
//! `describe` show — every transactional id with its producer and state (ListTransactions to
//! every broker, each answering for the ids it coordinates), and one id's open transaction
//! (DescribeTransactions to its coordinator).

use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListTransactionsRequest, ListTransactionsResponse, TransactionalId,
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
