//! Every setting strom knows: its Kafka name, default, kind and meaning (`strom settings`
//! prints this table). Validation and the `Config` built from it are in `mod.rs`.

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Int { min: i64 },
    Bool,
    Text,
}

/// One known setting: its Kafka name, default and meaning.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub(super) kind: Kind,
    pub doc: &'static str,
}

const fn int(name: &'static str, default: &'static str, min: i64, doc: &'static str) -> Setting {
    Setting {
        name,
        default,
        kind: Kind::Int { min },
        doc,
    }
}

const fn text(name: &'static str, default: &'static str, doc: &'static str) -> Setting {
    Setting {
        name,
        default,
        kind: Kind::Text,
        doc,
    }
}

/// Every setting strom knows. Anything else is refused at start.
pub const SETTINGS: &[Setting] = &[
    int("node.id", "1", 0, "This node's id in the cluster."),
    Setting {
        name: "process.roles",
        default: "broker,controller",
        kind: Kind::Text,
        doc: "Roles of this node: `broker,controller` (a voter) or `broker`.",
    },
    Setting {
        name: "listeners",
        default: "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        kind: Kind::Text,
        doc: "Comma-separated NAME://host:port listeners to bind.",
    },
    Setting {
        name: "advertised.listeners",
        default: "",
        kind: Kind::Text,
        doc: "NAME://host:port endpoints given to clients; empty means the bound listeners.",
    },
    Setting {
        name: "listener.security.protocol.map",
        default: "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        kind: Kind::Text,
        doc: "Listener name to security protocol.",
    },
    Setting {
        name: "inter.broker.listener.name",
        default: "",
        kind: Kind::Text,
        doc: "The listener followers fetch from; empty means the first client listener.",
    },
    Setting {
        name: "controller.listener.names",
        default: "CONTROLLER",
        kind: Kind::Text,
        doc: "Listener names used by the Raft quorum.",
    },
    Setting {
        name: "controller.quorum.voters",
        default: "",
        kind: Kind::Text,
        doc: "id@host:port of every voter; empty means this node alone.",
    },
    Setting {
        name: "controller.quorum.bootstrap.servers",
        default: "",
        kind: Kind::Text,
        doc: "host:port of a controller to bootstrap from (KIP-853); strom accepts one entry, for a single node that is its own quorum. Several nodes list controller.quorum.voters.",
    },
    Setting {
        name: "log.dirs",
        default: "./strom-data",
        kind: Kind::Text,
        doc: "Directory holding partition logs and the metadata log.",
    },
    int(
        "num.partitions",
        "1",
        1,
        "Partitions of an auto-created topic or a CreateTopics request with -1.",
    ),
    int(
        "default.replication.factor",
        "1",
        1,
        "Replication factor of auto-created topics.",
    ),
    int(
        "min.insync.replicas",
        "1",
        1,
        "Default minimum ISR size for acks=all.",
    ),
    Setting {
        name: "auto.create.topics.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "Create unknown topics on a Metadata request that allows it.",
    },
    int(
        "log.segment.bytes",
        "1073741824",
        1024,
        "Roll a new segment when the active one reaches this size.",
    ),
    int(
        "log.roll.ms",
        "604800000",
        1,
        "Roll a new segment when the active one is this old.",
    ),
    int(
        "log.retention.ms",
        "604800000",
        -1,
        "Delete segments older than this; -1 keeps them forever.",
    ),
    int(
        "log.retention.minutes",
        "",
        -1,
        "Retention in minutes, used when log.retention.ms is not set; -1 keeps segments forever.",
    ),
    int(
        "log.retention.hours",
        "168",
        -1,
        "Retention in hours, used when neither log.retention.ms nor log.retention.minutes is set.",
    ),
    int(
        "log.roll.hours",
        "168",
        1,
        "Segment age in hours before a roll, used when log.roll.ms is not set.",
    ),
    int(
        "log.retention.bytes",
        "-1",
        -1,
        "Delete old segments while a partition is larger than this; -1 means no limit.",
    ),
    int(
        "log.retention.check.interval.ms",
        "300000",
        1,
        "How often retention runs.",
    ),
    int(
        "log.index.interval.bytes",
        "4096",
        1,
        "Bytes of log between two sparse index entries.",
    ),
    int(
        "log.flush.interval.messages",
        "9223372036854775807",
        1,
        "fsync after this many messages; default leaves durability to the page cache.",
    ),
    int(
        "log.flush.interval.ms",
        "9223372036854775807",
        1,
        "fsync a log whose oldest unflushed record is this old; default leaves durability to the page cache.",
    ),
    int(
        "log.writeback.bytes",
        "4194304",
        0,
        "Start writing a segment's new data to disk (asynchronously, no fsync) every this many bytes appended; smooths writeback so appends do not stall at the kernel's dirty threshold. 0: leave it to the kernel.",
    ),
    text(
        "admin.http.listener",
        "127.0.0.1:9644",
        "host:port of the HTTP admin listener (/metrics in Prometheus text, /health, /ready); empty turns it off.",
    ),
    text(
        "log.cleanup.policy",
        "delete",
        "Default cleanup.policy of topics: `delete` (retention), `compact` (keep the latest record per key) or `compact,delete`.",
    ),
    Setting {
        name: "log.cleaner.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "Run the log cleaner, which compacts topics with cleanup.policy=compact.",
    },
    int(
        "log.cleaner.threads",
        "1",
        1,
        "Background threads compacting logs, each cleaning one log at a time.",
    ),
    text(
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        "Bytes per second all cleaner threads together may read and write (Kafka's default: no limit).",
    ),
    int(
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        1048576,
        "Memory, over all cleaner threads, for the key-to-offset map of one cleaning pass; a pass covers as much dirty log as its keys fit in.",
    ),
    text(
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        "Default min.cleanable.dirty.ratio: a log is cleaned once this share of it has not been cleaned yet.",
    ),
    int(
        "log.cleaner.delete.retention.ms",
        "86400000",
        0,
        "Default delete.retention.ms: how long a tombstone (a record with no value) is kept after the cleaner first passes it.",
    ),
    int(
        "log.cleaner.min.compaction.lag.ms",
        "0",
        0,
        "Default min.compaction.lag.ms: a record stays uncompacted at least this long.",
    ),
    int(
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        1,
        "Default max.compaction.lag.ms: a log whose oldest dirty record is this old is cleaned whatever its dirty ratio.",
    ),
    int(
        "log.cleaner.backoff.ms",
        "15000",
        0,
        "How long a cleaner thread sleeps when no log needs cleaning.",
    ),
    int(
        "log.flush.scheduler.interval.ms",
        "1000",
        1,
        "How often logs are checked against log.flush.interval.ms (topic flush.ms).",
    ),
    int(
        "message.max.bytes",
        "1048588",
        0,
        "Largest record batch accepted (MESSAGE_TOO_LARGE above it).",
    ),
    Setting {
        name: "log.message.timestamp.type",
        default: "CreateTime",
        kind: Kind::Text,
        doc: "Record timestamps: `CreateTime` (the producer's) or `LogAppendTime` (the broker stamps each batch on append).",
    },
    int(
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
        0,
        "CreateTime: refuse a batch (INVALID_TIMESTAMP) whose first timestamp is more than this far in the past.",
    ),
    int(
        "log.message.timestamp.after.max.ms",
        "3600000",
        0,
        "CreateTime: refuse a batch (INVALID_TIMESTAMP) whose largest timestamp is more than this far in the future.",
    ),
    int(
        "max.connections",
        "2147483647",
        0,
        "Most client connections this broker keeps open, over all listeners; more are closed at once.",
    ),
    int(
        "max.connections.per.ip",
        "2147483647",
        0,
        "Most client connections from one address; more are closed at once.",
    ),
    text(
        "max.connections.per.ip.overrides",
        "",
        "Per-address exceptions to max.connections.per.ip: host-or-ip:count, comma-separated (e.g. `10.0.0.7:50,loader.example:2000`); host names are resolved at start.",
    ),
    int(
        "connections.max.idle.ms",
        "600000",
        -1,
        "Close a client connection with no request in flight and nothing sent or received for this long; -1 never.",
    ),
    int(
        "queued.max.request.bytes",
        "-1",
        -1,
        "Request bytes the broker holds at once, over all connections (read and not yet answered); a reader waits for room before reading a frame's body. -1: no bound.",
    ),
    text(
        "ssl.keystore.type",
        "PEM",
        "Format of ssl.keystore.location; only PEM is read (Kafka's default, JKS, is refused).",
    ),
    text(
        "ssl.keystore.location",
        "",
        "PEM file with a TLS listener's private key (unencrypted) and certificate chain. Per listener: listener.name.<name>.ssl.keystore.location.",
    ),
    text(
        "ssl.key.password",
        "",
        "Accepted by name only: encrypted private keys are refused at start.",
    ),
    text(
        "ssl.truststore.type",
        "PEM",
        "Format of ssl.truststore.location; only PEM is read.",
    ),
    text(
        "ssl.truststore.location",
        "",
        "PEM file of CA certificates that client certificates must chain to.",
    ),
    text(
        "ssl.client.auth",
        "none",
        "Client certificates on TLS listeners: none, requested or required.",
    ),
    text(
        "ssl.enabled.protocols",
        "TLSv1.2,TLSv1.3",
        "TLS versions a TLS listener accepts.",
    ),
    text(
        "ssl.cipher.suites",
        "",
        "IANA names of the cipher suites a TLS listener accepts; empty: rustls' safe defaults.",
    ),
    int(
        "ssl.certificate.reload.ms",
        "5000",
        0,
        "How often TLS listeners check their key and certificate files and load a changed pair without a restart; 0 never.",
    ),
    text(
        "sasl.enabled.mechanisms",
        "GSSAPI",
        "SASL mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Kafka's default, GSSAPI, is not served: set this on any SASL listener).",
    ),
    text(
        "sasl.plain.users.file",
        "",
        "File of `name=password` lines: the users PLAIN accepts (read at start; passwords are never logged).",
    ),
    int(
        "connections.max.reauth.ms",
        "0",
        0,
        "A SASL session's lifetime (KIP-368): the client must re-authenticate before it ends or its connection is closed; 0 never.",
    ),
    text(
        "scram.bootstrap.credentials",
        "",
        "SCRAM credentials written when the cluster is formed, kafka-storage's --add-scram syntax: `SCRAM-SHA-512=[name=admin,password=admin-secret]`, several separated by `;`.",
    ),
    text(
        "sasl.mechanism.inter.broker.protocol",
        "GSSAPI",
        "The SASL mechanism brokers use with each other when inter.broker.listener.name is a SASL listener (Kafka's default, GSSAPI, is not spoken: set PLAIN or SCRAM-SHA-*).",
    ),
    text(
        "sasl.jaas.config",
        "",
        "JAAS line with the username=\"…\" password=\"…\" brokers present to each other over SASL; per listener and mechanism: listener.name.<l>.<mechanism>.sasl.jaas.config. Never logged or described.",
    ),
    text(
        "authorizer.class.name",
        "",
        "Turns ACLs on: org.apache.kafka.metadata.authorizer.StandardAuthorizer (Kafka's name, accepted as is). Empty: no authorization.",
    ),
    text(
        "super.users",
        "",
        "Principals allowed everything whatever the ACLs say, separated by `;` (User:admin;User:broker).",
    ),
    Setting {
        name: "allow.everyone.if.no.acl.found",
        default: "false",
        kind: Kind::Bool,
        doc: "With the authorizer on, whether a resource that no ACL names is open to everyone.",
    },
    int(
        "socket.request.max.bytes",
        "104857600",
        1,
        "Largest request frame; a larger one closes the connection.",
    ),
    int(
        "socket.send.buffer.bytes",
        "-1",
        -1,
        "SO_SNDBUF of client and replication connections; -1 keeps the kernel's autotuning (Kafka's default is 102400, which caps a connection's window).",
    ),
    int(
        "socket.receive.buffer.bytes",
        "-1",
        -1,
        "SO_RCVBUF of client and replication connections; -1 keeps the kernel's autotuning (Kafka's default is 102400).",
    ),
    int(
        "log.max.open.files",
        "0",
        0,
        "strom: segment .log files kept open at once; past it the least recently used are closed and reopened on demand (idle partitions hold no descriptor). 0 picks a quarter of the process's open-file limit, between 64 and 4096.",
    ),
    int(
        "num.recovery.threads.per.data.dir",
        "1",
        1,
        "Threads opening and recovering partition logs at start.",
    ),
    int(
        "replica.lag.time.max.ms",
        "30000",
        1,
        "How long a follower may lag before it leaves the ISR.",
    ),
    int(
        "leader.replication.throttled.rate",
        "9223372036854775807",
        0,
        "Bytes per second this broker sends, as leader, to followers of its throttled replicas (topic config leader.replication.throttled.replicas); usually set at run time, per broker, with AlterConfigs.",
    ),
    int(
        "follower.replication.throttled.rate",
        "9223372036854775807",
        0,
        "Bytes per second this broker fetches, as follower, for its throttled replicas (topic config follower.replication.throttled.replicas); usually set at run time, per broker, with AlterConfigs.",
    ),
    int(
        "broker.session.timeout.ms",
        "2000",
        100,
        "Fence a broker whose heartbeats stop for this long (Kafka's default is 9000; strom fails over faster).",
    ),
    int(
        "broker.heartbeat.interval.ms",
        "500",
        10,
        "Interval between broker heartbeats to the controller.",
    ),
    int(
        "broker.lease.ms",
        "1500",
        0,
        "strom: a broker that has not had a heartbeat answered by a controller with a live quorum for this long stops acknowledging produce (NOT_LEADER_OR_FOLLOWER) until it has; shorter than broker.session.timeout.ms, so a cut-off leader stops taking writes before another is elected. 0 turns it off.",
    ),
    Setting {
        name: "auto.leader.rebalance.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "Move leadership back to each partition's preferred replica once it is in the ISR again.",
    },
    int(
        "leader.imbalance.check.interval.seconds",
        "300",
        1,
        "How often the controller looks for partitions not led by their preferred replica.",
    ),
    Setting {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: Kind::Bool,
        doc: "Let a replica outside the ISR lead when no ISR member is alive (may lose acknowledged data).",
    },
    int(
        "controller.quorum.request.timeout.ms",
        "2000",
        1,
        "Bound on waiting for the metadata quorum to commit an admin write.",
    ),
    int(
        "producer.id.expiration.ms",
        "86400000",
        -1,
        "Forget an idempotent producer's sequence state after this long without a write.",
    ),
    int(
        "metadata.log.snapshot.interval.records",
        "1000",
        1,
        "Snapshot the metadata state after this many new metadata records, so the log stays bounded.",
    ),
    Setting {
        name: "fetch.zero.copy.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "strom: send consumer fetch data from segment files with sendfile (no copy through user space).",
    },
    int(
        "transaction.state.log.num.partitions",
        "50",
        1,
        "Partitions of `__transaction_state`, created on first use of a transactional id (fixed once created).",
    ),
    int(
        "transaction.state.log.replication.factor",
        "3",
        1,
        "Replication factor of `__transaction_state`; capped (with a warning) to the live brokers.",
    ),
    int(
        "transaction.state.log.min.isr",
        "2",
        1,
        "min.insync.replicas of `__transaction_state` (capped to its replication factor).",
    ),
    int(
        "transaction.state.log.segment.bytes",
        "104857600",
        1024,
        "Segment size of `__transaction_state` (set when it is created); it is compacted.",
    ),
    int(
        "transaction.max.timeout.ms",
        "900000",
        1,
        "Largest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT above it).",
    ),
    Setting {
        name: "transaction.partition.verification.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "A partition leader asks the transaction coordinator whether the partition is in the producer's transaction before it appends the transaction's first batch there (KIP-890), so a late or stray batch cannot open a transaction nobody will end.",
    },
    int(
        "transactional.id.expiration.ms",
        "604800000",
        1,
        "A transactional id with no transaction for this long is forgotten.",
    ),
    int(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        1,
        "How often the coordinator looks for transactions open longer than their timeout, and aborts them.",
    ),
    int(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "3600000",
        1,
        "How often the coordinator looks for expired transactional ids.",
    ),
    int(
        "offsets.topic.num.partitions",
        "50",
        1,
        "Partitions of `__consumer_offsets`, created on first use (fixed once created).",
    ),
    int(
        "offsets.topic.segment.bytes",
        "104857600",
        1024,
        "Segment size of `__consumer_offsets` (set when it is created); the cleaner compacts every segment but the newest.",
    ),
    int(
        "offsets.topic.replication.factor",
        "3",
        1,
        "Replication factor of `__consumer_offsets`; capped (with a warning) to the live brokers.",
    ),
    int(
        "offsets.retention.minutes",
        "10080",
        1,
        "Committed offsets of a group with no members expire after this long.",
    ),
    int(
        "offsets.retention.check.interval.ms",
        "600000",
        1,
        "How often expired offsets are looked for.",
    ),
    int(
        "offsets.commit.timeout.ms",
        "5000",
        1,
        "How long an offset commit waits for `__consumer_offsets` replication.",
    ),
    int(
        "offset.metadata.max.bytes",
        "4096",
        0,
        "Largest metadata string a committed offset may carry.",
    ),
    int(
        "group.min.session.timeout.ms",
        "6000",
        1,
        "Smallest session timeout a consumer group member may ask for.",
    ),
    int(
        "group.max.session.timeout.ms",
        "1800000",
        1,
        "Largest session timeout a consumer group member may ask for.",
    ),
    int(
        "group.initial.rebalance.delay.ms",
        "3000",
        0,
        "How long a new (empty) group waits for more members before its first rebalance.",
    ),
    int(
        "group.max.size",
        "2147483647",
        1,
        "Most members a consumer group may have.",
    ),
    int(
        "shutdown.timeout.ms",
        "5000",
        1,
        "How long a clean shutdown may take before it is abandoned.",
    ),
    int(
        "controlled.shutdown.linger.ms",
        "250",
        0,
        "Once a controlled shutdown has moved this broker's leadership away, keep answering clients this long (NOT_LEADER_OR_FOLLOWER naming the new leaders) before closing their connections, so they move on the answer rather than on a reconnect.",
    ),
];
