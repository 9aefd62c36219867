//! The web console on the admin HTTP listener (`/`): one static page (`index.html`, built into
//! the binary — plain HTML, CSS and JavaScript, nothing to install) that reads two JSON
//! documents and draws brokers, topics and partitions, consumer groups with their lag, and
//! this broker's throughput over time.
//!
//! - `/api/cluster`: from this broker's metadata image and hosted partitions (pure: `cluster`)
//!   — brokers with endpoints, fenced and controller flags, rack; topics with each partition's
//!   leader, replicas, ISR, under-replicated / offline / reassigning flags and its size where
//!   this broker holds a replica; this broker's byte counters, which the page turns into rates.
//! - `/api/groups`: every group in the cluster with state, members and lag per partition, asked
//!   as a Kafka client would (ListGroups on every broker, DescribeGroups and OffsetFetch at the
//!   coordinator, ListOffsets at the leaders — `tools::group`) through this broker's first
//!   listener without TLS or SASL; without one the page says so.
//!
//! Read-only: changing anything stays with the Kafka APIs and `strom` tools until the console's
//! actions can be put behind the authorizer.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::metadata::MetadataImage;
use crate::replica::Partition;
use crate::types::NodeId;

/// The page.
pub const INDEX: &str = include_str!("index.html");

/// `/api/cluster`: the cluster as `image` has it, with what this broker (`me`) knows of the
/// partitions it hosts. Pure.
pub fn cluster(
    image: &MetadataImage,
    me: NodeId,
    controller: Option<NodeId>,
    hosted: &[Arc<Partition>],
) -> Value {
    let local: HashMap<(&str, i32), &Arc<Partition>> = hosted
        .iter()
        .map(|p| ((p.tp().topic.as_str(), p.tp().partition), p))
        .collect();
    let brokers: Vec<Value> = image
        .brokers
        .values()
        .map(|b| {
            json!({
                "id": b.id,
                "endpoints": b.endpoints.iter()
                    .map(|e| format!("{}://{}:{}", e.listener, e.host, e.port))
                    .collect::<Vec<_>>(),
                "fenced": b.fenced,
                "rack": b.rack,
                "controller": controller == Some(b.id),
                "this": b.id == me,
            })
        })
        .collect();
    // Byte counters per topic and in all, in one pass over the hosted partitions.
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut per_topic: HashMap<&str, (u64, u64)> = HashMap::new();
    for p in hosted {
        let (bin, _, bout) = p.traffic();
        bytes_in += bin;
        bytes_out += bout;
        let t = per_topic.entry(p.tp().topic.as_str()).or_default();
        t.0 += bin;
        t.1 += bout;
    }
    let topics: Vec<Value> = image
        .topics
        .values()
        .map(|t| {
            let moving = image.reassignments.get(&t.id);
            let partitions: Vec<Value> = t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let here = local.get(&(t.name.as_str(), i as i32));
                    json!({
                        "partition": i,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "under_replicated": p.isr.len() < p.replicas.len(),
                        "offline": p.leader < 0,
                        "reassigning": moving.is_some_and(|m| m.contains_key(&(i as i32))),
                        "size_bytes": here.map(|p| p.size_bytes()),
                        "high_watermark": here.map(|p| p.high_watermark()),
                    })
                })
                .collect();
            let (tin, tout) = per_topic.get(t.name.as_str()).copied().unwrap_or((0, 0));
            json!({
                "name": t.name,
                "id": t.id.0.to_string(),
                "internal": t.name.starts_with("__"),
                "configs": t.configs,
                "partitions": partitions,
                "bytes_in": tin,
                "bytes_out": tout,
            })
        })
        .collect();
    json!({
        "cluster_id": image.cluster_id,
        "this_broker": me,
        "controller": controller,
        "brokers": brokers,
        "topics": topics,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
    })
}

/// `/api/groups`, asked through `bootstrap` (blocking: run it off the async threads).
pub fn groups(bootstrap: Option<&str>) -> Value {
    let Some(bootstrap) = bootstrap else {
        return json!({
            "error": "this broker has no listener without TLS or SASL for the console to ask through",
            "groups": [],
        });
    };
    let listed = match crate::tools::group::all_groups(bootstrap) {
        Ok(l) => l,
        Err(e) => return json!({ "error": e.to_string(), "groups": [] }),
    };
    let groups: Vec<Value> = listed
        .keys()
        .map(|g| match crate::tools::group::detail(bootstrap, g) {
            Ok(d) => {
                let lag: i64 = d.partitions.iter().filter_map(|p| p.lag).sum();
                let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("lag".into(), json!(lag));
                }
                v
            }
            Err(e) => json!({ "group": g, "error": e.to_string() }),
        })
        .collect();
    json!({ "groups": groups })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::{BrokerRegistration, Endpoint, MetadataRecord};
    use crate::types::TopicId;

    #[test]
    fn the_cluster_document_shows_brokers_partitions_and_their_state() {
        let mut img = MetadataImage::default();
        for id in 1..=3 {
            img = img
                .apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                    id,
                    incarnation: uuid::Uuid::from_u128(id as u128),
                    endpoints: vec![Endpoint {
                        listener: "PLAINTEXT".into(),
                        host: "h".into(),
                        port: 9000 + id as u16,
                    }],
                    rack: None,
                    fenced: id == 3,
                }))
                .0;
        }
        let id = TopicId(uuid::Uuid::from_u128(7));
        img = img
            .apply(&MetadataRecord::CreateTopic {
                name: "t".into(),
                id,
                assignments: vec![vec![1, 2], vec![2, 3]],
                configs: BTreeMap::new(),
            })
            .0;
        img = img
            .apply(&MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 1,
                leader: 2,
                isr: vec![2],
                leader_epoch: 0,
                partition_epoch: 1,
            })
            .0;
        let doc = cluster(&img, 1, Some(2), &[]);
        assert_eq!(doc["brokers"].as_array().map(Vec::len), Some(3));
        assert_eq!(doc["brokers"][1]["controller"], true);
        assert_eq!(doc["brokers"][2]["fenced"], true);
        assert_eq!(doc["brokers"][0]["endpoints"][0], "PLAINTEXT://h:9001");
        let parts = &doc["topics"][0]["partitions"];
        assert_eq!(parts[0]["leader"], 1);
        assert_eq!(parts[0]["under_replicated"], false);
        assert_eq!(parts[1]["under_replicated"], true);
        assert_eq!(parts[1]["isr"], json!([2]));
        assert!(parts[0]["size_bytes"].is_null(), "not hosted here");
    }
}
