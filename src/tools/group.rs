//! `strom group list|describe|reset-offsets`: consumer groups as Kafka's
//! `kafka-consumer-groups` tool shows them, spoken over the Kafka protocol to any broker (the
//! group's coordinator is found with FindCoordinator; end offsets come from partition leaders).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Client;
use crate::group::records::assigned_partitions;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Where a reset moves a group's offsets.
#[derive(Debug, Clone, Copy)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
}

/// Brokers (id → host:port) and, for `topics`, each partition's leader.
pub(super) struct Layout {
    pub(super) brokers: HashMap<i32, String>,
    pub(super) leaders: BTreeMap<(String, i32), i32>,
}

/// Metadata for `topics` (None: every topic), never creating any.
pub(super) fn fetch_metadata<T: AsRef<str>>(
    c: &mut Client,
    topics: Option<&[T]>,
) -> anyhow::Result<MetadataResponse> {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t.as_ref())))))
                .collect()
        }));
    c.call(ApiKey::Metadata, 12, &req)
}

pub(super) fn layout(c: &mut Client, topics: Option<&[String]>) -> anyhow::Result<Layout> {
    let md = fetch_metadata(c, topics)?;
    let brokers = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut leaders = BTreeMap::new();
    for t in &md.topics {
        let Some(name) = &t.name else { continue };
        match t.error_code {
            0 => {}
            3 => anyhow::bail!(
                "topic {} does not exist (create it with `strom topic create {}`)",
                name.as_str(),
                name.as_str()
            ),
            code => anyhow::bail!(
                "topic {}: {}",
                name.as_str(),
                super::topic::error_name(code, None)
            ),
        }
        for p in &t.partitions {
            leaders.insert((name.to_string(), p.partition_index), p.leader_id.0);
        }
    }
    Ok(Layout { brokers, leaders })
}

/// The offset at `timestamp` (-1 latest, -2 earliest) of each partition, asked of its leader.
pub(super) fn offsets_at(
    layout: &Layout,
    partitions: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut by_leader: BTreeMap<i32, Vec<&(String, i32)>> = BTreeMap::new();
    for tp in partitions {
        let leader = layout.leaders.get(tp).copied().unwrap_or(-1);
        by_leader.entry(leader).or_default().push(tp);
    }
    let mut out = HashMap::new();
    for (leader, tps) in by_leader {
        let addr = layout
            .brokers
            .get(&leader)
            .ok_or_else(|| anyhow::anyhow!("no leader for {:?}", tps.first()))?;
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &tps {
            topics.entry(t.as_str()).or_default().push(*p);
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp: ListOffsetsResponse =
            Client::connect(addr)?.call(ApiKey::ListOffsets, 7, &req)?;
        for t in resp.topics {
            for p in t.partitions {
                anyhow::ensure!(
                    p.error_code == 0,
                    "ListOffsets {}-{}: error code {}",
                    t.name.as_str(),
                    p.partition_index,
                    p.error_code
                );
                out.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// A connection to the group's coordinator.
pub(super) fn coordinator(c: &mut Client, group: &str) -> anyhow::Result<Client> {
    for _ in 0..50 {
        let r: FindCoordinatorResponse = c.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s(group)),
        )?;
        match r.error_code {
            0 => return Client::connect(&format!("{}:{}", r.host.as_str(), r.port)),
            // COORDINATOR_NOT_AVAILABLE while the offsets topic is being created: retry.
            15 => std::thread::sleep(std::time::Duration::from_millis(100)),
            code => anyhow::bail!("FindCoordinator for {group}: error code {code}"),
        }
    }
    anyhow::bail!("no coordinator for {group} became available")
}

/// Committed offsets of `group`: (topic, partition) → offset.
pub(super) fn committed(
    coord: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let mut r: OffsetFetchResponse = coord.call(ApiKey::OffsetFetch, 7, &req)?;
    // COORDINATOR_LOAD_IN_PROGRESS while a new coordinator replays its log: wait (10 s at most).
    for _ in 0..100 {
        if r.error_code != 14 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = coord.call(ApiKey::OffsetFetch, 7, &req)?;
    }
    anyhow::ensure!(
        r.error_code == 0,
        "OffsetFetch: error code {}",
        r.error_code
    );
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Every group of every broker: group → (state, protocol type).
pub fn all_groups(bootstrap: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut c = Client::connect(bootstrap)?;
    let layout = layout(&mut c, Some(&[]))?;
    let mut groups = BTreeMap::new();
    for addr in layout.brokers.values() {
        let r: ListGroupsResponse =
            Client::connect(addr)?.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
        for g in r.groups {
            groups.insert(
                g.group_id.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    Ok(groups)
}

/// `strom group list`: every group of every broker, with its state.
pub fn list(bootstrap: &str) -> anyhow::Result<String> {
    let groups = all_groups(bootstrap)?;
    let mut out = format!("{:<40} {:<22} {}\n", "GROUP", "STATE", "PROTOCOL-TYPE");
    for (g, (state, ptype)) in groups {
        out.push_str(&format!("{g:<40} {state:<22} {ptype}\n"));
    }
    Ok(out)
}

/// One group as `describe` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupDetail {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, client id, static instance id).
    pub members: Vec<(String, String, Option<String>)>,
    pub partitions: Vec<PartitionLag>,
}

/// A partition a group commits to or is assigned: its committed offset, log end and lag.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
    pub member: Option<String>,
}

/// A group's state, members, and per partition the committed offset, the log end and the lag
/// (DescribeGroups and OffsetFetch at its coordinator, ListOffsets at the leaders).
pub fn detail(bootstrap: &str, group: &str) -> anyhow::Result<GroupDetail> {
    let mut c = Client::connect(bootstrap)?;
    let mut coord = coordinator(&mut c, group)?;
    let d: DescribeGroupsResponse = coord.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
    )?;
    let g = d
        .groups
        .first()
        .ok_or_else(|| anyhow::anyhow!("no answer for {group}"))?;
    anyhow::ensure!(
        g.error_code == 0,
        "DescribeGroups: error code {}",
        g.error_code
    );
    let offsets = committed(&mut coord, group)?;
    let mut owner: HashMap<(String, i32), String> = HashMap::new();
    for m in &g.members {
        for (t, ps) in assigned_partitions(&m.member_assignment).unwrap_or_default() {
            for p in ps {
                owner.insert((t.clone(), p), m.member_id.to_string());
            }
        }
    }
    let mut partitions: Vec<(String, i32)> = offsets.keys().cloned().collect();
    for tp in owner.keys() {
        if !offsets.contains_key(tp) {
            partitions.push(tp.clone());
        }
    }
    partitions.sort();
    let topics: Vec<String> = {
        let mut t: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
        t.dedup();
        t
    };
    let ends = if partitions.is_empty() {
        HashMap::new()
    } else {
        offsets_at(&layout(&mut c, Some(&topics))?, &partitions, -1)?
    };
    Ok(GroupDetail {
        group: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.client_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect(),
        partitions: partitions
            .into_iter()
            .map(|tp| {
                let committed = offsets.get(&tp).copied();
                let log_end = ends.get(&tp).copied();
                PartitionLag {
                    lag: committed.zip(log_end).map(|(c, e)| (e - c).max(0)),
                    member: owner.get(&tp).cloned(),
                    topic: tp.0,
                    partition: tp.1,
                    committed,
                    log_end,
                }
            })
            .collect(),
    })
}

/// `strom group describe`: state, members, and per partition the committed offset, the log
/// end and the lag.
pub fn describe(bootstrap: &str, group: &str) -> anyhow::Result<String> {
    let d = detail(bootstrap, group)?;
    let mut out = format!(
        "group {group}: state {}, protocol {} {}, {} member(s)\n",
        d.state,
        d.protocol_type,
        d.protocol,
        d.members.len()
    );
    for (id, client, instance) in &d.members {
        out.push_str(&format!(
            "  member {id} client {client}{}\n",
            instance
                .as_ref()
                .map(|i| format!(" instance {i}"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{:<30} {:>9} {:>14} {:>14} {:>8}  {}\n",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER"
    ));
    let dash = |v: Option<i64>| v.map_or("-".into(), |x| x.to_string());
    for p in &d.partitions {
        out.push_str(&format!(
            "{:<30} {:>9} {:>14} {:>14} {:>8}  {}\n",
            p.topic,
            p.partition,
            dash(p.committed),
            dash(p.log_end),
            dash(p.lag),
            p.member.as_deref().unwrap_or("-")
        ));
    }
    Ok(out)
}

/// `strom group reset-offsets`: moves a group's committed offsets on `topic` (every partition)
/// to the earliest, the latest or a given offset. Prints the plan; commits it only with
/// `execute`. The group must have no active members (as with Kafka's tool).
pub fn reset_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    to: ResetTo,
    execute: bool,
) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let layout = layout(&mut c, Some(&[topic.to_string()]))?;
    let partitions: Vec<(String, i32)> = layout.leaders.keys().cloned().collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions");
    let targets: BTreeMap<(String, i32), i64> = match to {
        ResetTo::Offset(n) => {
            let earliest = offsets_at(&layout, &partitions, -2)?;
            let latest = offsets_at(&layout, &partitions, -1)?;
            partitions
                .iter()
                .map(|tp| (tp.clone(), n.clamp(earliest[tp], latest[tp])))
                .collect()
        }
        ResetTo::Earliest => offsets_at(&layout, &partitions, -2)?.into_iter().collect(),
        ResetTo::Latest => offsets_at(&layout, &partitions, -1)?.into_iter().collect(),
    };
    let mut coord = coordinator(&mut c, group)?;
    let before = committed(&mut coord, group)?;
    let mut out = format!(
        "{:<30} {:>9} {:>14} {:>14}\n",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"
    );
    for (tp, new) in &targets {
        out.push_str(&format!(
            "{:<30} {:>9} {:>14} {:>14}\n",
            tp.0,
            tp.1,
            before.get(tp).map_or("-".into(), |c| c.to_string()),
            new
        ));
    }
    if !execute {
        out.push_str("(dry run: add --execute to commit these offsets)\n");
        return Ok(out);
    }
    commit(&mut coord, group, topic, &targets)?;
    out.push_str("offsets committed\n");
    Ok(out)
}

fn commit(
    coord: &mut Client,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<()> {
    commit_with(coord, group, -1, "", topic, offsets)
}

/// Commits `offsets` of `topic` for `group` as `member` of `generation` (-1 and "": a
/// standalone commit, refused while the group has members).
pub(super) fn commit_with(
    coord: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<()> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|((_, p), o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    let r: OffsetCommitResponse = coord.call(ApiKey::OffsetCommit, 8, &req)?;
    for t in &r.topics {
        for p in &t.partitions {
            match p.error_code {
                0 => {}
                // UNKNOWN_MEMBER_ID / REBALANCE_IN_PROGRESS: the group has members.
                25 | 27 => anyhow::bail!(
                    "group {group} has active members; stop its consumers before committing offsets"
                ),
                code => anyhow::bail!(
                    "OffsetCommit {topic}-{}: error code {code}",
                    p.partition_index
                ),
            }
        }
    }
    Ok(())
}
