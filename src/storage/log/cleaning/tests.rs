use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::super::tests::settings;
use super::*;
use crate::config::CleanupPolicy;
use crate::storage::batch::validate;
use crate::storage::records::encode_batch;
use crate::storage::Window;
use crate::types::{TopicId, TopicPartition};

fn compacted() -> LogDefaults {
    LogDefaults {
        cleanup: CleanupPolicy::COMPACT,
        min_cleanable_ratio: 0.0,
        delete_retention_ms: 1_000,
        ..settings()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(
        dir,
        TopicPartition::new("c", 0),
        TopicId(uuid::Uuid::from_u128(9)),
        compacted(),
    )
    .expect("open")
    .0
}

/// Appends one batch of (key, value) records; no value is a tombstone.
fn put(log: &PartitionLog, records: &[(String, Option<String>)], codec: Compression) {
    let recs: Vec<_> = records
        .iter()
        .map(|(k, v)| {
            (
                Some(Bytes::from(k.clone())),
                v.clone().map(Bytes::from),
                1_000,
            )
        })
        .collect();
    let b = encode_batch(&recs, codec).expect("encode");
    let v = validate(&b, usize::MAX).expect("valid");
    log.append(&[(v[0].0, &b[..])], 0).expect("append");
}

/// Every record from the log start: (offset, key, value).
fn read_all(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    while offset < end {
        let data = log
            .read(offset, Window::new(1 << 20, end, true))
            .expect("read");
        if data.is_empty() {
            break;
        }
        for (h, range) in validate(&data, usize::MAX).expect("valid") {
            let mut buf = data.slice(range);
            let set = RecordBatchDecoder::decode(&mut buf).expect("decode");
            for r in set.records {
                out.push((
                    r.offset,
                    String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned(),
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
            }
            offset = h.next_offset();
        }
    }
    out
}

/// The latest value of each key, as a consumer of a compacted topic must end up with.
fn latest(records: &[(i64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    records
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

/// 20 keys, 30 rounds of 5-record batches; keys 0–3 deleted in the last round.
fn fill(log: &PartitionLog, codec: Compression) {
    for round in 0..30 {
        for chunk in 0..4 {
            let batch: Vec<_> = (0..5)
                .map(|i| {
                    let key = chunk * 5 + i;
                    let value = (round < 29 || key >= 4).then(|| format!("v{round}-{key}"));
                    (format!("k{key}"), value)
                })
                .collect();
            put(log, &batch, codec);
        }
    }
}

fn no_stop(_: u64) -> bool {
    true
}

#[test]
fn a_pass_keeps_each_keys_latest_record_at_its_offset_with_every_codec() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let log = open(dir.path());
        fill(&log, codec);
        // The active segment is never cleaned: start a new one so everything is cleanable.
        log.roll_now().expect("roll");
        let before = read_all(&log);
        let size_before = log.size_bytes();
        let segments_before = log.segment_count();
        let end = log.log_end_offset();
        let mut map = OffsetMap::with_memory(1 << 20);
        let stats = log
            .clean(end, 10_000, &mut map, &no_stop)
            .expect("clean")
            .expect("cleanable");
        assert!(!stats.abandoned);
        assert_eq!(stats.cleaned_to, end);
        let after = read_all(&log);
        assert_eq!(latest(&after), latest(&before), "{codec:?}");
        assert_eq!(
            after.len(),
            20,
            "{codec:?}: one record per key (tombstones kept)"
        );
        let offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        for r in &after {
            assert!(before.contains(r), "{codec:?}: {r:?} is an original record");
        }
        assert!(
            log.size_bytes() * 5 < size_before,
            "{codec:?}: disk use falls"
        );
        assert_eq!(log.log_end_offset(), end, "{codec:?}");
        // The same after a restart.
        drop(log);
        let log = open(dir.path());
        assert_eq!(read_all(&log), after, "{codec:?}");
        // A second pass has nothing dirty; once delete.retention.ms has passed since the first,
        // the tombstones go without anything new written.
        assert_eq!(
            log.clean(end, 10_500, &mut map, &no_stop).expect("clean"),
            None
        );
        log.clean(end, 11_001, &mut map, &no_stop)
            .expect("clean")
            .expect("tombstones due");
        let last = read_all(&log);
        assert_eq!(last.len(), 16, "{codec:?}: tombstoned keys gone");
        assert!(last.iter().all(|r| r.2.is_some()));
        // The first pass groups by the segments' old sizes; later ones merge what shrank.
        assert!(segments_before > 3);
        assert_eq!(
            log.segment_count(),
            2,
            "{codec:?}: merged into one, and the active one"
        );
        assert_eq!(
            log.clean(end, 20_000, &mut map, &no_stop).expect("clean"),
            None,
            "nothing left to do"
        );
    }
}

#[test]
fn a_fetch_into_a_removed_range_gets_the_next_record_and_a_follower_takes_the_gaps() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(&dir.path().join("leader"));
    fill(&log, Compression::None);
    log.roll_now().expect("roll");
    let end = log.log_end_offset();
    let mut map = OffsetMap::with_memory(1 << 20);
    log.clean(end, 10_000, &mut map, &no_stop)
        .expect("clean")
        .expect("cleanable");
    let data = log.read(0, Window::new(1 << 20, end, true)).expect("read");
    let first = validate(&data, usize::MAX).expect("valid")[0].0;
    assert!(first.base_offset > 0, "offset 0 was compacted away");
    // A follower copies the cleaned log batch by batch, gaps and all.
    let follower = open(&dir.path().join("follower"));
    let mut offset = 0;
    while offset < end {
        let data = log
            .read(offset, Window::new(1 << 20, end, true))
            .expect("read");
        if data.is_empty() {
            break;
        }
        let batches = validate(&data, usize::MAX).expect("valid");
        let input: Vec<_> = batches
            .iter()
            .map(|(h, r)| (*h, &data[r.clone()]))
            .collect();
        offset = follower.append_replica(&input).expect("gaps are fine");
    }
    assert_eq!(read_all(&follower), read_all(&log));
}

#[test]
fn retention_does_not_delete_a_compact_only_log_but_does_with_compact_delete() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    fill(&log, Compression::None);
    let mut s = compacted();
    s.retention_ms = 1;
    log.set_settings(s.clone());
    assert_eq!(log.apply_retention(i64::MAX / 2).expect("retention"), 0);
    s.cleanup.delete = true;
    log.set_settings(s);
    assert!(log.apply_retention(i64::MAX / 2).expect("retention") > 0);
}

/// Leaves a committed `swap/` as a crash right after the commit point would, then applies
/// `damage` to the files, and checks the reopened log holds exactly the cleaned records.
fn crash_after_commit(damage: impl Fn(&Path, Offset)) {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let log = open(root);
    fill(&log, Compression::Zstd);
    log.roll_now().expect("roll");
    let before = read_all(&log);
    let end = log.log_end_offset();
    let plan = log.plan(end, 10_000).expect("plan");
    let mut map = OffsetMap::with_memory(1 << 20);
    let mut stats = CleanStats::default();
    let map_end = map_keys(&plan, 0, &mut map, &no_stop, &mut stats).expect("map");
    let retain = Retain::new(&map, map_end, 0);
    // One group of everything, written and committed; the process dies before the swap.
    let mut s = plan.settings.clone();
    s.segment_bytes = u64::MAX;
    let plan = Plan {
        settings: s,
        ..plan
    };
    log.write_group(&plan.segments, &retain, &plan, &no_stop)
        .expect("write");
    drop(log);
    // The commit (done under the log lock by `swap_in`), then the process dies.
    let part = root.join("c-0");
    std::fs::rename(part.join(STAGED), part.join(SWAP)).expect("commit");
    damage(&part, plan.segments[0].0.base);
    let log = open(root);
    let after = read_all(&log);
    assert_eq!(latest(&after), latest(&before));
    assert_eq!(after.len(), 20, "no duplicate and no stale record");
    assert!(!part.join(SWAP).exists() && !part.join(STAGED).exists());
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn a_crash_after_the_commit_is_finished_on_start() {
    crash_after_commit(|_, _| {});
}

#[test]
fn a_crash_midway_through_the_swap_is_finished_on_start() {
    crash_after_commit(|part, base| {
        // The old segments were deleted and the index moved, but not the log file.
        let bases = segment_bases(part).expect("bases");
        // Every segment but the active one was in the group.
        for old in &bases[..bases.len() - 1] {
            delete_files(part, *old).expect("delete");
        }
        std::fs::rename(
            part.join(SWAP).join(file_name(base, "index")),
            part.join(file_name(base, "index")),
        )
        .expect("move");
    });
}

#[test]
fn a_crash_before_the_commit_leaves_the_old_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    fill(&log, Compression::Gzip);
    log.roll_now().expect("roll");
    let before = read_all(&log);
    drop(log);
    let staged = dir.path().join("c-0").join(STAGED);
    std::fs::create_dir(&staged).expect("mkdir");
    std::fs::write(staged.join(file_name(0, "log")), b"half a segment").expect("write");
    let log = open(dir.path());
    assert_eq!(read_all(&log), before);
    assert!(!staged.exists());
}

#[test]
fn a_log_changed_under_the_pass_is_left_alone() {
    // A follower that must start over from the leader's log start, between planning and the
    // swap: the pass notices and drops its work.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    fill(&log, Compression::None);
    log.roll_now().expect("roll");
    let end = log.log_end_offset();
    let mut map = OffsetMap::with_memory(1 << 20);
    let once = std::cell::Cell::new(true);
    let reset = |_: u64| {
        if once.replace(false) {
            log.reset_to(end).expect("reset");
        }
        true
    };
    let stats = log
        .clean(end, 10_000, &mut map, &reset)
        .expect("clean")
        .expect("ran");
    assert!(stats.abandoned);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert!(!dir.path().join("c-0").join(SWAP).exists());

    // A truncation below the high watermark (an unclean election) cuts files the pass reads:
    // the pass fails or is dropped, and the log holds exactly what the truncation left.
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    fill(&log, Compression::None);
    log.roll_now().expect("roll");
    let end = log.log_end_offset();
    let once = std::cell::Cell::new(true);
    let truncate = |_: u64| {
        if once.replace(false) {
            log.truncate_to(end / 2).expect("truncate");
        }
        true
    };
    let result = log.clean(end, 10_000, &mut map, &truncate);
    assert!(
        matches!(
            result,
            Err(_)
                | Ok(Some(CleanStats {
                    abandoned: true,
                    ..
                }))
        ),
        "{result:?}"
    );
    assert_eq!(log.log_end_offset(), end / 2);
    let left = read_all(&log);
    assert!(left.iter().all(|r| r.0 < end / 2));
    drop(log);
    assert_eq!(read_all(&open(dir.path())), left);
}

#[test]
fn a_small_map_cleans_in_several_passes() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    fill(&log, Compression::None);
    log.roll_now().expect("roll");
    let before = read_all(&log);
    let end = log.log_end_offset();
    // Room for 8 of the 20 keys.
    let mut map = OffsetMap::with_memory(8 * crate::storage::compact::ENTRY_BYTES);
    let mut passes = 0;
    while let Some(stats) = log.clean(end, 10_000, &mut map, &no_stop).expect("clean") {
        passes += 1;
        assert!(passes < 200, "progress");
        if stats.cleaned_to == end {
            break;
        }
    }
    assert!(passes > 1);
    assert_eq!(latest(&read_all(&log)), latest(&before));
}

/// Appends one transactional batch of (key, value) records from producer `pid`.
fn put_txn(log: &PartitionLog, pid: i64, seq: i32, records: &[(Vec<u8>, &str)]) {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000,
            key: Some(Bytes::from(k.clone())),
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut b = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut b, recs.iter(), &options).expect("encode");
    let v = validate(&b, usize::MAX).expect("valid");
    log.append(&[(v[0].0, &b[..])], 0).expect("append");
}

#[test]
fn markers_aborted_records_and_open_transactions_never_remove_a_committed_record() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    // An integer key 1 (its bytes equal a commit marker's key) and a key aborted later.
    let one = vec![0u8, 0, 0, 1];
    let keyed = |k: &[u8], v: &str| {
        (
            Some(Bytes::copy_from_slice(k)),
            Some(Bytes::from(v.to_string())),
            1_000,
        )
    };
    for recs in [
        vec![keyed(&one, "int-one")],
        vec![keyed(b"kept", "committed")],
    ] {
        let b = encode_batch(&recs, Compression::None).expect("encode");
        let v = validate(&b, usize::MAX).expect("valid");
        log.append(&[(v[0].0, &b[..])], 0).expect("append");
    }
    // Producer 7 overwrites `kept` in a transaction that aborts; producer 8 commits one.
    put_txn(&log, 7, 0, &[(b"kept".to_vec(), "aborted")]);
    log.append_marker(7, 0, false, 3, 0).expect("abort marker");
    put_txn(&log, 8, 0, &[(b"other".to_vec(), "v")]);
    log.append_marker(8, 0, true, 3, 0).expect("commit marker");
    // Producer 9's transaction is still open: nothing from it on may be cleaned.
    put_txn(&log, 9, 0, &[(b"kept".to_vec(), "undecided")]);
    log.roll_now().expect("roll");
    let end = log.log_end_offset();
    let mut map = OffsetMap::with_memory(1 << 20);
    let _ = log.clean(end, 10_000, &mut map, &no_stop).expect("clean");
    let after = read_all(&log);
    let values: Vec<(&str, Option<&str>)> = after
        .iter()
        .map(|(_, k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert!(
        after
            .iter()
            .any(|(o, _, v)| *o == 0 && v.as_deref() == Some("int-one")),
        "a marker's key removed the record with key 1: {values:?}"
    );
    assert!(
        after
            .iter()
            .any(|(o, _, v)| *o == 1 && v.as_deref() == Some("committed")),
        "an aborted or undecided record removed the committed one: {values:?}"
    );
    assert!(
        after
            .iter()
            .any(|(_, _, v)| v.as_deref() == Some("undecided")),
        "the open transaction's record is past the last stable offset and stays"
    );
    // The deposed coordinator (epoch 2 < 3) may not write producer 8's markers any more.
    assert!(matches!(
        log.append_marker(8, 0, true, 2, 0),
        Err(LogError::Producer(
            crate::storage::producers::ProducerError::CoordinatorFenced { current: 3, got: 2 }
        ))
    ));
}
