//! `strom cluster rebalance` and `strom cluster decommission N`: plan new replica lists, show
//! them, and with `--execute` carry them out through AlterPartitionReassignments — optionally
//! under a replication throttle, as Kafka's `kafka-reassign-partitions --throttle` does — then
//! follow ListPartitionReassignments until every partition has moved.
//!
//! The plan is pure (`plan`, applied to each topic on its own): replicas move only off brokers that are leaving or carry more
//! than their share, each to the least loaded broker that lacks that partition, keeping its
//! place in the list; then replica order is swapped within partitions so that preferred
//! leaders (first replicas) spread evenly too — the controller's preferred-leader election
//! moves leadership once a reassignment completes.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::topic::error_name;
use super::Client;
use crate::types::NodeId;

/// One partition's replicas: (topic, partition) → replica list, first = preferred leader.
pub type Assignment = BTreeMap<(String, i32), Vec<NodeId>>;

/// How many replicas (`.0`) and preferred leaderships (`.1`) each broker carries.
fn loads(a: &Assignment, brokers: &[NodeId]) -> BTreeMap<NodeId, (usize, usize)> {
    let mut out: BTreeMap<NodeId, (usize, usize)> = brokers.iter().map(|b| (*b, (0, 0))).collect();
    for replicas in a.values() {
        for (i, b) in replicas.iter().enumerate() {
            let e = out.entry(*b).or_default();
            e.0 += 1;
            if i == 0 {
                e.1 += 1;
            }
        }
    }
    out
}

/// New replica lists spreading `current` evenly over `brokers` (every replica on a broker not
/// listed moves). Returns only the partitions that change. Pure and deterministic.
pub fn plan(current: &Assignment, brokers: &[NodeId]) -> Assignment {
    let mut next = current.clone();
    if brokers.is_empty() {
        return Assignment::new();
    }
    // Move replicas: off leaving brokers first, then from the fullest to the emptiest broker
    // while their counts differ by more than one.
    loop {
        let load = loads(&next, brokers);
        let leaving = load.keys().find(|b| !brokers.contains(b) && load[b].0 > 0);
        let staying = |b: &NodeId| brokers.contains(b);
        let (Some(fullest), Some(emptiest)) = (
            load.iter()
                .filter(|(b, _)| staying(b))
                .max_by_key(|(b, l)| (l.0, std::cmp::Reverse(**b)))
                .map(|(b, _)| *b),
            load.iter()
                .filter(|(b, _)| staying(b))
                .min_by_key(|(b, l)| (l.0, **b))
                .map(|(b, _)| *b),
        ) else {
            break;
        };
        let donor = match leaving {
            Some(b) => *b,
            None if load[&fullest].0 > load[&emptiest].0 + 1 => fullest,
            None => break,
        };
        // The donor's partitions the receiver lacks; the emptiest such receiver takes one.
        let mut moved = false;
        let mut receivers: Vec<NodeId> = brokers.to_vec();
        receivers.sort_by_key(|b| (load[b].0, *b));
        'find: for receiver in receivers {
            if receiver == donor || (leaving.is_none() && load[&receiver].0 + 1 >= load[&donor].0) {
                continue;
            }
            for replicas in next.values_mut() {
                if let Some(i) = replicas.iter().position(|b| *b == donor) {
                    if !replicas.contains(&receiver) {
                        replicas[i] = receiver;
                        moved = true;
                        break 'find;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    // Spread preferred leaders: a broker first in too many lists swaps places with the replica
    // of that partition whose broker is first in the fewest.
    for _ in 0..next.len() * brokers.len() {
        let load = loads(&next, brokers);
        let most = *load
            .iter()
            .max_by_key(|(b, l)| (l.1, std::cmp::Reverse(**b)))
            .map(|(b, _)| b)
            .unwrap_or(&brokers[0]);
        let least_count = load.values().map(|l| l.1).min().unwrap_or(0);
        if load[&most].1 <= least_count + 1 {
            break;
        }
        let mut swapped = false;
        for replicas in next.values_mut() {
            if replicas.first() != Some(&most) {
                continue;
            }
            let best = (1..replicas.len())
                .min_by_key(|i| (load.get(&replicas[*i]).map_or(0, |l| l.1), replicas[*i]));
            if let Some(i) = best {
                if load.get(&replicas[i]).map_or(0, |l| l.1) + 1 < load[&most].1 {
                    replicas.swap(0, i);
                    swapped = true;
                    break;
                }
            }
        }
        if !swapped {
            break;
        }
    }
    next.into_iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .collect()
}

/// `plan` for each topic on its own, so every topic spreads evenly (not only the totals).
pub fn plan_each_topic(current: &Assignment, brokers: &[NodeId]) -> Assignment {
    let mut topics: BTreeMap<&str, Assignment> = BTreeMap::new();
    for (k, v) in current {
        topics.entry(&k.0).or_default().insert(k.clone(), v.clone());
    }
    topics.values().flat_map(|one| plan(one, brokers)).collect()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn ids(v: &[NodeId]) -> String {
    v.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// What Metadata says: every partition's replicas, the live brokers, and the partitions not
/// led by their preferred (first) replica.
struct Current {
    assignment: Assignment,
    brokers: Vec<NodeId>,
    off_preferred: Assignment,
}

fn current(c: &mut Client) -> anyhow::Result<Current> {
    let md = super::group::fetch_metadata::<&str>(c, None)?;
    let mut assignment = Assignment::new();
    let mut off_preferred = Assignment::new();
    for t in &md.topics {
        let Some(name) = &t.name else { continue };
        for p in &t.partitions {
            let replicas: Vec<NodeId> = p.replica_nodes.iter().map(|b| b.0).collect();
            let key = (name.to_string(), p.partition_index);
            if replicas.first() != Some(&p.leader_id.0) {
                off_preferred.insert(key.clone(), replicas.clone());
            }
            assignment.insert(key, replicas);
        }
    }
    let mut brokers: Vec<NodeId> = md.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    Ok(Current {
        assignment,
        brokers,
        off_preferred,
    })
}

/// What `rebalance` and `decommission` do once they have a plan.
pub struct Execution {
    pub execute: bool,
    /// Bytes per second for the moving replicas' replication; None: no throttle.
    pub throttle: Option<u64>,
    /// Give up waiting after this long (the reassignments carry on).
    pub timeout: Duration,
}

/// `strom cluster rebalance`: even replicas and preferred leaders over the live brokers.
pub fn rebalance(bootstrap: &str, how: &Execution) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let now = current(&mut c)?;
    let moves = plan_each_topic(&now.assignment, &now.brokers);
    run(&mut c, &now, &moves, how, None)
}

/// `strom cluster decommission N`: every replica off broker `gone`.
pub fn decommission(bootstrap: &str, gone: NodeId, how: &Execution) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let now = current(&mut c)?;
    let staying: Vec<NodeId> = now.brokers.iter().copied().filter(|b| *b != gone).collect();
    let most = now.assignment.values().map(Vec::len).max().unwrap_or(0);
    anyhow::ensure!(
        staying.len() >= most,
        "broker {gone} cannot leave: a partition has {most} replicas and only {} other brokers are live",
        staying.len()
    );
    let moves = plan_each_topic(&now.assignment, &staying);
    run(&mut c, &now, &moves, how, Some(gone))
}

fn run(
    c: &mut Client,
    current: &Current,
    moves: &Assignment,
    how: &Execution,
    gone: Option<NodeId>,
) -> anyhow::Result<String> {
    let now = &current.assignment;
    let mut out = String::new();
    if moves.is_empty() {
        out.push_str("nothing to move: replicas and leaders are already spread evenly\n");
        // Leadership may still sit off the preferred replicas (after a restart, say).
        let off = current.off_preferred.len();
        if off > 0 && how.execute {
            let elected = elect_preferred(c, &current.off_preferred)?;
            out.push_str(&format!(
                "leadership moved to the preferred replica of {elected} partitions\n"
            ));
        } else if off > 0 {
            out.push_str(&format!(
                "{off} partitions are not led by their preferred replica; --execute elects it\n"
            ));
        }
        if let Some(g) = gone {
            out.push_str(&format!(
                "broker {g} holds no replicas; it can be stopped\n"
            ));
        }
        return Ok(out);
    }
    out.push_str("TOPIC  PARTITION  REPLICAS NOW  PLANNED\n");
    for ((t, p), to) in moves {
        let from = now
            .get(&(t.clone(), *p))
            .map(|v| ids(v))
            .unwrap_or_default();
        out.push_str(&format!("{t}  {p}  [{from}]  [{}]\n", ids(to)));
    }
    if !how.execute {
        out.push_str(&format!(
            "{} partitions would move; run again with --execute to move them\n",
            moves.len()
        ));
        return Ok(out);
    }
    print!("{out}");
    out.clear();
    if let Some(rate) = how.throttle {
        throttle(c, now, moves, Some(rate))?;
    }
    let started = Instant::now();
    let result = submit(c, moves).and_then(|()| wait(c, moves.len(), how.timeout));
    if how.throttle.is_some() {
        // Lift the throttle even when waiting failed; a reassignment still moving then runs
        // unthrottled, which is what a user who stops watching expects.
        throttle(c, now, moves, None)?;
    }
    result?;
    let elected = elect_preferred(c, moves)?;
    out.push_str(&format!(
        "moved {} partitions in {:.1} s\n",
        moves.len(),
        started.elapsed().as_secs_f64()
    ));
    if elected > 0 {
        out.push_str(&format!(
            "leadership moved to the preferred replica of {elected} partitions\n"
        ));
    }
    if let Some(g) = gone {
        out.push_str(&format!(
            "broker {g} holds no replicas; it can be stopped\n"
        ));
    }
    Ok(out)
}

/// Sets (`Some(rate)`) or removes the throttle: the rate on every live broker, and the moving
/// partitions' replicas as throttled — leaders on the current replicas, followers on the new.
fn throttle(
    c: &mut Client,
    now: &Assignment,
    moves: &Assignment,
    rate: Option<u64>,
) -> anyhow::Result<()> {
    let op = |name: &str, value: Option<String>| {
        AlterableConfig::default()
            .with_name(s(name))
            .with_config_operation(if value.is_some() { 0 } else { 1 })
            .with_value(value.map(|v| s(&v)))
    };
    let mut brokers: Vec<NodeId> = now
        .values()
        .chain(moves.values())
        .flatten()
        .copied()
        .collect();
    brokers.sort_unstable();
    brokers.dedup();
    let mut resources: Vec<AlterConfigsResource> = brokers
        .iter()
        .map(|b| {
            AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s(&b.to_string()))
                .with_configs(vec![
                    op(
                        "leader.replication.throttled.rate",
                        rate.map(|r| r.to_string()),
                    ),
                    op(
                        "follower.replication.throttled.rate",
                        rate.map(|r| r.to_string()),
                    ),
                ])
        })
        .collect();
    let mut by_topic: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for ((t, p), to) in moves {
        let from = now.get(&(t.clone(), *p)).cloned().unwrap_or_default();
        let e = by_topic.entry(t).or_default();
        e.0.extend(from.iter().map(|b| format!("{p}:{b}")));
        e.1.extend(
            to.iter()
                .filter(|b| !from.contains(b))
                .map(|b| format!("{p}:{b}")),
        );
    }
    // Internal topics' configs are the broker's alone: their (small) moves go unthrottled.
    for (t, (leaders, followers)) in by_topic.into_iter().filter(|(t, _)| !t.starts_with("__")) {
        let set = |v: Vec<String>| rate.map(|_| v.join(","));
        resources.push(
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(t))
                .with_configs(vec![
                    op("leader.replication.throttled.replicas", set(leaders)),
                    op("follower.replication.throttled.replicas", set(followers)),
                ]),
        );
    }
    let r: IncrementalAlterConfigsResponse = c.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(resources),
    )?;
    if let Some(bad) = r.responses.iter().find(|x| x.error_code != 0) {
        anyhow::bail!(
            "cannot {} the throttle on {}: {}",
            if rate.is_some() { "set" } else { "remove" },
            bad.resource_name.as_str(),
            error_name(bad.error_code, bad.error_message.as_ref())
        );
    }
    Ok(())
}

/// A preferred-leader election (ElectLeaders) for the moved partitions, so leadership follows
/// the new lists now rather than at the controller's next imbalance check. Returns how many
/// partitions changed leader.
fn elect_preferred(c: &mut Client, moves: &Assignment) -> anyhow::Result<usize> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in moves.keys() {
        by_topic.entry(t).or_default().push(*p);
    }
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(30_000)
        .with_topic_partitions(Some(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        ));
    let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, 1, &req)?;
    anyhow::ensure!(
        r.error_code == 0,
        "the preferred-leader election was refused: {}",
        error_name(r.error_code, None)
    );
    // ELECTION_NOT_NEEDED (84) is the usual answer for a partition already led right; others
    // (its preferred replica is not in sync yet) are left to the controller's own check.
    Ok(r.replica_election_results
        .iter()
        .flat_map(|t| t.partition_result.iter())
        .filter(|p| p.error_code == 0)
        .count())
}

/// One AlterPartitionReassignments for `targets` ((topic, partition) → target replicas, None
/// cancelling); a refusal of the whole request is an error saying what was `doing`.
fn alter(
    c: &mut Client,
    targets: impl IntoIterator<Item = ((String, i32), Option<Vec<NodeId>>)>,
    doing: &str,
) -> anyhow::Result<AlterPartitionReassignmentsResponse> {
    let mut by_topic: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
    for ((t, p), to) in targets {
        by_topic.entry(t).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(p)
                .with_replicas(to.map(|to| to.into_iter().map(BrokerId).collect())),
        );
    }
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(s(&t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let r: AlterPartitionReassignmentsResponse =
        c.call(ApiKey::AlterPartitionReassignments, 0, &req)?;
    anyhow::ensure!(
        r.error_code == 0,
        "the {doing} was refused: {}",
        error_name(r.error_code, r.error_message.as_ref())
    );
    Ok(r)
}

fn submit(c: &mut Client, moves: &Assignment) -> anyhow::Result<()> {
    let r = alter(
        c,
        moves.iter().map(|(k, v)| (k.clone(), Some(v.clone()))),
        "reassignment",
    )?;
    let refused: Vec<String> = r
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| {
                    format!(
                        "{}-{}: {}",
                        t.name.as_str(),
                        p.partition_index,
                        error_name(p.error_code, p.error_message.as_ref())
                    )
                })
        })
        .collect();
    anyhow::ensure!(
        refused.is_empty(),
        "some partitions were not reassigned:\n  {}",
        refused.join("\n  ")
    );
    Ok(())
}

/// A partition's move as ListPartitionReassignments shows it: [replicas, adding, removing].
type Move = [Vec<NodeId>; 3];

/// The partitions moving now, by (topic, partition).
fn moving(c: &mut Client) -> anyhow::Result<BTreeMap<(String, i32), Move>> {
    let r: ListPartitionReassignmentsResponse = c.call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    )?;
    anyhow::ensure!(
        r.error_code == 0,
        "cannot list reassignments: {}",
        error_name(r.error_code, r.error_message.as_ref())
    );
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.to_string(), p.partition_index),
                    [
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ],
                )
            })
        })
        .collect())
}

/// `strom cluster cancel-moves`: every reassignment in progress goes back to its original
/// replicas (AlterPartitionReassignments with no target, as Kafka's `--cancel`); the replicas
/// being added are dropped.
pub fn cancel(bootstrap: &str) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let now = moving(&mut c)?;
    if now.is_empty() {
        return Ok("no partition is moving\n".into());
    }
    let r = alter(
        &mut c,
        now.keys().map(|k| (k.clone(), None)),
        "cancellation",
    )?;
    let mut out = String::new();
    for t in &r.responses {
        for p in &t.partitions {
            let key = (t.name.to_string(), p.partition_index);
            let [replicas, adding, _] = now.get(&key).cloned().unwrap_or_default();
            let back: Vec<NodeId> = replicas
                .into_iter()
                .filter(|b| !adding.contains(b))
                .collect();
            if p.error_code == 0 {
                out.push_str(&format!("{}-{}: back to [{}]\n", key.0, key.1, ids(&back)));
            } else {
                out.push_str(&format!(
                    "{}-{}: not cancelled: {}\n",
                    key.0,
                    key.1,
                    error_name(p.error_code, p.error_message.as_ref())
                ));
            }
        }
    }
    Ok(out)
}

/// Follows ListPartitionReassignments until none of `total` partitions is still moving,
/// printing progress as it changes.
fn wait(c: &mut Client, total: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut shown = usize::MAX;
    loop {
        let moving = moving(c)?.len();
        let done = total.saturating_sub(moving);
        if done != shown {
            println!("{}", progress_line(done, total));
            let _ = std::io::stdout().flush();
            shown = done;
        }
        if moving == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{moving} partitions still moving after {} s; they carry on (`strom cluster cancel-moves` stops them)",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `[#####.....] 5/10 partitions moved`.
fn progress_line(done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total} partitions moved",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` partitions of topic `t` with RF 3 over brokers 1..=3 (as CreateTopics places them).
    fn three_brokers(n: i32) -> Assignment {
        (0..n)
            .map(|p| {
                let r = (0..3).map(|i| (p + i) % 3 + 1).collect();
                (("t".to_string(), p), r)
            })
            .collect()
    }

    fn apply(a: &Assignment, moves: &Assignment) -> Assignment {
        let mut out = a.clone();
        out.extend(moves.clone());
        out
    }

    #[test]
    fn a_fourth_broker_gets_its_share_of_replicas_and_leaders_with_few_moves() {
        let now = three_brokers(12);
        let moves = plan(&now, &[1, 2, 3, 4]);
        let after = apply(&now, &moves);
        let load = loads(&after, &[1, 2, 3, 4]);
        // 36 replicas over 4 brokers: 9 each; 12 leaders: 3 each.
        for (b, (replicas, leaders)) in &load {
            assert_eq!(*replicas, 9, "broker {b}: {load:?}");
            assert_eq!(*leaders, 3, "broker {b}: {load:?}");
        }
        for r in after.values() {
            let mut d = r.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(
                d.len(),
                3,
                "a partition keeps three distinct replicas: {r:?}"
            );
        }
        // Only broker 4's share moves: 9 replicas, each in a different partition at most once.
        let changed: usize = moves
            .iter()
            .map(|(k, v)| v.iter().filter(|b| !now[k].contains(b)).count())
            .sum();
        assert_eq!(changed, 9);
        // A balanced cluster plans nothing.
        assert!(plan(&after, &[1, 2, 3, 4]).is_empty());
    }

    #[test]
    fn decommissioning_moves_every_replica_off_the_leaving_broker() {
        let now = apply(&three_brokers(12), &plan(&three_brokers(12), &[1, 2, 3, 4]));
        let moves = plan(&now, &[1, 3, 4]);
        let after = apply(&now, &moves);
        assert!(after.values().all(|r| !r.contains(&2)), "{after:?}");
        let load = loads(&after, &[1, 3, 4]);
        assert!(load.values().all(|l| l.0 == 12 && l.1 == 4), "{load:?}");
    }

    #[test]
    fn progress_lines_fill_as_partitions_move() {
        assert_eq!(
            progress_line(0, 3),
            format!("[{}] 0/3 partitions moved", ".".repeat(30))
        );
        assert_eq!(
            progress_line(3, 3),
            format!("[{}] 3/3 partitions moved", "#".repeat(30))
        );
    }
}
