//! Fixed-seed fuzzing of the controller's decisions (`decide.rs`) and of the image they are
//! applied to: random sequences of admin writes, registrations, heartbeats, fencing, ISR
//! changes, reassignments, elections and preferred-leader moves — valid, stale and nonsensical alike — are
//! decided on the current image and whatever records come back are applied. Nothing may panic,
//! and after every record each partition must still make sense: replicas distinct and
//! non-empty, ISR within the replicas, a leader (if any) in the ISR, leader and partition
//! epochs never going back. Records read back from mutated JSON (a damaged snapshot or log
//! entry) must be refused or applied, never panic.

use std::collections::{BTreeMap, HashMap};

use super::admin::{AdminOp, ConfigOp, ConfigTarget, NewTopic};
use super::decide::{self, AlterPartition, Heartbeat};
use crate::config::Config;
use crate::fuzz::{rounds, Rng};
use crate::metadata::{ApplyOutcome, BrokerRegistration, MetadataImage, MetadataRecord};
use crate::types::{NodeId, TopicId};

const BROKERS: i32 = 5;

fn topic_name(rng: &mut Rng) -> String {
    let names = [
        "a",
        "b",
        "orders",
        "x.y_z-1",
        "",
        "..",
        "bad name",
        "__consumer_offsets",
    ];
    names[rng.below(names.len())].to_string()
}

fn some_topic(rng: &mut Rng, image: &MetadataImage) -> Option<(TopicId, String, usize)> {
    let topics: Vec<_> = image.topics.values().collect();
    (!topics.is_empty()).then(|| {
        let t = topics[rng.below(topics.len())];
        (t.id, t.name.clone(), t.partitions.len())
    })
}

fn nodes(rng: &mut Rng, max: usize) -> Vec<NodeId> {
    (0..rng.below(max + 1))
        .map(|_| rng.below(BROKERS as usize + 2) as i32 - 1)
        .collect()
}

fn new_topic(rng: &mut Rng) -> NewTopic {
    NewTopic {
        name: topic_name(rng),
        partitions: [-1, 0, 1, 3, 20_000][rng.below(5)],
        replication_factor: [-1, 0, 1, 3, 9][rng.below(5)],
        assignments: if rng.chance(4) {
            (0..rng.below(4)).map(|_| nodes(rng, 3)).collect()
        } else {
            Vec::new()
        },
        configs: if rng.chance(3) {
            BTreeMap::from([(
                "retention.ms".to_string(),
                ["1000", "-1", "x"][rng.below(3)].into(),
            )])
        } else {
            BTreeMap::new()
        },
    }
}

fn admin_op(rng: &mut Rng, image: &MetadataImage) -> AdminOp {
    let picked = some_topic(rng, image);
    match rng.below(8) {
        7 => AdminOp::AlterPartitionReassignments {
            changes: (0..rng.below(4))
                .map(|_| {
                    let (name, partition) = match &picked {
                        Some(p) => (p.1.clone(), rng.below(p.2 + 1) as i32),
                        None => (topic_name(rng), 0),
                    };
                    let target = (!rng.chance(4)).then(|| nodes(rng, 4));
                    (name, partition, target)
                })
                .collect(),
            allow_replication_factor_change: !rng.chance(4),
        },
        0 => AdminOp::CreateTopic {
            topic: new_topic(rng),
            validate_only: rng.chance(4),
        },
        1 => AdminOp::CreateTopics {
            topics: (0..rng.below(4)).map(|_| new_topic(rng)).collect(),
        },
        2 => AdminOp::DeleteTopic {
            id: picked
                .as_ref()
                .map(|p| p.0)
                .unwrap_or(TopicId(uuid::Uuid::nil())),
            name: topic_name(rng),
        },
        3 => AdminOp::CreatePartitions {
            name: picked.map(|p| p.1).unwrap_or_else(|| topic_name(rng)),
            total: rng.below(8) as i32,
            assignments: Vec::new(),
            validate_only: rng.chance(4),
        },
        4 => AdminOp::ElectLeaders {
            unclean: rng.chance(2),
            partitions: (!rng.chance(3)).then(|| vec![(topic_name(rng), rng.below(4) as i32 - 1)]),
        },
        5 => AdminOp::AllocateProducerIds {
            broker: rng.below(BROKERS as usize) as i32,
        },
        _ => AdminOp::AlterConfigs {
            target: if rng.chance(2) {
                ConfigTarget::Topic(picked.map(|p| p.1).unwrap_or_else(|| topic_name(rng)))
            } else {
                ConfigTarget::Broker(["", "1", "99", "x"][rng.below(4)].to_string())
            },
            replace: rng.chance(2),
            ops: vec![match rng.below(3) {
                0 => ConfigOp::Set(
                    "retention.ms".into(),
                    ["5", "-3", "nope"][rng.below(3)].into(),
                ),
                1 => ConfigOp::Delete("retention.ms".into()),
                _ => ConfigOp::Set("no.such.setting".into(), "1".into()),
            }],
            validate_only: rng.chance(4),
        },
    }
}

/// One step: what the controller would be asked, decided on `image`; the records it returns.
fn step(rng: &mut Rng, image: &MetadataImage, config: &Config) -> Vec<MetadataRecord> {
    let broker = rng.below(BROKERS as usize) as i32 + 1;
    let incarnation = uuid::Uuid::from_u128(broker as u128);
    match rng.below(7) {
        0 => decide::admin(image, config, admin_op(rng, image))
            .map(|p| p.records)
            .unwrap_or_default(),
        1 => decide::register(
            image,
            BrokerRegistration {
                id: broker,
                incarnation,
                endpoints: Vec::new(),
                rack: None,
                fenced: false,
            },
        )
        .unwrap_or_default(),
        2 => match decide::heartbeat(image, broker, incarnation, rng.chance(5)) {
            Heartbeat::Alive(records) => records,
            Heartbeat::Unknown | Heartbeat::Stopping => Vec::new(),
        },
        3 => decide::fence(
            image,
            broker,
            image
                .brokers
                .get(&broker)
                .map(|r| r.incarnation)
                .unwrap_or_default(),
            rng.chance(3),
            1 + rng.below(4),
        ),
        4 => decide::preferred_leaders(image, 1 + rng.below(4)),
        _ => {
            let Some((id, name, count)) = some_topic(rng, image) else {
                return Vec::new();
            };
            let partition = rng.below(count + 1) as i32;
            let current = image
                .topic(&name)
                .and_then(|t| t.partitions.get(partition as usize));
            let ask = AlterPartition {
                broker: current
                    .map(|p| p.leader)
                    .filter(|_| !rng.chance(4))
                    .unwrap_or(broker),
                topic_id: id,
                partition,
                leader_epoch: current.map(|p| p.leader_epoch).unwrap_or(0) - rng.below(2) as i32,
                partition_epoch: current.map(|p| p.partition_epoch).unwrap_or(0)
                    - rng.below(2) as i32,
                // Sometimes every replica in sync: what finishes a reassignment.
                new_isr: match current {
                    Some(p) if rng.chance(3) => p.replicas.clone(),
                    _ => nodes(rng, 4),
                },
            };
            decide::alter_partition(image, &ask).into_iter().collect()
        }
    }
}

/// What must hold of every partition, whatever was applied.
fn check(image: &MetadataImage, epochs: &mut HashMap<(TopicId, usize), (i32, i32)>, at: &str) {
    // A reassignment names an existing partition, adds and removes only its replicas, and
    // never both at once; an empty one is not kept.
    for (id, of_topic) in &image.reassignments {
        let t = image.topic_by_id(*id);
        assert!(
            t.is_some() && !of_topic.is_empty(),
            "{at}: reassignment of {id:?}"
        );
        for (p, r) in of_topic {
            let replicas = &t.unwrap().partitions[*p as usize].replicas;
            assert!(
                !(r.adding.is_empty() && r.removing.is_empty())
                    && r.adding
                        .iter()
                        .chain(&r.removing)
                        .all(|b| replicas.contains(b))
                    && r.adding.iter().all(|b| !r.removing.contains(b)),
                "{at}: partition {p} reassignment {r:?} over replicas {replicas:?}"
            );
        }
    }
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let mut distinct = p.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(
                !p.replicas.is_empty() && distinct.len() == p.replicas.len(),
                "{at}: {}-{i} replicas {:?}",
                t.name,
                p.replicas
            );
            assert!(
                p.isr.iter().all(|r| p.replicas.contains(r)),
                "{at}: {}-{i} ISR {:?} outside replicas {:?}",
                t.name,
                p.isr,
                p.replicas
            );
            assert!(
                p.leader < 0 || p.isr.contains(&p.leader),
                "{at}: {}-{i} leader {} not in ISR {:?}",
                t.name,
                p.leader,
                p.isr
            );
            let now = (p.leader_epoch, p.partition_epoch);
            if let Some(before) = epochs.insert((t.id, i), now) {
                assert!(
                    now.0 >= before.0 && now.1 >= before.1,
                    "{at}: {}-{i} epochs went back {before:?} -> {now:?}",
                    t.name
                );
            }
        }
    }
}

#[test]
fn random_controller_decisions_keep_every_partition_consistent() {
    let config = Config::from_raw(BTreeMap::new()).expect("defaults");
    let mut rng = Rng::new(0xc0de_c1de_0001);
    // How many of each kind of record were applied: the runs must reach the interesting states.
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for run in 0..rounds(200) {
        let mut image = MetadataImage::default()
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "fuzz".into(),
            })
            .0;
        let mut epochs = HashMap::new();
        for round in 0..300 {
            for record in step(&mut rng, &image, &config) {
                *seen.entry(kind(&record)).or_default() += 1;
                image = image.apply(&record).0;
                check(&image, &mut epochs, &format!("run {run} round {round}"));
            }
        }
    }
    for k in [
        "topic",
        "partitions",
        "fence",
        "unfence",
        "partition change",
        "delete",
        "replicas change",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) > 0,
            "no {k} record was ever applied: {seen:?}"
        );
    }
}

fn kind(r: &MetadataRecord) -> &'static str {
    match r {
        MetadataRecord::CreateTopic { .. } => "topic",
        MetadataRecord::CreatePartitions { .. } => "partitions",
        MetadataRecord::FenceBroker { .. } => "fence",
        MetadataRecord::UnfenceBroker { .. } => "unfence",
        MetadataRecord::PartitionChange { .. } => "partition change",
        MetadataRecord::DeleteTopic { .. } => "delete",
        MetadataRecord::ReplicasChange { .. } => "replicas change",
        _ => "other",
    }
}

#[test]
fn damaged_records_are_refused_or_applied_never_panicked_on() {
    let config = Config::from_raw(BTreeMap::new()).expect("defaults");
    let mut rng = Rng::new(0xc0de_c1de_0002);
    let mut image = MetadataImage::default();
    let mut seeds = Vec::new();
    for _ in 0..rounds(3_000) {
        let records = step(&mut rng, &image, &config);
        for r in &records {
            image = image.apply(r).0;
        }
        seeds.extend(records);
        let Some(seed) = seeds.get(rng.below(seeds.len().max(1))) else {
            continue;
        };
        let json = serde_json::to_vec(seed).expect("encode");
        if let Ok(damaged) = serde_json::from_slice::<MetadataRecord>(&rng.mutate(json)) {
            // Applied in place: one that does not apply must leave the image as it was.
            let mut after = image.clone();
            let outcome = after.apply_mut(&damaged);
            if !matches!(
                outcome,
                ApplyOutcome::Applied | ApplyOutcome::ProducerIds { .. }
            ) {
                assert!(after == image, "{damaged:?} changed the image: {outcome:?}");
            }
        }
    }
}
