//! Transactions through librdkafka's transactional producer: commits and aborts across
//! partitions of two topics with offsets sent in the transaction, `read_committed` consumers
//! that see exactly the committed records, the last stable offset in ListOffsets, fencing by a
//! second producer of the same transactional id, a crashed producer's transaction aborted by
//! its timeout, and a commit that survives the coordinator's SIGKILL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, TimestampType};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom::tools::Client;

use crate::cluster::{create_topic, start_three};
use crate::harness::{consumer, flush, producer, send_to, wait_until, Broker, Cluster, Recorder};

const T: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> BaseProducer<Recorder> {
    let mut conf = vec![("transactional.id", id), ("linger.ms", "1")];
    conf.extend_from_slice(extra);
    let p = producer(bootstrap, &conf);
    p.init_transactions(T).expect("init_transactions");
    p
}

/// Every record's payload in `topic`'s partitions as a consumer at `isolation` reads them,
/// reading until `expect` arrived or `timeout` passed.
fn read(
    bootstrap: &str,
    topics: &[(&str, i32)],
    isolation: &str,
    expect: usize,
    timeout: Duration,
) -> Vec<String> {
    let c = consumer(bootstrap, &[("isolation.level", isolation)]);
    let mut tpl = TopicPartitionList::new();
    for (t, n) in topics {
        for p in 0..*n {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .expect("tpl");
        }
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < expect && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// (low, high) watermarks of a partition as a consumer at `isolation` is told them (librdkafka
/// asks ListOffsets with its isolation level: the high one is the last stable offset for
/// `read_committed`).
fn high(bootstrap: &str, topic: &str, partition: i32, isolation: &str) -> i64 {
    let c = consumer(bootstrap, &[("isolation.level", isolation)]);
    c.fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
        .1
}

/// Sends `n` records "`tag`-i" to each partition, inside the producer's open transaction.
fn write(p: &BaseProducer<Recorder>, parts: &[(&str, i32)], tag: &str, n: usize) {
    for (t, part) in parts {
        for i in 0..n {
            let v = format!("{tag}-{t}-{part}-{i}");
            send_to(p, t, Some(*part), i as u64, v.as_bytes());
        }
    }
    flush(p);
    assert!(
        p.context().errors.lock().expect("lock").is_empty(),
        "{:?}",
        p.context().errors.lock()
    );
}

fn expected(parts: &[(&str, i32)], tag: &str, n: usize) -> Vec<String> {
    parts
        .iter()
        .flat_map(|(t, p)| (0..n).map(move |i| format!("{tag}-{t}-{p}-{i}")))
        .collect()
}

fn set(v: Vec<String>) -> BTreeSet<String> {
    let len = v.len();
    let s: BTreeSet<String> = v.into_iter().collect();
    assert_eq!(s.len(), len, "no record twice");
    s
}

/// The group's committed offset of one partition.
fn committed(bootstrap: &str, group: &str, topic: &str, partition: i32) -> i64 {
    let c: BaseConsumer = consumer(bootstrap, &[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    match got.elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => -1,
    }
}

#[test]
fn read_committed_consumers_see_committed_transactions_whole_and_aborted_ones_never() {
    // Three nodes: kept apart from the chaos scenarios' failover timings.
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs = start_three(&mut cluster);
    assert_eq!(create_topic(&bs, "ta", 2, 3), Some(0));
    assert_eq!(create_topic(&bs, "tb", 1, 3), Some(0));
    let parts = [("ta", 0), ("ta", 1), ("tb", 0)];
    let p = txn_producer(&bs, "tx-main", &[]);
    let group = consumer(&bs, &[("group.id", "g-txn")]);
    let meta = group.group_metadata().expect("group metadata");

    // 1: committed, with the group's offset of ta/0 at 7.
    p.begin_transaction().expect("begin");
    write(&p, &parts, "one", 10);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("ta", 0, Offset::Offset(7))
        .expect("tpl");
    p.send_offsets_to_transaction(&offsets, &meta, T)
        .expect("send offsets");
    p.commit_transaction(T).expect("commit");
    assert_eq!(
        committed(&bs, "g-txn", "ta", 0),
        7,
        "committed with the transaction"
    );

    // 2: aborted, with an offset that must never show.
    p.begin_transaction().expect("begin");
    write(&p, &parts, "two", 10);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("ta", 0, Offset::Offset(99))
        .expect("tpl");
    p.send_offsets_to_transaction(&offsets, &meta, T)
        .expect("send offsets");
    p.abort_transaction(T).expect("abort");
    assert_eq!(
        committed(&bs, "g-txn", "ta", 0),
        7,
        "an aborted commit is dropped"
    );

    // 3: committed again.
    p.begin_transaction().expect("begin");
    write(&p, &parts, "three", 5);
    p.commit_transaction(T).expect("commit");

    let mut want = expected(&parts, "one", 10);
    want.extend(expected(&parts, "three", 5));
    let topics = [("ta", 2), ("tb", 1)];
    let got = set(read(&bs, &topics, "read_committed", want.len(), T));
    assert_eq!(
        got,
        set(want.clone()),
        "read_committed: exactly the committed records"
    );
    let mut all = want.clone();
    all.extend(expected(&parts, "two", 10));
    let got = set(read(&bs, &topics, "read_uncommitted", all.len(), T));
    assert_eq!(got, set(all), "read_uncommitted: every record");

    // Each partition: 10 + 10 + 5 records and three markers.
    for (t, part) in parts {
        assert_eq!(high(&bs, t, part, "read_uncommitted"), 28, "{t}/{part}");
        assert_eq!(high(&bs, t, part, "read_committed"), 28, "{t}/{part}");
    }
    // An open transaction holds the last stable offset at its first record.
    p.begin_transaction().expect("begin");
    write(&p, &parts, "four", 3);
    for (t, part) in parts {
        assert_eq!(high(&bs, t, part, "read_uncommitted"), 31, "{t}/{part}");
        assert_eq!(
            high(&bs, t, part, "read_committed"),
            28,
            "{t}/{part}: the LSO"
        );
    }
    let got = read(
        &bs,
        &topics,
        "read_committed",
        want.len() + 1,
        Duration::from_secs(3),
    );
    assert_eq!(
        got.len(),
        want.len(),
        "nothing of the open transaction is read"
    );
    // `strom txn` shows the open transaction, its partitions, and every id.
    let cli = |args: &[&str]| {
        let mut all = vec!["txn"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--bootstrap", &bs]);
        crate::harness::strom_cli(&all, "")
    };
    let (ok, out, err) = cli(&["describe", "tx-main"]);
    assert!(ok, "{err}");
    assert!(out.contains("state:            Ongoing"), "{out}");
    assert!(
        out.contains("ta-0") && out.contains("ta-1") && out.contains("tb-0"),
        "{out}"
    );
    let (ok, out, err) = cli(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("tx-main") && l.ends_with("Ongoing")),
        "{out}"
    );
    let (ok, _, err) = cli(&["describe", "nobody"]);
    assert!(!ok && err.contains("not known"), "{err}");
    p.commit_transaction(T).expect("commit");
    for (t, part) in parts {
        wait_until("the LSO passes the commit", T, || {
            high(&bs, t, part, "read_committed") == 32
        });
    }
    // KIP-890 across brokers: leaders other than the coordinator ask it too, and refuse a
    // batch of a transaction that never added their partition.
    let mut stray = RawTxn::init(&bs, "tx-stray-3", 60_000);
    for (t, part) in parts {
        assert_eq!(
            stray.produce(t, part, 0, 9),
            INVALID_TXN_STATE,
            "{t}/{part}"
        );
        assert_eq!(high(&bs, t, part, "read_uncommitted"), 32, "{t}/{part}");
    }
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    // Three nodes: kept apart from the chaos scenarios' failover timings.
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs = start_three(&mut cluster);
    assert_eq!(create_topic(&bs, "tf", 1, 3), Some(0));
    let old = txn_producer(&bs, "tx-fence", &[]);
    old.begin_transaction().expect("begin");
    write(&old, &[("tf", 0)], "old", 3);
    // The new producer's init aborts the old one's open transaction and fences it.
    let new = txn_producer(&bs, "tx-fence", &[]);
    let err = old
        .commit_transaction(T)
        .expect_err("the fenced producer cannot commit");
    let text = err.to_string();
    assert!(
        text.contains("fenced") || text.contains("Fenced") || text.contains("epoch"),
        "{text}"
    );
    new.begin_transaction().expect("begin");
    write(&new, &[("tf", 0)], "new", 3);
    new.commit_transaction(T).expect("commit");
    let got = set(read(&bs, &[("tf", 1)], "read_committed", 3, T));
    assert_eq!(got, set(expected(&[("tf", 0)], "new", 3)));
    let extra = read(
        &bs,
        &[("tf", 1)],
        "read_committed",
        4,
        Duration::from_secs(2),
    );
    assert_eq!(
        extra.len(),
        3,
        "the fenced producer's records never show: {extra:?}"
    );
}

/// A transactional producer driven by hand through the protocol: InitProducerId,
/// AddPartitionsToTxn, transactional Produce, EndTxn — so a test can send what librdkafka never
/// would (a batch outside the transaction, a producer that vanishes).
struct RawTxn {
    c: Client,
    bootstrap: String,
    id: String,
    producer: (ProducerId, i16),
}

/// The address of the partition's leader, from Metadata.
fn leader_addr(bootstrap: &str, topic: &str, partition: i32) -> String {
    let c = consumer(bootstrap, &[]);
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let leader = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .expect("partition")
        .leader();
    let b = md
        .brokers()
        .iter()
        .find(|b| b.id() == leader)
        .expect("leader's endpoint");
    format!("{}:{}", b.host(), b.port())
}

impl RawTxn {
    fn init(bootstrap: &str, id: &str, timeout_ms: i32) -> RawTxn {
        let mut c = Client::connect(bootstrap).expect("connect");
        let found: FindCoordinatorResponse = c
            .call(
                ApiKey::FindCoordinator,
                3,
                &FindCoordinatorRequest::default()
                    .with_key(s(id))
                    .with_key_type(1),
            )
            .expect("find coordinator");
        assert_eq!(found.error_code, 0, "{:?}", found.error_message);
        // The coordinator's requests go to the coordinator.
        let mut c = Client::connect(&format!("{}:{}", found.host, found.port)).expect("connect");
        let init: InitProducerIdResponse = c
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s(id))))
                    .with_transaction_timeout_ms(timeout_ms)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .expect("init");
        assert_eq!(init.error_code, 0);
        RawTxn {
            c,
            bootstrap: bootstrap.to_string(),
            id: id.to_string(),
            producer: (init.producer_id, init.producer_epoch),
        }
    }

    fn add(&mut self, topic: &str, partition: i32) {
        let add: AddPartitionsToTxnResponse = self
            .c
            .call(
                ApiKey::AddPartitionsToTxn,
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(s(&self.id)))
                    .with_v3_and_below_producer_id(self.producer.0)
                    .with_v3_and_below_producer_epoch(self.producer.1)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![partition])]),
            )
            .expect("add partitions");
        let code =
            add.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
        assert_eq!(code, 0);
    }

    /// One transactional record at `sequence`, as Produce `version`, sent to the partition's
    /// leader; returns the partition's error code.
    fn produce(&mut self, topic: &str, partition: i32, sequence: i32, version: i16) -> i16 {
        let record = Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: self.producer.0 .0,
            producer_epoch: self.producer.1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence,
            timestamp: strom::types::now_ms(),
            key: None,
            value: Some(bytes::Bytes::from(format!("{}-{sequence}", self.id))),
            headers: Default::default(),
        };
        let batch = crate::harness::encode_record(&record, Compression::None);
        let req = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&self.id))))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let mut leader =
            Client::connect(&leader_addr(&self.bootstrap, topic, partition)).expect("connect");
        let r: ProduceResponse = leader
            .call(ApiKey::Produce, version, &req)
            .expect("produce");
        r.responses[0].partition_responses[0].error_code
    }

    /// TxnOffsetCommit of `offset` for `group` on partition 0 of `topic`, as `version`, to
    /// the group's coordinator; returns the partition's error code.
    fn commit_offset(&mut self, group: &str, topic: &str, offset: i64, version: i16) -> i16 {
        let found: FindCoordinatorResponse = self
            .c
            .call(
                ApiKey::FindCoordinator,
                3,
                &FindCoordinatorRequest::default().with_key(s(group)),
            )
            .expect("find group coordinator");
        assert_eq!(found.error_code, 0, "{:?}", found.error_message);
        let mut at = Client::connect(&format!("{}:{}", found.host, found.port)).expect("connect");
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(self.producer.0)
            .with_producer_epoch(self.producer.1)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let r: TxnOffsetCommitResponse = at
            .call(ApiKey::TxnOffsetCommit, version, &req)
            .expect("txn offset commit");
        r.topics[0].partitions[0].error_code
    }

    fn end(&mut self, commit: bool) {
        let r: EndTxnResponse = self
            .c
            .call(
                ApiKey::EndTxn,
                3,
                &EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(self.producer.0)
                    .with_producer_epoch(self.producer.1)
                    .with_committed(commit),
            )
            .expect("end txn");
        assert_eq!(r.error_code, 0);
    }
}

/// A transactional producer that writes one record and vanishes (no commit, no abort).
fn crash_mid_transaction(bootstrap: &str, id: &str, timeout_ms: i32, topic: &str) {
    let mut t = RawTxn::init(bootstrap, id, timeout_ms);
    t.add(topic, 0);
    assert_eq!(t.produce(topic, 0, 0, 9), 0);
}

const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_ABORTABLE: i16 = 120;

/// KIP-890 part 1: a transaction's first batch on a partition is appended only if the
/// coordinator has the partition in that transaction. A batch sent without AddPartitionsToTxn,
/// or one arriving after its transaction was aborted, is refused — it would otherwise open a
/// transaction no coordinator ends and hold every `read_committed` reader at its offset. With
/// `transaction.partition.verification.enable=false` the stray batch is taken and holds them
/// until `strom txn abort` ends it.
#[test]
fn a_batch_outside_its_transaction_is_refused_instead_of_hanging_read_committed_readers() {
    let broker = Broker::start(&[]);
    let bs = broker.bootstrap();
    assert_eq!(create_topic(&bs, "tv", 2, 1), Some(0));
    let mut t = RawTxn::init(&bs, "tx-stray", 60_000);
    assert_eq!(t.produce("tv", 0, 0, 9), INVALID_TXN_STATE, "never added");
    assert_eq!(
        t.produce("tv", 0, 0, 11),
        TRANSACTION_ABORTABLE,
        "Produce v11 knows TRANSACTION_ABORTABLE"
    );
    // Added, it goes in; then the producer aborts and a late batch of the ended transaction
    // comes in behind the marker.
    t.add("tv", 1);
    assert_eq!(t.produce("tv", 1, 0, 9), 0);
    assert_eq!(
        t.produce("tv", 1, 1, 9),
        0,
        "the open transaction's next batch"
    );
    t.end(false);
    wait_until("the abort marker is stable", T, || {
        high(&bs, "tv", 1, "read_committed") == 3
    });
    assert_eq!(t.produce("tv", 1, 2, 9), INVALID_TXN_STATE, "late batch");
    // Plain records behind it are readable at once: nothing holds the last stable offset.
    let p = producer(&bs, &[]);
    for part in [0, 1] {
        send_to(&p, "tv", Some(part), 0, b"plain");
    }
    flush(&p);
    assert_eq!(high(&bs, "tv", 0, "read_committed"), 1);
    assert_eq!(high(&bs, "tv", 1, "read_committed"), 4);
    // Offsets in a transaction that never added the group (no AddOffsetsToTxn) are refused
    // too: written, they would stay pending — and the group's stable offsets unreadable.
    let mut lone = RawTxn::init(&bs, "tx-offsets", 60_000);
    assert_eq!(lone.commit_offset("g-stray", "tv", 1, 3), INVALID_TXN_STATE);
    assert_eq!(
        lone.commit_offset("g-stray", "tv", 1, 4),
        TRANSACTION_ABORTABLE
    );
    assert_eq!(committed(&bs, "g-stray", "tv", 0), -1);
    drop(broker);

    let off = Broker::start(&["transaction.partition.verification.enable=false"]);
    let bs = off.bootstrap();
    assert_eq!(create_topic(&bs, "tv", 1, 1), Some(0));
    let mut t = RawTxn::init(&bs, "tx-stray", 60_000);
    assert_eq!(
        t.produce("tv", 0, 0, 9),
        0,
        "unverified, the stray batch is taken"
    );
    let p = producer(&bs, &[]);
    send_to(&p, "tv", Some(0), 0, b"plain");
    flush(&p);
    assert_eq!(high(&bs, "tv", 0, "read_uncommitted"), 2);
    assert_eq!(
        high(&bs, "tv", 0, "read_committed"),
        0,
        "the stray batch holds read_committed readers"
    );
    // Such a hanging transaction is aborted by hand, as with kafka-transactions.sh abort.
    let abort = |start: &str| {
        crate::harness::strom_cli(
            &[
                "txn",
                "abort",
                "--topic",
                "tv",
                "--partition",
                "0",
                "--start-offset",
                start,
                "--bootstrap",
                &bs,
            ],
            "",
        )
    };
    let (ok, _, err) = abort("1");
    assert!(!ok && err.contains("starts at offset 1"), "{err}");
    let (ok, out, err) = abort("0");
    assert!(ok, "{err}");
    assert!(out.contains("aborted the transaction of producer"), "{out}");
    wait_until("the hanging transaction is aborted", T, || {
        high(&bs, "tv", 0, "read_committed") == 3
    });
    let got = read(&bs, &[("tv", 1)], "read_committed", 1, T);
    assert_eq!(got, ["plain"], "the aborted record is skipped");
}

#[test]
fn a_transaction_left_open_by_a_dead_producer_is_aborted_after_its_timeout() {
    let broker =
        Broker::start(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=200"]);
    let bs = broker.bootstrap();
    assert_eq!(create_topic(&bs, "tc", 1, 1), Some(0));
    let started = Instant::now();
    crash_mid_transaction(&bs, "tx-crash", 3000, "tc");
    // A healthy producer commits behind it: read_committed cannot pass the open transaction.
    let p = txn_producer(&bs, "tx-live", &[]);
    p.begin_transaction().expect("begin");
    write(&p, &[("tc", 0)], "live", 4);
    p.commit_transaction(T).expect("commit");
    if started.elapsed() < Duration::from_millis(2500) {
        let early = read(
            &bs,
            &[("tc", 1)],
            "read_committed",
            1,
            Duration::from_millis(500),
        );
        assert!(early.is_empty(), "read past an open transaction: {early:?}");
        assert_eq!(
            high(&bs, "tc", 0, "read_committed"),
            0,
            "the LSO waits at its start"
        );
    }
    // After the timeout the coordinator aborts it and consumers move past it.
    let got = read(&bs, &[("tc", 1)], "read_committed", 4, T);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "moved past it before its timeout ({:?})",
        started.elapsed()
    );
    assert_eq!(set(got), set(expected(&[("tc", 0)], "live", 4)));
    let all = read(&bs, &[("tc", 1)], "read_uncommitted", 5, T);
    assert!(all.contains(&"tx-crash-0".to_string()), "{all:?}");
}

#[test]
fn a_commit_survives_the_sigkill_of_the_transaction_coordinator() {
    // Three nodes: kept apart from the chaos scenarios' failover timings.
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs = start_three(&mut cluster);
    assert_eq!(create_topic(&bs, "tk", 3, 3), Some(0));
    let parts = [("tk", 0), ("tk", 1), ("tk", 2)];
    let p = txn_producer(&bs, "tx-kill", &[("transaction.timeout.ms", "60000")]);
    p.begin_transaction().expect("begin");
    write(&p, &parts, "k", 5);
    // Kill the broker coordinating this transactional id, between produce and commit.
    let mut c = Client::connect(&bs).expect("connect");
    let found: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(s("tx-kill"))
                .with_key_type(1),
        )
        .expect("find coordinator");
    let victim = found.node_id.0;
    assert!(victim > 0);
    cluster.node(victim).kill();
    let alive = (1..=3).find(|n| *n != victim).expect("a survivor");
    let bs_alive = cluster.bootstrap(alive);
    let outcome = p.commit_transaction(T);
    let committed_it = outcome.is_ok();
    if let Err(e) = &outcome {
        // A commit whose outcome is unknown must be abortable, and then nothing shows.
        eprintln!("commit after the coordinator's kill failed: {e}; aborting");
        p.abort_transaction(T).expect("abort after a failed commit");
    }
    let want = if committed_it {
        expected(&parts, "k", 5)
    } else {
        Vec::new()
    };
    let got = read(
        &bs_alive,
        &[("tk", 3)],
        "read_committed",
        want.len() + 1,
        Duration::from_secs(10),
    );
    assert_eq!(
        set(got),
        set(want),
        "read_committed agrees with what the producer was told"
    );
    assert!(
        committed_it,
        "the commit went through after the coordinator moved"
    );
}

#[test]
fn kafka_pythons_transactional_producer_commits_and_aborts() {
    let broker = Broker::start(&[]);
    let bs = broker.bootstrap();
    assert_eq!(create_topic(&bs, "pyt", 1, 1), Some(0));
    let script = r#"
import json, sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
p = KafkaProducer(bootstrap_servers=sys.argv[1], transactional_id="py-tx")
p.init_transactions()
p.begin_transaction()
for i in range(5):
    p.send("pyt", value=("kept-%d" % i).encode(), partition=0)
p.send_offsets_to_transaction({TopicPartition("pyt", 0): OffsetAndMetadata(3, "", -1)}, "py-g")
p.commit_transaction()
p.begin_transaction()
for i in range(5):
    p.send("pyt", value=("dropped-%d" % i).encode(), partition=0)
p.flush()
p.abort_transaction()
p.close()
c = KafkaConsumer(bootstrap_servers=sys.argv[1], isolation_level="read_committed",
                  auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
c.assign([TopicPartition("pyt", 0)])
seen = [m.value.decode() for m in c]
c.close()
print(json.dumps({"seen": seen}))
"#;
    let v = crate::harness::python_json(script, &bs);
    let kept: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
    assert_eq!(
        v["seen"],
        serde_json::json!(kept),
        "kafka-python read_committed"
    );
    // librdkafka agrees, and sees the offset committed in the transaction.
    let got = read(&bs, &[("pyt", 1)], "read_committed", 5, T);
    assert_eq!(got, kept);
    assert_eq!(committed(&bs, "py-g", "pyt", 0), 3);
    assert_eq!(
        high(&bs, "pyt", 0, "read_uncommitted"),
        12,
        "10 records, 2 markers"
    );
    // The coordinator counts what it completed.
    let completed = |result: &str| {
        crate::metrics::metric(
            &broker,
            &format!("strom_transactions_completed_total{{result=\"{result}\"}}"),
        )
    };
    wait_until("both transactions counted", T, || {
        completed("commit") == Some(1.0) && completed("abort") == Some(1.0)
    });
    assert_eq!(
        crate::metrics::metric(&broker, "strom_transactions{state=\"CompleteAbort\"}"),
        Some(1.0)
    );
}
