//! Fixed-seed fuzzing of what the storage layer reads from clients and from disk: batch
//! validation, the record parser behind timestamp lookups, and log recovery from segment files
//! holding garbage or torn batches. Nothing may panic; recovery must keep a valid prefix.

use super::batch::{parse_header, tests::make_batch, validate};
use super::log::tests::settings;
use super::records::record_times;
use super::PartitionLog;
use crate::fuzz::{rounds, Rng};
use crate::types::{TopicId, TopicPartition};

#[test]
fn mutated_batches_never_panic_validation_or_the_record_parser() {
    let mut rng = Rng::new(0x0ba7_c4e5_0001);
    let seeds: Vec<Vec<u8>> = vec![
        make_batch(1, 1_000, 10),
        make_batch(5, 2_000, 100),
        make_batch(3, -1, 0),
    ];
    for round in 0..rounds(20_000) {
        let b = rng.mutate(seeds[round % seeds.len()].clone());
        let _ = validate(&b, 1 << 20);
        if let Some(h) = parse_header(&b) {
            // The parser must bound itself by the bytes it has, whatever the header claims.
            let _ = record_times(&b, &h, 1 << 16);
        }
    }
}

#[test]
fn recovery_from_garbage_and_torn_segments_keeps_a_valid_prefix() {
    let mut rng = Rng::new(0x05e6_0000_0002);
    for round in 0..rounds(40) {
        let root = tempfile::tempdir().expect("tempdir");
        let tp = TopicPartition::new("f".to_string(), 0);
        let id = TopicId(uuid::Uuid::from_u128(1));
        let kept = {
            let (log, _) = PartitionLog::open(root.path(), tp.clone(), id, settings())
                .expect("open a new log");
            for i in 0..3 {
                let b = make_batch(2, 1_000 + i, 50);
                let v = validate(&b, 1 << 20).expect("valid");
                log.append(&[(v[0].0, &b[..])], 0).expect("append");
            }
            log.log_end_offset()
        };
        // Damage the segment's tail (after its valid batches) or append garbage to it.
        let seg = root.path().join("f-0").join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&seg).expect("segment");
        let good = bytes.len();
        let tail: Vec<u8> = if round % 2 == 0 {
            (0..1 + rng.below(200)).map(|_| rng.word() as u8).collect()
        } else {
            rng.mutate(make_batch(2, 5_000, 50))
        };
        bytes.extend(tail);
        std::fs::write(&seg, &bytes).expect("write");
        let (log, _) = PartitionLog::open(root.path(), tp, id, settings())
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        // Everything written before the damage is still there; nothing torn past it is.
        let end = log.log_end_offset();
        assert!(
            end >= kept,
            "round {round}: lost valid data ({end} < {kept})"
        );
        let read = log
            .read(0, crate::storage::Window::new(1 << 20, end, true))
            .expect("read back");
        assert!(
            validate(&read, 1 << 20).is_ok(),
            "round {round}: unreadable prefix"
        );
        assert!(std::fs::metadata(&seg).expect("segment").len() as usize >= good);
    }
}
