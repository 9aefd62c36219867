//! The sweep's group cases: each version of each group API gets a group of its own, joined
//! and synced through the newest versions, and its call runs against the coordinator and (for
//! NOT_COORDINATOR) another node.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;

use super::{assignment, gid, s, subscription, tn, Sweep, PARTITIONS, TOPIC};

/// A member that has joined and synced `group` (through the newest versions); returns the
/// coordinator, the member id and the generation.
fn joined(sw: &mut Sweep, group: &str) -> (i32, String, i32) {
    let coordinator = sw.coordinator(group);
    let (member, generation) = join(sw, coordinator, group, 9, "");
    let req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(assignment())]);
    match sw.call(coordinator, ApiKey::SyncGroup, 5, "sync", &req) {
        ResponseKind::SyncGroup(r) => assert_eq!(r.error_code, 0, "sync {group}"),
        other => panic!("{other:?}"),
    }
    (coordinator, member, generation)
}

/// JoinGroup at `v` until it is a member (v4+ first answers MEMBER_ID_REQUIRED).
fn join(sw: &mut Sweep, node: i32, group: &str, v: i16, member: &str) -> (String, i32) {
    let mut member = member.to_string();
    for _ in 0..20 {
        let mut req = JoinGroupRequest::default()
            .with_group_id(gid(group))
            .with_session_timeout_ms(10_000)
            .with_member_id(s(&member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription())]);
        if v >= 1 {
            req = req.with_rebalance_timeout_ms(10_000);
        }
        if v >= 8 {
            req = req.with_reason(Some(s("sweep")));
        }
        let resp = sw.call(node, ApiKey::JoinGroup, v, "join", &req);
        let ResponseKind::JoinGroup(r) = resp else {
            panic!("{resp:?}")
        };
        match r.error_code {
            0 => return (r.member_id.to_string(), r.generation_id),
            79 => member = r.member_id.to_string(),
            // The coordinator is still loading its shard (the offsets topic is new): retry.
            14 => std::thread::sleep(std::time::Duration::from_millis(200)),
            code => panic!("JoinGroup v{v} of {group}: error {code}"),
        }
    }
    panic!("JoinGroup v{v} of {group} never admitted the member")
}

fn commit_request(v: i16, group: &str, member: &str, generation: i32) -> OffsetCommitRequest {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            let mut op = OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(1)
                .with_committed_metadata(Some(s("meta")));
            if v >= 6 {
                op = op.with_committed_leader_epoch(-1);
            }
            op
        })
        .collect();
    let mut req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(tn(TOPIC))
                .with_partitions(partitions),
            OffsetCommitRequestTopic::default()
                .with_name(tn("no-such-topic"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()]),
        ]);
    if v <= 4 {
        req = req.with_retention_time_ms(-1);
    }
    req
}

fn fetch_offsets_request(v: i16, group: &str, all: bool) -> OffsetFetchRequest {
    let partitions: Vec<i32> = (0..PARTITIONS).chain([9]).collect();
    if v >= 8 {
        let topics = (!all).then(|| {
            vec![OffsetFetchRequestTopics::default()
                .with_name(tn(TOPIC))
                .with_partition_indexes(partitions.clone())]
        });
        let mut g = OffsetFetchRequestGroup::default()
            .with_group_id(gid(group))
            .with_topics(topics);
        if v >= 9 {
            g = g.with_member_epoch(-1);
        }
        return OffsetFetchRequest::default()
            .with_groups(vec![
                g,
                OffsetFetchRequestGroup::default().with_group_id(gid("empty")),
            ])
            .with_require_stable(true);
    }
    let topics = (!all || v < 2).then(|| {
        vec![OffsetFetchRequestTopic::default()
            .with_name(tn(TOPIC))
            .with_partition_indexes(partitions)]
    });
    let mut req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics);
    if v >= 7 {
        req = req.with_require_stable(true);
    }
    req
}

/// The group APIs: each version gets a group of its own, joined and synced, and the call under
/// test runs both against the coordinator and (for the NOT_COORDINATOR path) another node.
pub(super) fn group(sw: &mut Sweep, key: ApiKey, v: i16) {
    let group = format!("g-{key:?}-v{v}");
    let (coord, member, generation) = joined(sw, &group);
    let other = (1..=3).find(|n| *n != coord).expect("another node");
    match key {
        ApiKey::JoinGroup => {
            // A second member's join starts a rebalance; the first rejoins to complete it.
            let g2 = format!("{group}-fresh");
            let c2 = sw.coordinator(&g2);
            join(sw, c2, &g2, v, "");
            let req = JoinGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s("unknown-member"))
                .with_protocol_type(s("consumer"))
                .with_session_timeout_ms(10_000)
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription())]);
            sw.call(coord, key, v, "unknown member", &req);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::SyncGroup => {
            let mut req = SyncGroupRequest::default()
                .with_group_id(gid(&group))
                .with_generation_id(generation)
                .with_member_id(s(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(assignment())]);
            if v >= 5 {
                req = req
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            sw.call(coord, key, v, "leader's sync", &req);
            let stale = req.clone().with_generation_id(generation + 5);
            sw.call(coord, key, v, "stale generation", &stale);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::Heartbeat => {
            let req = HeartbeatRequest::default()
                .with_group_id(gid(&group))
                .with_generation_id(generation)
                .with_member_id(s(&member));
            sw.call(coord, key, v, "member", &req);
            let unknown = req.clone().with_member_id(s("unknown-member"));
            sw.call(coord, key, v, "unknown member", &unknown);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::LeaveGroup => {
            let req = if v >= 3 {
                let mut m = MemberIdentity::default().with_member_id(s(&member));
                if v >= 5 {
                    m = m.with_reason(Some(s("sweep")));
                }
                let unknown = MemberIdentity::default().with_member_id(s("unknown-member"));
                LeaveGroupRequest::default()
                    .with_group_id(gid(&group))
                    .with_members(vec![m, unknown])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(gid(&group))
                    .with_member_id(s(&member))
            };
            sw.call(other, key, v, "not the coordinator", &req);
            sw.call(coord, key, v, "member leaves", &req);
        }
        ApiKey::OffsetCommit => {
            let req = commit_request(v, &group, &member, generation);
            sw.call(coord, key, v, "member commits, one unknown topic", &req);
            let stale = commit_request(v, &group, &member, generation + 5);
            sw.call(coord, key, v, "stale generation", &stale);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::OffsetFetch => {
            let commit = commit_request(8, &group, &member, generation);
            sw.call(coord, ApiKey::OffsetCommit, 8, "for OffsetFetch", &commit);
            let req = fetch_offsets_request(v, &group, false);
            sw.call(coord, key, v, "named partitions, one never committed", &req);
            if v >= 2 {
                let all = fetch_offsets_request(v, &group, true);
                sw.call(coord, key, v, "all partitions", &all);
            }
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::DescribeGroups => {
            let mut req = DescribeGroupsRequest::default()
                .with_groups(vec![gid(&group), gid("no-such-group")]);
            if v >= 3 {
                req = req.with_include_authorized_operations(true);
            }
            let resp = sw.call(coord, key, v, "stable group and unknown", &req);
            let ResponseKind::DescribeGroups(r) = resp else {
                panic!("{resp:?}")
            };
            // The member's host is the connection's peer, as Kafka shows it.
            assert_eq!(r.groups[0].members[0].client_host.as_str(), "/127.0.0.1");
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::ListGroups => {
            sw.call(coord, key, v, "all", &ListGroupsRequest::default());
            if v >= 4 {
                let req = ListGroupsRequest::default().with_states_filter(vec![s("Stable")]);
                sw.call(other, key, v, "stable ones", &req);
            }
            if v >= 5 {
                let req = ListGroupsRequest::default().with_types_filter(vec![s("classic")]);
                sw.call(other, key, v, "classic ones", &req);
            }
        }
        ApiKey::DeleteGroups => {
            let req = DeleteGroupsRequest::default()
                .with_groups_names(vec![gid(&group), gid("no-such-group")]);
            sw.call(coord, key, v, "a live group and an unknown one", &req);
            let leave = LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
            sw.call(coord, ApiKey::LeaveGroup, 4, "to empty it", &leave);
            sw.call(coord, key, v, "an empty group", &req);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        ApiKey::OffsetDelete => {
            let commit = commit_request(8, &group, &member, generation);
            sw.call(coord, ApiKey::OffsetCommit, 8, "for OffsetDelete", &commit);
            let req = OffsetDeleteRequest::default()
                .with_group_id(gid(&group))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(tn(TOPIC))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]);
            sw.call(coord, key, v, "subscribed topic", &req);
            let leave = LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
            sw.call(coord, ApiKey::LeaveGroup, 4, "to empty it", &leave);
            sw.call(coord, key, v, "empty group", &req);
            sw.call(other, key, v, "not the coordinator", &req);
        }
        other => unreachable!("{other:?} is not a group API"),
    }
}
