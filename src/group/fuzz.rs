//! Fixed-seed fuzzing of the offsets-log codec (`records.rs`): generated keys and values must
//! round-trip, and mutated bytes of them — what a torn or hostile `__consumer_offsets` record
//! would hold — must decode to something or nothing, never panic. The same for the consumer
//! protocol's subscriptions and assignments that members send.

use bytes::Bytes;

use super::records::StoredMember;
use super::records::{assigned_partitions, subscribed_topics, GroupValue, Key, OffsetValue};
use crate::fuzz::{rounds, Rng};

fn text(rng: &mut Rng) -> String {
    let alphabet = ['a', 'Z', '-', '.', '_', '0', 'é', '漢', '🦀'];
    (0..rng.below(40))
        .map(|_| alphabet[rng.below(alphabet.len())])
        .collect()
}

fn opt_text(rng: &mut Rng) -> Option<String> {
    (!rng.chance(3)).then(|| text(rng))
}

fn blob(rng: &mut Rng) -> Bytes {
    (0..rng.below(64)).map(|_| rng.word() as u8).collect()
}

fn key(rng: &mut Rng) -> Key {
    if rng.chance(2) {
        Key::Group(text(rng))
    } else {
        Key::Offset {
            group: text(rng),
            topic: text(rng),
            partition: rng.word() as i32,
        }
    }
}

fn offset_value(rng: &mut Rng) -> OffsetValue {
    OffsetValue {
        offset: rng.word() as i64,
        leader_epoch: rng.word() as i32,
        metadata: text(rng),
        commit_timestamp: rng.word() as i64,
    }
}

fn group_value(rng: &mut Rng) -> GroupValue {
    let members = (0..rng.below(4))
        .map(|_| StoredMember {
            member_id: text(rng),
            instance_id: opt_text(rng),
            client_id: text(rng),
            client_host: text(rng),
            // A negative rebalance timeout reads back as the session timeout (version 0 had
            // none), so generated ones are in range.
            rebalance_timeout_ms: rng.below(i32::MAX as usize) as i32,
            session_timeout_ms: rng.below(i32::MAX as usize) as i32,
            subscription: blob(rng),
            assignment: blob(rng),
        })
        .collect();
    GroupValue {
        protocol_type: text(rng),
        generation: rng.word() as i32,
        protocol: opt_text(rng),
        leader: opt_text(rng),
        state_timestamp: rng.word() as i64,
        members,
    }
}

#[test]
fn generated_records_round_trip_through_the_offsets_log_codec() {
    let mut rng = Rng::new(0x6e0f_f5e7_0001);
    for round in 0..rounds(3_000) {
        let k = key(&mut rng);
        assert_eq!(Key::decode(&k.encode()), Some(k.clone()), "round {round}");
        let o = offset_value(&mut rng);
        assert_eq!(OffsetValue::decode(&o.encode()), Some(o), "round {round}");
        let g = group_value(&mut rng);
        assert_eq!(GroupValue::decode(&g.encode()), Some(g), "round {round}");
    }
}

#[test]
fn mutated_records_and_member_protocols_never_panic_the_decoders() {
    let mut rng = Rng::new(0x6e0f_f5e7_0002);
    for _ in 0..rounds(20_000) {
        let seed: Vec<u8> = match rng.below(4) {
            0 => key(&mut rng).encode().to_vec(),
            1 => offset_value(&mut rng).encode().to_vec(),
            2 => group_value(&mut rng).encode().to_vec(),
            _ => blob(&mut rng).to_vec(),
        };
        let b = rng.mutate(seed);
        let _ = Key::decode(&b);
        let _ = OffsetValue::decode(&b);
        let _ = GroupValue::decode(&b);
        let _ = subscribed_topics(&b);
        let _ = assigned_partitions(&b);
    }
}
