//! `strom consume -g GROUP` as a member of the group, as Kafka's console consumer is: it joins
//! under the classic protocol (`consumer` protocol type, the `range` assignor), assigns the
//! topic's partitions when it is the leader, heartbeats while it reads, commits with its
//! generation, rejoins on a rebalance and leaves when it stops.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Client;
use crate::group::records::{assigned_partitions, subscribed_topics};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
const ASSIGNOR: &str = "range";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn put_str(b: &mut BytesMut, v: &str) {
    b.put_i16(v.len() as i16);
    b.put_slice(v.as_bytes());
}

/// ConsumerProtocolSubscription v0: one topic, no user data.
fn subscription(topic: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    put_str(&mut b, topic);
    b.put_i32(-1);
    b.freeze()
}

/// ConsumerProtocolAssignment v0: `partitions` of `topic`, no user data.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    put_str(&mut b, topic);
    b.put_i32(partitions.len() as i32);
    for p in partitions {
        b.put_i32(*p);
    }
    b.put_i32(-1);
    b.freeze()
}

/// The range assignor over one topic: members subscribed to it, sorted by id, each get a
/// contiguous run of partitions, the first ones one more when they do not divide evenly.
fn range_assign(
    members: &[(String, Vec<String>)],
    topic: &str,
    partitions: &[i32],
) -> Vec<(String, Vec<i32>)> {
    let mut ids: Vec<&String> = members
        .iter()
        .filter(|(_, topics)| topics.iter().any(|t| t == topic))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let n = ids.len().max(1);
    let (per, extra) = (partitions.len() / n, partitions.len() % n);
    let mut at = 0;
    let mut out: Vec<(String, Vec<i32>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let take = per + usize::from(i < extra);
            let mine = partitions[at..at + take].to_vec();
            at += take;
            ((*id).clone(), mine)
        })
        .collect();
    // Members subscribed to other topics get an empty assignment.
    for (id, _) in members {
        if !out.iter().any(|(m, _)| m == id) {
            out.push((id.clone(), Vec::new()));
        }
    }
    out
}

/// This process as a group member, connected to the coordinator.
pub(super) struct Member {
    pub(super) coord: Client,
    pub(super) group: String,
    pub(super) member_id: String,
    pub(super) generation: i32,
    last_heartbeat: Instant,
}

impl Member {
    /// Joins (or rejoins) and returns the partitions of `topic` assigned to this member.
    pub(super) fn join(
        coord: Client,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<(Member, Vec<i32>)> {
        let mut m = Member {
            coord,
            group: group.to_string(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        };
        let mine = m.rejoin(topic, partitions)?;
        Ok((m, mine))
    }

    pub(super) fn rejoin(&mut self, topic: &str, partitions: &[i32]) -> anyhow::Result<Vec<i32>> {
        for _ in 0..100 {
            let join = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_member_id(s(&self.member_id))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s(ASSIGNOR))
                    .with_metadata(subscription(topic))]);
            let r: JoinGroupResponse = self.coord.call(ApiKey::JoinGroup, 5, &join)?;
            match r.error_code {
                0 => {}
                // MEMBER_ID_REQUIRED (KIP-394): join again with the id given.
                79 => {
                    self.member_id = r.member_id.to_string();
                    continue;
                }
                // Loading, not available, not the coordinator yet: a moment later.
                14..=16 => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                // UNKNOWN_MEMBER_ID: our old id expired; start afresh.
                25 => {
                    self.member_id.clear();
                    continue;
                }
                code => anyhow::bail!("JoinGroup {}: error code {code}", self.group),
            }
            self.member_id = r.member_id.to_string();
            self.generation = r.generation_id;
            let assignments = if r.leader.as_str() == self.member_id {
                let members: Vec<(String, Vec<String>)> = r
                    .members
                    .iter()
                    .map(|m| {
                        (
                            m.member_id.to_string(),
                            subscribed_topics(&m.metadata).unwrap_or_default(),
                        )
                    })
                    .collect();
                range_assign(&members, topic, partitions)
                    .into_iter()
                    .map(|(id, parts)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(assignment(topic, &parts))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let sync = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id(self.generation)
                .with_member_id(s(&self.member_id))
                .with_assignments(assignments);
            let r: SyncGroupResponse = self.coord.call(ApiKey::SyncGroup, 3, &sync)?;
            match r.error_code {
                0 => {}
                // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION: another round.
                27 | 22 => continue,
                code => anyhow::bail!("SyncGroup {}: error code {code}", self.group),
            }
            self.last_heartbeat = Instant::now();
            let mut mine: Vec<i32> = assigned_partitions(&r.assignment)
                .unwrap_or_default()
                .into_iter()
                .filter(|(t, _)| t == topic)
                .flat_map(|(_, p)| p)
                .collect();
            mine.sort_unstable();
            return Ok(mine);
        }
        anyhow::bail!("could not join group {}", self.group)
    }

    /// Heartbeats when one is due; true when the group is rebalancing and this member must
    /// rejoin.
    pub(super) fn heartbeat_if_due(&mut self) -> anyhow::Result<bool> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id));
        let r: HeartbeatResponse = self.coord.call(ApiKey::Heartbeat, 3, &req)?;
        match r.error_code {
            0 => Ok(false),
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID.
            27 | 22 | 25 => Ok(true),
            code => anyhow::bail!("Heartbeat {}: error code {code}", self.group),
        }
    }

    /// Leaves the group, so the others get its partitions without waiting for its session.
    pub(super) fn leave(mut self) -> anyhow::Result<()> {
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_members(vec![
                MemberIdentity::default().with_member_id(s(&self.member_id))
            ]);
        let _: LeaveGroupResponse = self.coord.call(ApiKey::LeaveGroup, 3, &req)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_assignor_splits_contiguously_and_the_encodings_read_back() {
        let members = vec![
            ("b".to_string(), vec!["t".to_string()]),
            ("a".to_string(), vec!["t".to_string()]),
            ("c".to_string(), vec!["other".to_string()]),
        ];
        let got = range_assign(&members, "t", &[0, 1, 2, 3, 4]);
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![0, 1, 2]),
                ("b".to_string(), vec![3, 4]),
                ("c".to_string(), vec![]),
            ]
        );
        assert_eq!(
            subscribed_topics(&subscription("t")),
            Some(vec!["t".to_string()])
        );
        assert_eq!(
            assigned_partitions(&assignment("t", &[3, 4])),
            Some(vec![("t".to_string(), vec![3, 4])])
        );
    }
}
