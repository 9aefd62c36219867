//! Metadata: brokers (with the endpoints of the listener the client came in on), topics,
//! partitions, leaders and ISR from the current image; auto-creates missing topics when
//! `auto.create.topics.enable` and the request both allow it.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use super::{broker, errors, s, topic_name, Context};
use crate::controller::{AdminError, NewTopic};
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{MetadataImage, TopicImage};
use crate::types::TopicId;

/// `i32::MIN`: authorized operations were not requested.
const OPS_OMITTED: i32 = i32::MIN;

pub async fn handle(ctx: &Context, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut image = ctx.controller.image();
    // v0 with an empty list, and v1+ with null, mean "all topics".
    let wanted: Option<Vec<(Option<String>, TopicId)>> = match &req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(
            list.iter()
                .map(|t| {
                    (
                        t.name.as_ref().map(|n| n.0.to_string()),
                        TopicId(t.topic_id),
                    )
                })
                .collect(),
        ),
    };
    let allow_create =
        ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);

    let mut errors_by_name: BTreeMap<String, i16> = BTreeMap::new();
    if let Some(list) = &wanted {
        let mut created = false;
        for (name, _) in list {
            let Some(name) = name else { continue };
            // The offsets topic is created by the group coordinator, with its own settings.
            if image.topic(name).is_some() || !allow_create || name == OFFSETS_TOPIC {
                continue;
            }
            let t = NewTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
            };
            match ctx.controller.create_topic(t).await {
                Ok(id) => {
                    tracing::info!(topic = %name, %id, "auto-created topic");
                    created = true;
                }
                Err(AdminError::TopicAlreadyExists(_)) => created = true,
                Err(e) => {
                    let code = match e {
                        AdminError::InvalidTopic(_) => E::InvalidTopicException.code(),
                        _ => E::LeaderNotAvailable.code(),
                    };
                    errors_by_name.insert(name.clone(), code);
                }
            }
        }
        if created {
            image = ctx.controller.image();
        }
    }

    let topics: Vec<MetadataResponseTopic> = match &wanted {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(&image, t))
            .collect(),
        Some(list) => list
            .iter()
            .map(|(name, id)| {
                let found = match name {
                    Some(n) => image.topic(n),
                    None => image.topic_by_id(*id),
                };
                match found {
                    Some(t) => topic_entry(&image, t),
                    None => {
                        let code = name
                            .as_ref()
                            .and_then(|n| errors_by_name.get(n).copied())
                            .unwrap_or(if name.is_some() {
                                E::UnknownTopicOrPartition.code()
                            } else {
                                E::UnknownTopicId.code()
                            });
                        MetadataResponseTopic::default()
                            .with_error_code(code)
                            .with_name(name.as_deref().map(topic_name))
                            .with_topic_id(id.0)
                            .with_topic_authorized_operations(OPS_OMITTED)
                    }
                }
            })
            .collect(),
    };

    MetadataResponse::default()
        .with_brokers(brokers(ctx, &image))
        .with_cluster_id(Some(s(image.cluster_id.clone())))
        .with_controller_id(broker(ctx.controller.controller_id().unwrap_or(-1)))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_OMITTED)
}

/// Live brokers with an endpoint on the client's listener.
fn brokers(ctx: &Context, image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let ep = b.endpoints.iter().find(|e| e.listener == ctx.listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(broker(b.id))
                    .with_host(s(ep.host.clone()))
                    .with_port(ep.port as i32)
                    .with_rack(b.rack.clone().map(s)),
            )
        })
        .collect()
}

fn topic_entry(image: &MetadataImage, t: &TopicImage) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offline: Vec<_> = p
                .replicas
                .iter()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .map(|r| broker(*r))
                .collect();
            let code = if p.leader < 0 {
                E::LeaderNotAvailable.code()
            } else {
                errors::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(i as i32)
                .with_leader_id(broker(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| broker(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| broker(*r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id.0)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPS_OMITTED)
}
