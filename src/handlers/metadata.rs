//! Metadata: brokers (with the endpoints of the listener the client came in on), topics,
//! partitions, leaders and ISR from the current image; auto-creates missing topics when
//! `auto.create.topics.enable` and the request both allow it. An all-topics answer is kept
//! encoded per listener ([`AllTopics`]) until the image or the controller changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use super::{broker, errors, s, topic_name, Context};
use crate::controller::{AdminDone, AdminError, AdminOp, NewTopic, MAX_PARTITIONS_PER_REQUEST};
use crate::metadata::{MetadataImage, TopicImage};
use crate::protocol::{self, FrameError, Part, Reply};
use crate::types::{NodeId, TopicId};

/// `i32::MIN`: authorized operations were not requested.
const OPS_OMITTED: i32 = i32::MIN;

/// The last all-topics answers of one listener, encoded, one per request version. Clients ask
/// for every topic at start and on each refresh (librdkafka: every
/// `topic.metadata.refresh.interval.ms`, and after errors); with many topics, building the
/// answer is most of the request's cost, and it only changes with the image (brokers, topics,
/// leaders, ISR), the controller, or the version.
#[derive(Default)]
pub struct AllTopics(Mutex<Vec<Encoded>>);

struct Encoded {
    image: Arc<MetadataImage>,
    controller: i32,
    version: i16,
    /// A whole response frame; its correlation id is the first asker's.
    frame: Bytes,
}

impl AllTopics {
    fn get(&self, image: &Arc<MetadataImage>, controller: i32, version: i16) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|e| {
                Arc::ptr_eq(&e.image, image) && e.controller == controller && e.version == version
            })
            .map(|e| e.frame.clone())
    }

    /// Keeps `frame`, dropping answers built from an older image or controller.
    fn put(&self, image: Arc<MetadataImage>, controller: i32, version: i16, frame: Bytes) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|e| Arc::ptr_eq(&e.image, &image) && e.controller == controller);
        if kept.iter().all(|e| e.version != version) {
            kept.push(Encoded {
                image,
                controller,
                version,
                frame,
            });
        }
    }
}

/// `frame` answered to correlation id `corr`: a fresh size and id, then the kept bytes.
fn with_correlation(frame: Bytes, corr: i32) -> Reply {
    let mut head = BytesMut::with_capacity(8);
    head.put_slice(&frame[..4]);
    head.put_i32(corr);
    Reply::Spliced(vec![
        Part::Bytes(head.freeze()),
        Part::Bytes(frame.slice(8..)),
    ])
}

/// Answers a Metadata request with a whole response frame.
pub async fn reply(
    ctx: &Context,
    req: MetadataRequest,
    version: i16,
    corr: i32,
) -> Result<Reply, FrameError> {
    let key = ApiKey::Metadata;
    let Some(wanted) = wanted(&req, version) else {
        let image = ctx.controller.image();
        let controller = ctx.controller.controller_id().unwrap_or(-1);
        // With ACLs the answer depends on who asks, and with a leader found gone on what this
        // node saw: not shared.
        let gone = ctx.replicas.unreachable_leaders();
        let shared = ctx.config.authorizer.is_none() && gone.is_empty();
        if let Some(frame) = ctx
            .all_topics
            .get(&image, controller, version)
            .filter(|_| shared)
        {
            return Ok(with_correlation(frame, corr));
        }
        let resp = answer(ctx, &image, controller, None, &BTreeMap::new(), &gone);
        let frame = protocol::encode_response(key, version, corr, &resp)?;
        if shared {
            ctx.all_topics
                .put(image, controller, version, frame.clone());
        }
        return Ok(frame.into());
    };
    let resp = named(ctx, &req, version, wanted).await;
    protocol::encode_response(key, version, corr, &resp).map(Reply::from)
}

/// The topics asked for, by name or id; `None`: all of them (v0 with an empty list, v1+ with
/// null).
fn wanted(req: &MetadataRequest, version: i16) -> Option<Vec<(Option<String>, TopicId)>> {
    match &req.topics {
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
    }
}

/// Most topics one Metadata request auto-creates (in one metadata command).
const AUTO_CREATE_BATCH: usize = 1_000;

/// Named topics, auto-creating the missing ones where allowed.
async fn named(
    ctx: &Context,
    req: &MetadataRequest,
    version: i16,
    list: Vec<(Option<String>, TopicId)>,
) -> MetadataResponse {
    let mut image = ctx.controller.image();
    let allow_create =
        ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut errors_by_name: BTreeMap<String, i16> = BTreeMap::new();
    {
        // Every missing name in one command, within Kafka's bound on partitions per request
        // and `AUTO_CREATE_BATCH` topics (one Raft entry must stay well inside the transport's
        // message limit); names past either are answered LEADER_NOT_AVAILABLE, which clients
        // retry.
        let mut budget = MAX_PARTITIONS_PER_REQUEST;
        let mut wanted = Vec::new();
        for (name, _) in &list {
            let Some(name) = name else { continue };
            // The offsets topic is created by the group coordinator, with its own settings.
            if image.topic(name).is_some() || !allow_create || super::is_internal(name) {
                continue;
            }
            if !ctx.may_on_cluster(Operation::Create)
                && !ctx.may(Operation::Create, acl::TOPIC, name)
            {
                continue;
            }
            if wanted.iter().any(|t: &NewTopic| t.name == *name) {
                continue;
            }
            if budget < ctx.config.num_partitions || wanted.len() >= AUTO_CREATE_BATCH {
                errors_by_name.insert(name.clone(), Refusal::LeaderNotAvailable.code());
                continue;
            }
            budget -= ctx.config.num_partitions;
            wanted.push(NewTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
            });
        }
        if !wanted.is_empty() {
            let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
            let results = match ctx
                .controller
                .submit(AdminOp::CreateTopics { topics: wanted })
                .await
            {
                Ok(AdminDone::Topics(results)) => results,
                Ok(_) => vec![Err(AdminError::NoQuorum("unexpected answer".into())); names.len()],
                Err(e) => vec![Err(e); names.len()],
            };
            for (name, result) in names.into_iter().zip(results) {
                match result {
                    Ok(id) => tracing::info!(topic = %name, %id, "auto-created topic"),
                    Err(AdminError::TopicAlreadyExists(_)) => {}
                    Err(e) => {
                        let code = match e {
                            AdminError::InvalidTopic(_) => Refusal::InvalidTopic.code(),
                            _ => Refusal::LeaderNotAvailable.code(),
                        };
                        errors_by_name.insert(name, code);
                    }
                }
            }
            image = ctx.controller.image();
        }
    }
    let controller = ctx.controller.controller_id().unwrap_or(-1);
    let gone = ctx.replicas.unreachable_leaders();
    let mut resp = answer(ctx, &image, controller, Some(&list), &errors_by_name, &gone);
    if version < 12 {
        // Topic names are not nullable in answers before v12, and Kafka refuses lookups by id
        // there (v10-11 requests may carry them) with INVALID_REQUEST.
        for t in resp.topics.iter_mut().filter(|t| t.name.is_none()) {
            t.name = Some(topic_name(""));
            t.error_code = Refusal::InvalidRequest.code();
        }
    }
    resp
}

/// The response from one image: all topics (`wanted` is `None`) or the listed ones, with
/// `errors_by_name` for those that could not be created.
fn answer(
    ctx: &Context,
    image: &MetadataImage,
    controller: i32,
    wanted: Option<&[(Option<String>, TopicId)]>,
    errors_by_name: &BTreeMap<String, i16>,
    gone: &HashSet<NodeId>,
) -> MetadataResponse {
    let topics: Vec<MetadataResponseTopic> = match wanted {
        // Topics the principal may not DESCRIBE are left out, or answered
        // TOPIC_AUTHORIZATION_FAILED when named (whether they exist or not).
        None => image
            .topics
            .values()
            .filter(|t| ctx.may(Operation::Describe, acl::TOPIC, &t.name))
            .map(|t| topic_entry(image, t, gone))
            .collect(),
        Some(list) => list
            .iter()
            .map(|(name, id)| {
                let found = match name {
                    Some(n) => image.topic(n),
                    None => image.topic_by_id(*id),
                };
                let hidden = match (name, found) {
                    (_, Some(t)) => !ctx.may(Operation::Describe, acl::TOPIC, &t.name),
                    (Some(n), None) => !ctx.may(Operation::Describe, acl::TOPIC, n),
                    (None, None) => false,
                };
                if hidden {
                    return MetadataResponseTopic::default()
                        .with_error_code(Refusal::TopicAuthorizationFailed.code())
                        .with_name(name.as_deref().map(topic_name))
                        .with_topic_id(id.0)
                        .with_topic_authorized_operations(OPS_OMITTED);
                }
                match found {
                    Some(t) => topic_entry(image, t, gone),
                    None => {
                        let code = name
                            .as_ref()
                            .and_then(|n| errors_by_name.get(n).copied())
                            .unwrap_or(if name.is_some() {
                                Refusal::UnknownTopicOrPartition.code()
                            } else {
                                Refusal::UnknownTopicId.code()
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
        .with_brokers(brokers(ctx, image))
        .with_cluster_id(Some(s(image.cluster_id.clone())))
        .with_controller_id(broker(controller))
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

/// One topic's entry. A partition whose leader is in `gone` (this node's fetchers found it gone;
/// the controller has not moved its partitions yet) is answered without a leader, so clients
/// ask again shortly rather than retry a dead broker.
fn topic_entry(
    image: &MetadataImage,
    t: &TopicImage,
    gone: &HashSet<NodeId>,
) -> MetadataResponseTopic {
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
            let leader = if gone.contains(&p.leader) {
                -1
            } else {
                p.leader
            };
            let code = if leader < 0 {
                Refusal::LeaderNotAvailable.code()
            } else {
                errors::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(i as i32)
                .with_leader_id(broker(leader))
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
