//! `strom topic create|list|describe|alter-config|add-partitions|delete`: topics as Kafka's
//! `kafka-topics` and `kafka-configs` tools handle them, over the Kafka protocol to any broker
//! (admin writes are forwarded to the controller by the broker). Human tables by default,
//! `--json` for scripts.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::Client;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Kafka's name for an error code, for messages.
pub(super) fn error_name(code: i16, message: Option<&StrBytes>) -> String {
    let name = kafka_protocol::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"));
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{name}: {m}"),
        None => name,
    }
}

/// The one result of an admin call about `name`: Ok, or an error saying what could not be
/// done (`doing`) and Kafka's name for why.
fn one_result(
    first: Option<(i16, Option<&StrBytes>)>,
    name: &str,
    doing: &str,
) -> anyhow::Result<()> {
    let (code, message) = first.ok_or_else(|| anyhow::anyhow!("no answer for {name}"))?;
    anyhow::ensure!(
        code == 0,
        "cannot {doing} {name}: {}",
        error_name(code, message)
    );
    Ok(())
}

/// `name=value` pairs.
fn pairs(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("`{kv}` is not name=value"))
        })
        .collect()
}

/// `strom topic create`: -1 partitions or replication factor take the broker's defaults.
pub fn create(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[String],
) -> anyhow::Result<String> {
    let configs = pairs(configs)?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            )]);
    let r: CreateTopicsResponse =
        Client::connect(bootstrap)?.call(ApiKey::CreateTopics, 7, &req)?;
    let t = r
        .topics
        .first()
        .ok_or_else(|| anyhow::anyhow!("no answer for {name}"))?;
    anyhow::ensure!(
        t.error_code == 0,
        "cannot create {name}: {}",
        error_name(t.error_code, t.error_message.as_ref())
    );
    Ok(format!(
        "created {name}: {} partitions, replication factor {}\n",
        t.num_partitions, t.replication_factor
    ))
}

/// One partition as Metadata shows it: (partition, leader, leader epoch, replicas, ISR).
type PartitionInfo = (i32, i32, i32, Vec<i32>, Vec<i32>);

/// One topic as Metadata shows it.
struct TopicInfo {
    name: String,
    id: String,
    internal: bool,
    /// By partition.
    partitions: Vec<PartitionInfo>,
}

fn metadata(c: &mut Client, topics: Option<&[&str]>) -> anyhow::Result<Vec<TopicInfo>> {
    let md = super::group::fetch_metadata(c, topics)?;
    let mut out = Vec::new();
    for t in md.topics {
        let name = t.name.map(|n| n.to_string()).unwrap_or_default();
        anyhow::ensure!(
            t.error_code == 0,
            "{name}: {}",
            error_name(t.error_code, None)
        );
        let mut partitions: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.leader_id.0,
                    p.leader_epoch,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                    p.isr_nodes.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        partitions.sort_by_key(|p| p.0);
        out.push(TopicInfo {
            name,
            id: t.topic_id.to_string(),
            internal: t.is_internal,
            partitions,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `strom topic list`: every topic with its partition count and replication factor.
pub fn list(bootstrap: &str, as_json: bool) -> anyhow::Result<String> {
    let topics = metadata(&mut Client::connect(bootstrap)?, None)?;
    if as_json {
        let v: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "id": t.id,
                    "partitions": t.partitions.len(),
                    "replication_factor": t.partitions.first().map_or(0, |p| p.3.len()),
                    "internal": t.internal,
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut out = format!(
        "{:<40} {:>10} {:>12}\n",
        "TOPIC", "PARTITIONS", "REPLICATION"
    );
    for t in &topics {
        out.push_str(&format!(
            "{:<40} {:>10} {:>12}\n",
            t.name,
            t.partitions.len(),
            t.partitions.first().map_or(0, |p| p.3.len())
        ));
    }
    Ok(out)
}

/// The topic's configs set on it (not defaults): name → value.
fn topic_configs(c: &mut Client, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configuration_keys(None)]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req)?;
    let res = r
        .results
        .first()
        .ok_or_else(|| anyhow::anyhow!("no configs for {name}"))?;
    anyhow::ensure!(
        res.error_code == 0,
        "DescribeConfigs {name}: {}",
        error_name(res.error_code, res.error_message.as_ref())
    );
    // Config source 1: DYNAMIC_TOPIC_CONFIG, set on the topic itself.
    Ok(res
        .configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            )
        })
        .collect())
}

/// `strom topic describe`: partitions with leader, epoch, replicas and ISR (under-replicated
/// ones marked), and the configs set on the topic.
pub fn describe(bootstrap: &str, name: &str, as_json: bool) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let topic = metadata(&mut c, Some(&[name]))?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no topic {name}"))?;
    let configs = topic_configs(&mut c, name)?;
    if as_json {
        let v = json!({
            "name": topic.name,
            "id": topic.id,
            "internal": topic.internal,
            "configs": configs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "partitions": topic.partitions.iter().map(|(p, leader, epoch, replicas, isr)| json!({
                "partition": p, "leader": leader, "leader_epoch": epoch,
                "replicas": replicas, "isr": isr,
            })).collect::<Vec<_>>(),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut out = format!(
        "topic {}  id {}  partitions {}{}\n",
        topic.name,
        topic.id,
        topic.partitions.len(),
        if topic.internal { "  (internal)" } else { "" }
    );
    for (k, v) in &configs {
        out.push_str(&format!("  {k}={v}\n"));
    }
    out.push_str(&format!(
        "{:>9} {:>7} {:>6} {:<16} {:<16}\n",
        "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"
    ));
    for (p, leader, epoch, replicas, isr) in &topic.partitions {
        let under = if isr.len() < replicas.len() {
            "  under-replicated"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>9} {:>7} {:>6} {:<16} {:<16}{under}\n",
            p,
            leader,
            epoch,
            ids(replicas),
            ids(isr)
        ));
    }
    Ok(out)
}

/// `strom topic alter-config`: sets and deletes topic configs (IncrementalAlterConfigs).
pub fn alter_config(
    bootstrap: &str,
    name: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<String> {
    anyhow::ensure!(
        !set.is_empty() || !delete.is_empty(),
        "nothing to change: --set name=value or --delete name"
    );
    let mut configs: Vec<AlterableConfig> = pairs(set)?
        .into_iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(s(&k))
                .with_config_operation(0)
                .with_value(Some(s(&v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(s(k))
            .with_config_operation(1)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let r: IncrementalAlterConfigsResponse =
        Client::connect(bootstrap)?.call(ApiKey::IncrementalAlterConfigs, 1, &req)?;
    let first = r.responses.first();
    one_result(
        first.map(|x| (x.error_code, x.error_message.as_ref())),
        name,
        "change",
    )?;
    Ok(format!("changed the configs of {name}\n"))
}

/// `strom topic add-partitions`: grows the topic to `total` partitions.
pub fn add_partitions(bootstrap: &str, name: &str, total: i32) -> anyhow::Result<String> {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(s(name)))
            .with_count(total)]);
    let r: CreatePartitionsResponse =
        Client::connect(bootstrap)?.call(ApiKey::CreatePartitions, 3, &req)?;
    let first = r.results.first();
    one_result(
        first.map(|x| (x.error_code, x.error_message.as_ref())),
        name,
        "grow",
    )?;
    Ok(format!("{name} now has {total} partitions\n"))
}

/// `strom topic delete`.
pub fn delete(bootstrap: &str, name: &str) -> anyhow::Result<String> {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(s(name))))
        ]);
    let r: DeleteTopicsResponse =
        Client::connect(bootstrap)?.call(ApiKey::DeleteTopics, 6, &req)?;
    let first = r.responses.first();
    one_result(
        first.map(|x| (x.error_code, x.error_message.as_ref())),
        name,
        "delete",
    )?;
    Ok(format!("deleted {name}\n"))
}
