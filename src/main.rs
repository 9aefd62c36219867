//! The `strom` command line: a thin shell over `strom::node`.

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use strom::config::{Config, SETTINGS};
use strom::node::Node;

#[global_allocator]
static ALLOCATOR: strom::alloc::Allocator = strom::alloc::Allocator;

/// A Kafka-compatible streaming broker with a Raft metadata quorum (no ZooKeeper).
///
/// With no arguments, serves a single-node broker: clients on 127.0.0.1:9092, the controller
/// on 127.0.0.1:9093, data in ./strom-data. Settings use Kafka's property names; sources, later
/// wins: built-in defaults, --config FILE, STROM_* environment variables (STROM_LOG_DIRS for
/// log.dirs), --set name=value. `strom settings` lists every setting.
#[derive(Parser)]
#[command(name = "strom", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (the default).
    Serve(ServeArgs),
    /// List every setting with its default and meaning.
    Settings,
    /// Run a local cluster of N nodes as child processes (clients on 9092, 9192, 9292, ...).
    Dev {
        /// How many nodes (all voters).
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Client port of node 1; node i listens on base + 100*(i-1), its controller on that + 1.
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
        /// Where the nodes keep their data (node-1, node-2, ...).
        #[arg(long, default_value = "./strom-dev")]
        data: String,
        /// Start from empty data.
        #[arg(long)]
        clean: bool,
        /// A setting for every node; repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Connect like a client, fetch metadata, and try every advertised broker endpoint from
    /// here; explains what is wrong when a client could not reach the cluster.
    Doctor {
        #[command(flatten)]
        reach: Reach,
    },
    /// Exit 0 only when this node (by its configuration, as for `serve`) is registered,
    /// unfenced and serving on its client listener; for container health checks.
    Health(ServeArgs),
    /// Inspect a running cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Consumer groups: list, describe (members, offsets, lag), reset offsets.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Transactions: list every transactional id, describe one (ListTransactions,
    /// DescribeTransactions).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// ACLs: add, list, remove (CreateAcls, DescribeAcls, DeleteAcls).
    #[command(subcommand)]
    Acl(AclCommand),
    /// SCRAM users: add (or change the password), list, remove.
    #[command(subcommand)]
    User(UserCommand),
    /// Topics: create, list, describe, alter-config, add-partitions, delete.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write stdin's lines to a topic, one record each.
    Produce {
        /// The topic.
        topic: String,
        /// Split each line into key and value at the first occurrence of this.
        #[arg(long, short = 'K')]
        key_separator: Option<String>,
        /// A header on every record, name=value; repeatable.
        #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Write every record to this partition (default: by key as Kafka's clients do, keyless
        /// lines round-robin).
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        /// 0, 1 or -1 (all).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        acks: i16,
        /// none, gzip, snappy, lz4 or zstd.
        #[arg(long, default_value = "none")]
        compression: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Print a topic's records (every partition).
    Consume {
        /// The topic.
        topic: String,
        /// Join this consumer group: read the partitions it assigns this member, from the
        /// group's committed offsets, and commit where it stopped.
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// Start where there are no committed offsets: at the beginning (default: the end).
        #[arg(long)]
        from_beginning: bool,
        /// Start every partition at this offset.
        #[arg(long, short = 'o', allow_hyphen_values = true)]
        offset: Option<i64>,
        /// Stop after this many records.
        #[arg(long, short = 'n')]
        num: Option<usize>,
        /// Stop at the end of every partition (as of the start).
        #[arg(long, short = 'e')]
        exit_at_end: bool,
        /// How each record is printed: %k key, %v value, %p partition, %o offset, %t
        /// timestamp, %h headers, \n, \t.
        #[arg(long, short = 'f', default_value = "%v\\n")]
        format: String,
        /// One JSON object per record instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p', default_value_t = -1, allow_hyphen_values = true)]
        partitions: i32,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long, short = 'r', default_value_t = -1, allow_hyphen_values = true)]
        replication_factor: i16,
        /// A topic config, name=value; repeatable.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Every topic with its partition count and replication factor.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// A topic's partitions (leader, epoch, replicas, ISR) and the configs set on it.
    Describe {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Set or delete topic configs.
    AlterConfig {
        name: String,
        /// name=value; repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// A config to return to its default; repeatable.
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Grow a topic to this many partitions.
    AddPartitions {
        name: String,
        /// The new total.
        #[arg(long)]
        total: i32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Delete a topic.
    Delete {
        name: String,
        #[command(flatten)]
        reach: Reach,
    },
}

/// How the tools reach a secured cluster: Kafka client properties, as Kafka's tools take them.
#[derive(Args, Clone, Default)]
struct Reach {
    /// Brokers' client addresses, host:port[,host:port..]; the first reachable one is used.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka client properties for TLS and SASL: security.protocol, ssl.truststore.location
    /// (PEM), ssl.keystore.location, sasl.mechanism, sasl.jaas.config (or sasl.username and
    /// sasl.password).
    #[arg(long, value_name = "FILE")]
    command_config: Option<String>,
}

/// One ACL: who, from where, may or may not do what to which resource.
#[derive(Args)]
struct AclArgs {
    /// The principal, e.g. User:alice (User:* for everyone).
    #[arg(long)]
    principal: String,
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL.
    #[arg(long)]
    operation: String,
    /// A topic (a prefix with --prefixed; * for all).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group (a prefix with --prefixed; * for all).
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The cluster itself.
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix.
    #[arg(long)]
    prefixed: bool,
    /// DENY instead of ALLOW.
    #[arg(long)]
    deny: bool,
    /// The client address it applies to.
    #[arg(long, default_value = "*")]
    host: String,
    #[command(flatten)]
    reach: Reach,
}

#[derive(Subcommand)]
enum AclCommand {
    /// Add one ACL.
    Add(AclArgs),
    /// Remove the ACL that matches exactly.
    Remove(AclArgs),
    /// Every ACL (or one principal's).
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a SCRAM user, or change its password; the password is read from standard input
    /// (one line) unless given.
    Add {
        name: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
        /// The password (visible to other local users in the process list: prefer stdin).
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Remove a user's credential for one mechanism.
    Remove {
        name: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Every SCRAM user and its mechanisms.
    List {
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Every consumer group in the cluster, with its state.
    List {
        #[command(flatten)]
        reach: Reach,
    },
    /// A group's state and members, and per partition its committed offset, log end and lag.
    Describe {
        /// The group id.
        group: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Move a group's committed offsets on a topic (the group must have no active members).
    /// Prints the plan; commits it only with --execute.
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose partitions are reset (all of them).
        #[arg(long)]
        topic: String,
        /// Reset to each partition's first offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// Reset to each partition's log end.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// Reset to this offset (clamped to each partition's range).
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it: a dry run).
        #[arg(long)]
        execute: bool,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Subcommand)]
enum TxnCommand {
    /// Every transactional id in the cluster: its coordinator, producer id and state.
    List {
        #[command(flatten)]
        reach: Reach,
    },
    /// One transactional id: producer and epoch, state, timeout, the open transaction's
    /// partitions and start time.
    Describe {
        /// The transactional id.
        id: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Aborts the transaction still open on a partition that began at an offset (a hanging
    /// transaction: see its start in `strom txn describe` or DescribeProducers). Needs the
    /// inter-broker listener and CLUSTER_ACTION.
    Abort {
        /// The partition's topic.
        #[arg(long)]
        topic: String,
        /// The partition.
        #[arg(long)]
        partition: i32,
        /// The offset of the transaction's first record on the partition.
        #[arg(long)]
        start_offset: i64,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The metadata quorum (leader, term, voters and their lag) and every broker's state.
    Status {
        #[command(flatten)]
        reach: Reach,
    },
    /// Spread replicas and preferred leaders evenly over the live brokers (e.g. onto a broker
    /// just added): shows the plan; --execute moves the partitions and follows them.
    Rebalance {
        #[command(flatten)]
        moving: Moving,
    },
    /// Stop every partition move in progress: each goes back to its original replicas.
    CancelMoves {
        #[command(flatten)]
        reach: Reach,
    },
    /// Move every replica off broker ID so it can be stopped for good: shows the plan;
    /// --execute moves the partitions and says when the broker is empty.
    Decommission {
        /// The broker to empty.
        id: i32,
        #[command(flatten)]
        moving: Moving,
    },
}

/// How a rebalance or decommission is carried out.
#[derive(Args)]
struct Moving {
    /// Move the partitions (without it, only the plan is shown).
    #[arg(long)]
    execute: bool,
    /// Limit the moving replicas' replication to this many bytes per second, on each broker as
    /// leader and as follower (Kafka's leader/follower.replication.throttled.rate); lifted when
    /// the moves end.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    throttle: Option<u64>,
    /// Stop following the moves after this many seconds (they carry on).
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    #[command(flatten)]
    reach: Reach,
}

impl Moving {
    fn execution(&self) -> strom::tools::reassign::Execution {
        strom::tools::reassign::Execution {
            execute: self.execute,
            throttle: self.throttle,
            timeout: std::time::Duration::from_secs(self.timeout_secs),
        }
    }
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// A Kafka-style properties file (name=value per line).
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Override one setting; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

fn main() -> std::process::ExitCode {
    strom::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Settings) => {
            for s in SETTINGS {
                println!(
                    "{:<40} default {:<55} {}",
                    s.name,
                    format!("{:?}", s.default),
                    s.doc
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Health(args)) => {
            let config = match Config::load(args.config.as_deref(), &args.set) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("strom: configuration error: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            match strom::tools::health(&config) {
                Ok(text) => {
                    println!("{text}");
                    std::process::ExitCode::SUCCESS
                }
                Err(text) => {
                    eprintln!("unhealthy: {text}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(Command::Doctor { reach: r }) => {
            let bootstrap = match reach(&r) {
                Ok(b) => b,
                Err(e) => return report(Err(e)),
            };
            let (text, ok) = strom::tools::doctor(&bootstrap);
            print!("{text}");
            if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Some(Command::Dev {
            nodes,
            base_port,
            data,
            clean,
            set,
        }) => {
            let opts = strom::dev::DevOptions {
                nodes,
                base_port,
                data: data.into(),
                clean,
                sets: set,
            };
            match strom::dev::run(opts) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("strom dev: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(Command::Txn(cmd)) => {
            use strom::tools::txn;
            let r = match cmd {
                TxnCommand::List { reach: r } => reach(&r).and_then(|b| txn::list(&b)),
                TxnCommand::Describe { id, reach: r } => {
                    reach(&r).and_then(|b| txn::describe(&b, &id))
                }
                TxnCommand::Abort {
                    topic,
                    partition,
                    start_offset,
                    reach: r,
                } => reach(&r).and_then(|b| txn::abort(&b, &topic, partition, start_offset)),
            };
            report(r)
        }
        Some(Command::Group(cmd)) => {
            use strom::tools::group;
            let r = match cmd {
                GroupCommand::List { reach: r } => reach(&r).and_then(|b| group::list(&b)),
                GroupCommand::Describe { group: g, reach: r } => {
                    reach(&r).and_then(|b| group::describe(&b, &g))
                }
                GroupCommand::ResetOffsets {
                    group: g,
                    topic,
                    to_earliest,
                    to_latest,
                    to_offset,
                    execute,
                    reach: r,
                } => {
                    let to = match (to_earliest, to_latest, to_offset) {
                        (true, _, _) => Some(group::ResetTo::Earliest),
                        (_, true, _) => Some(group::ResetTo::Latest),
                        (_, _, Some(n)) => Some(group::ResetTo::Offset(n)),
                        _ => None,
                    };
                    match to {
                        Some(to) => reach(&r)
                            .and_then(|b| group::reset_offsets(&b, &g, &topic, to, execute)),
                        None => Err(anyhow::anyhow!(
                            "say where to: --to-earliest, --to-latest or --to-offset N"
                        )),
                    }
                }
            };
            report(r)
        }
        Some(Command::Acl(cmd)) => {
            use strom::tools::security as sec;
            let spec = |a: &AclArgs| -> anyhow::Result<sec::AclSpec> {
                let (resource_type, resource_name) = match (&a.topic, &a.group, a.cluster) {
                    (Some(t), _, _) => (2, t.clone()),
                    (_, Some(g), _) => (3, g.clone()),
                    (_, _, true) => (4, "kafka-cluster".to_string()),
                    _ => anyhow::bail!("name the resource: --topic T, --group G or --cluster"),
                };
                Ok(sec::AclSpec {
                    principal: a.principal.clone(),
                    host: a.host.clone(),
                    operation: a.operation.clone(),
                    resource_type,
                    resource_name,
                    prefixed: a.prefixed,
                    deny: a.deny,
                })
            };
            let r = match &cmd {
                AclCommand::Add(a) => reach(&a.reach).and_then(|b| sec::acl_add(&b, &spec(a)?)),
                AclCommand::Remove(a) => {
                    reach(&a.reach).and_then(|b| sec::acl_remove(&b, &spec(a)?))
                }
                AclCommand::List {
                    principal,
                    reach: r,
                } => reach(r).and_then(|b| sec::acl_list(&b, principal.as_deref())),
            };
            report(r)
        }
        Some(Command::User(cmd)) => {
            use strom::tools::security as sec;
            let mechanism = |m: &str| {
                strom::config::Mechanism::parse(m).ok_or_else(|| {
                    anyhow::anyhow!("unknown mechanism `{m}`: SCRAM-SHA-256 or SCRAM-SHA-512")
                })
            };
            let r = match cmd {
                UserCommand::Add {
                    name,
                    mechanism: m,
                    iterations,
                    password,
                    reach: r,
                } => reach(&r).and_then(|b| {
                    let password = match password {
                        Some(p) => p,
                        None => {
                            let mut line = String::new();
                            std::io::stdin().read_line(&mut line)?;
                            line.trim_end_matches(['\r', '\n']).to_string()
                        }
                    };
                    anyhow::ensure!(!password.is_empty(), "an empty password is not accepted");
                    sec::user_add(&b, &name, mechanism(&m)?, iterations, &password)
                }),
                UserCommand::Remove {
                    name,
                    mechanism: m,
                    reach: r,
                } => reach(&r).and_then(|b| sec::user_remove(&b, &name, mechanism(&m)?)),
                UserCommand::List { reach: r } => reach(&r).and_then(|b| sec::user_list(&b)),
            };
            report(r)
        }
        Some(Command::Topic(cmd)) => {
            use strom::tools::topic;
            report(match cmd {
                TopicCommand::Create {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                    reach: r,
                } => reach(&r).and_then(|b| {
                    topic::create(&b, &name, partitions, replication_factor, &configs)
                }),
                TopicCommand::List { json, reach: r } => {
                    reach(&r).and_then(|b| topic::list(&b, json))
                }
                TopicCommand::Describe {
                    name,
                    json,
                    reach: r,
                } => reach(&r).and_then(|b| topic::describe(&b, &name, json)),
                TopicCommand::AlterConfig {
                    name,
                    set,
                    delete,
                    reach: r,
                } => reach(&r).and_then(|b| topic::alter_config(&b, &name, &set, &delete)),
                TopicCommand::AddPartitions {
                    name,
                    total,
                    reach: r,
                } => reach(&r).and_then(|b| topic::add_partitions(&b, &name, total)),
                TopicCommand::Delete { name, reach: r } => {
                    reach(&r).and_then(|b| topic::delete(&b, &name))
                }
            })
        }
        Some(Command::Produce {
            topic,
            key_separator,
            headers,
            partition,
            acks,
            compression,
            reach: r,
        }) => {
            let o = strom::tools::data::ProduceOptions {
                topic,
                key_separator,
                headers,
                partition,
                acks,
                compression,
            };
            summary(
                reach(&r)
                    .and_then(|b| strom::tools::data::produce(&b, &o, std::io::stdin().lock())),
            )
        }
        Some(Command::Consume {
            topic,
            group,
            from_beginning,
            offset,
            num,
            exit_at_end,
            format,
            json,
            reach: r,
        }) => {
            let o = strom::tools::data::ConsumeOptions {
                topic,
                group,
                from_beginning,
                offset,
                count: num,
                exit_at_end,
                format,
                json,
            };
            summary(
                reach(&r).and_then(|b| {
                    strom::tools::data::consume(&b, &o, &mut std::io::stdout().lock())
                }),
            )
        }
        Some(Command::Cluster(ClusterCommand::Status { reach: r })) => {
            report(reach(&r).and_then(|b| strom::tools::cluster_status(&b)))
        }
        Some(Command::Cluster(ClusterCommand::Rebalance { moving })) => report(
            reach(&moving.reach)
                .and_then(|b| strom::tools::reassign::rebalance(&b, &moving.execution())),
        ),
        Some(Command::Cluster(ClusterCommand::CancelMoves { reach: r })) => {
            report(reach(&r).and_then(|b| strom::tools::reassign::cancel(&b)))
        }
        Some(Command::Cluster(ClusterCommand::Decommission { id, moving })) => report(
            reach(&moving.reach)
                .and_then(|b| strom::tools::reassign::decommission(&b, id, &moving.execution())),
        ),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=off,sled=warn")
            }),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = match Config::load(args.config.as_deref(), &args.set) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("strom: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if !config.ignored.is_empty() {
        tracing::warn!(
            settings = %config.ignored.join(","),
            "Kafka settings that do not apply to strom (JVM thread pools, features not built yet) are accepted and ignored"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strom: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Listen for signals before anything slow: a SIGTERM during start-up (waiting for the
        // quorum, recovering logs) must still end the process cleanly.
        let stop = wait_for_signal();
        tokio::pin!(stop);
        let node = tokio::select! {
            started = Node::start(config) => match started {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("strom: cannot start: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            },
            _ = &mut stop => {
                tracing::info!("stopped during start-up");
                return std::process::ExitCode::SUCCESS;
            }
        };
        stop.await;
        tracing::info!("shutting down");
        node.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when it
/// is first polled.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Applies `--command-config` and returns the bootstrap list.
fn reach(r: &Reach) -> anyhow::Result<String> {
    if let Some(path) = &r.command_config {
        strom::tools::use_command_config(path)?;
    }
    Ok(r.bootstrap.clone())
}

/// A data tool's summary goes to stderr (its records went to stdout), or its error.
fn summary(r: anyhow::Result<String>) -> std::process::ExitCode {
    match r {
        Ok(text) => {
            eprint!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => report(Err(e)),
    }
}

/// Prints a tool's answer, or its error on stderr.
fn report(r: anyhow::Result<String>) -> std::process::ExitCode {
    match r {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
