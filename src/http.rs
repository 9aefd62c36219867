//! The HTTP admin listener (`admin.http.listener`, default `127.0.0.1:9644`): the web console
//! at `/` (with `/api/cluster` and `/api/groups`, `console`), `/metrics` in Prometheus text
//! format, `/health` (the process answers) and `/ready` (registered with the controller and not
//! fenced). Built by `node` and served on its own task with hyper's HTTP/1;
//! if the address cannot be bound the broker says so, naming the setting, and serves Kafka
//! clients without it.
//!
//! The figures are read when scraped from where they live: each hosted partition's traffic
//! counters and state (`replica`), the metadata image and Raft's metrics (`controller`), the
//! open connections (`server`). Nothing here is on the produce or fetch path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::controller::Handle;
use crate::replica::ReplicaManager;
use crate::server::Connections;

/// What `/metrics` and `/ready` read.
pub struct Sources {
    pub config: Arc<Config>,
    pub replicas: Arc<ReplicaManager>,
    pub controller: Handle,
    pub connections: Arc<Connections>,
    pub groups: Arc<crate::group::Coordinator>,
    pub txns: Arc<crate::txn::Coordinator>,
    /// Where the console asks as a Kafka client: this broker's first listener without TLS or
    /// SASL, if it has one.
    pub console_bootstrap: Option<String>,
    /// This broker's byte counters (in, out) every `SAMPLE_EVERY`, the last `SAMPLES`: the
    /// console's throughput chart has a history as soon as it opens.
    pub throughput: std::sync::Mutex<std::collections::VecDeque<(u64, u64, u64)>>,
}

const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const SAMPLES: usize = 150;

/// Samples this broker's byte counters for the console until `token` is cancelled.
async fn sample_throughput(sources: Arc<Sources>, token: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (bytes_in, bytes_out) = sources
            .replicas
            .hosted()
            .iter()
            .map(|p| p.traffic())
            .fold((0, 0), |a, t| (a.0 + t.0, a.1 + t.2));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut samples = sources.throughput.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((now_ms, bytes_in, bytes_out));
    }
}

/// Binds `admin.http.listener`, if set; a failure is logged (the setting named) and None.
pub async fn bind(config: &Config) -> Option<TcpListener> {
    let addr = config.admin_http?;
    match TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind admin.http.listener; serving without /metrics");
            None
        }
    }
}

/// Serves until `token` is cancelled.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>, token: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin HTTP listener: the console at /, /metrics, /health, /ready");
    }
    tokio::spawn(sample_throughput(sources.clone(), token.clone()));
    loop {
        let stream = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let sources = sources.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(respond(&sources, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = token.cancelled() => {}
            }
        });
    }
}

async fn respond(s: &Arc<Sources>, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let (status, content_type, body) = match req.uri().path() {
        "/" | "/index.html" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::console::INDEX.to_string(),
        ),
        "/api/cluster" => {
            let mut doc = crate::console::cluster(
                &s.controller.image(),
                s.config.node_id,
                s.controller.controller_id(),
                &s.replicas.hosted(),
            );
            let history: Vec<(u64, u64, u64)> = s
                .throughput
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect();
            doc["history"] = serde_json::json!(history);
            (StatusCode::OK, JSON, doc.to_string())
        }
        "/api/groups" => {
            // A Kafka client's round trips, blocking: off the async threads.
            let bootstrap = s.console_bootstrap.clone();
            let doc =
                tokio::task::spawn_blocking(move || crate::console::groups(bootstrap.as_deref()))
                    .await
                    .unwrap_or_else(
                        |e| serde_json::json!({ "error": e.to_string(), "groups": [] }),
                    );
            (StatusCode::OK, JSON, doc.to_string())
        }
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(s),
        ),
        "/health" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/ready" => {
            let image = s.controller.image();
            match image.brokers.get(&s.config.node_id) {
                Some(b) if !b.fenced => (StatusCode::OK, "text/plain", "ready\n".to_string()),
                Some(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "fenced\n".to_string(),
                ),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not registered\n".to_string(),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: / (the console), /metrics, /health or /ready\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A label value with Prometheus's escapes.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its HELP and TYPE lines, then `name{labels} value` per sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// One histogram family: per label set, cumulative buckets (`le`), `_sum` and `_count`.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    series: &[(String, &crate::server::stats::Histogram)],
) {
    use crate::server::stats::BUCKETS;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in series {
        let (counts, sum) = h.cumulative();
        for (i, c) in counts.iter().enumerate() {
            let le = BUCKETS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            counts.last().copied().unwrap_or(0)
        );
    }
}

/// Every metric, as Prometheus text.
pub fn render(s: &Sources) -> String {
    let hosted = s.replicas.hosted();
    let image = s.controller.image();
    // Per topic: bytes in, records in, bytes out (summed over the partitions hosted here).
    let mut topics: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut sizes = Vec::new();
    let (mut led, mut under) = (0u64, 0u64);
    for p in &hosted {
        let (bin, rin, bout) = p.traffic();
        let t = topics.entry(p.tp().topic.clone()).or_default();
        t.0 += bin;
        t.1 += rin;
        t.2 += bout;
        sizes.push((
            format!(
                "topic=\"{}\",partition=\"{}\"",
                label(&p.tp().topic),
                p.tp().partition
            ),
            p.size_bytes() as f64,
        ));
        if p.is_leader() {
            led += 1;
        }
        if p.under_replicated() {
            under += 1;
        }
    }
    let per_topic = |f: fn(&(u64, u64, u64)) -> u64| -> Vec<(String, f64)> {
        topics
            .iter()
            .map(|(t, v)| (format!("topic=\"{}\"", label(t)), f(v) as f64))
            .collect()
    };
    let offline = image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader < 0)
        .count();
    let mut out = String::new();
    family(
        &mut out,
        "strom_topic_bytes_in_total",
        "counter",
        "Record batch bytes clients produced to partitions this broker leads, by topic.",
        &per_topic(|v| v.0),
    );
    family(
        &mut out,
        "strom_topic_records_in_total",
        "counter",
        "Records clients produced to partitions this broker leads, by topic.",
        &per_topic(|v| v.1),
    );
    family(
        &mut out,
        "strom_topic_bytes_out_total",
        "counter",
        "Record bytes sent to consumers from this broker, by topic.",
        &per_topic(|v| v.2),
    );
    family(
        &mut out,
        "strom_partition_log_size_bytes",
        "gauge",
        "Bytes of a hosted partition's segments.",
        &sizes,
    );
    family(
        &mut out,
        "strom_partitions_led",
        "gauge",
        "Partitions this broker leads.",
        &[(String::new(), led as f64)],
    );
    family(
        &mut out,
        "strom_partitions_under_replicated",
        "gauge",
        "Partitions this broker leads with fewer in-sync replicas than replicas.",
        &[(String::new(), under as f64)],
    );
    family(
        &mut out,
        "strom_cluster_partitions_offline",
        "gauge",
        "Partitions of the cluster without a leader, as this broker's metadata says.",
        &[(String::new(), offline as f64)],
    );
    family(
        &mut out,
        "strom_cluster_brokers_live",
        "gauge",
        "Registered, unfenced brokers, as this broker's metadata says.",
        &[(String::new(), image.live_brokers().len() as f64)],
    );
    let reassigning: usize = image.reassignments.values().map(|m| m.len()).sum();
    family(
        &mut out,
        "strom_cluster_partitions_reassigning",
        "gauge",
        "Partitions with a reassignment in progress, as this broker's metadata says.",
        &[(String::new(), reassigning as f64)],
    );
    let throttles = s.replicas.throttles();
    family(
        &mut out,
        "strom_replication_throttled_bytes_total",
        "counter",
        "Bytes of throttled replicas sent to followers (role leader) or fetched from leaders (role follower).",
        &[
            ("role=\"leader\"".to_string(), throttles.leader.moved() as f64),
            ("role=\"follower\"".to_string(), throttles.follower.moved() as f64),
        ],
    );
    family(
        &mut out,
        "strom_controller_active",
        "gauge",
        "1 when this node leads the metadata quorum (the active controller).",
        &[(String::new(), f64::from(u8::from(s.controller.is_leader())))],
    );
    family(
        &mut out,
        "strom_raft_term",
        "gauge",
        "The metadata quorum's current Raft term as this node knows it.",
        &[(String::new(), s.controller.current_term() as f64)],
    );
    family(
        &mut out,
        "strom_raft_applied_index",
        "gauge",
        "The last metadata log index applied to this node's image.",
        &[(String::new(), s.controller.applied_index() as f64)],
    );
    family(
        &mut out,
        "strom_connections",
        "gauge",
        "Open client connections over all listeners.",
        &[(String::new(), s.connections.open() as f64)],
    );
    family(
        &mut out,
        "strom_requests_queued",
        "gauge",
        "Requests read and not yet taken up by a handler (at most queued.max.requests).",
        &[(
            String::new(),
            s.connections.queued(s.config.queued_max_requests) as f64,
        )],
    );
    family(
        &mut out,
        "strom_listener_connections",
        "gauge",
        "Open client connections per listener.",
        &s.connections
            .open_per_listener()
            .into_iter()
            .map(|(l, n)| (format!("listener=\"{}\"", label(&l)), n as f64))
            .collect::<Vec<_>>(),
    );
    let used: Vec<_> = s.connections.requests.used().collect();
    let api = |k: &kafka_protocol::messages::ApiKey| format!("api=\"{k:?}\"");
    family(
        &mut out,
        "strom_requests_total",
        "counter",
        "Requests answered (or completed without an answer, acks=0), per API.",
        &used
            .iter()
            .map(|(k, st)| {
                let n = st.handle.cumulative().0.last().copied().unwrap_or(0);
                (api(k), n as f64)
            })
            .collect::<Vec<_>>(),
    );
    for (phase, help) in [
        ("queue", "From a request's task being spawned to its first run, per API."),
        ("handle", "From decoding a request to its answer being ready (purgatory waits included), per API."),
        ("send", "From a request's answer being ready to its being written (behind the connection's earlier answers), per API."),
    ] {
        let series: Vec<(String, &crate::server::stats::Histogram)> = used
            .iter()
            .map(|(k, st)| {
                let h = match phase {
                    "queue" => &st.queue,
                    "handle" => &st.handle,
                    _ => &st.send,
                };
                (api(k), h)
            })
            .collect();
        histogram(
            &mut out,
            &format!("strom_request_{phase}_seconds"),
            help,
            &series,
        );
    }
    let (watermark_waits, fetch_waits) = s.replicas.purgatory_sizes();
    family(
        &mut out,
        "strom_purgatory_size",
        "gauge",
        "Operations waiting: acks=all produce, group commits and DeleteRecords on a watermark; long-poll and follower fetches on data.",
        &[
            ("purgatory=\"watermark\"".to_string(), watermark_waits as f64),
            ("purgatory=\"fetch\"".to_string(), fetch_waits as f64),
        ],
    );
    let counters = &s.replicas.counters;
    let load =
        |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    family(
        &mut out,
        "strom_isr_shrinks_total",
        "counter",
        "ISR changes that removed replicas from partitions this broker leads (its own shrinks and the controller fencing a follower).",
        &[(String::new(), load(&counters.isr_shrinks))],
    );
    family(
        &mut out,
        "strom_isr_expands_total",
        "counter",
        "ISR changes that added replicas to partitions this broker leads.",
        &[(String::new(), load(&counters.isr_expands))],
    );
    family(
        &mut out,
        "strom_partitions_removed_total",
        "counter",
        "Hosted partition logs removed from this broker (their topic deleted or their replica moved away).",
        &[(String::new(), load(&counters.partitions_removed))],
    );
    family(
        &mut out,
        "strom_log_open_files",
        "gauge",
        "Segment .log files open now (at most log.max.open.files; the least recently used are closed past it).",
        &[(String::new(), crate::storage::files::open_count() as f64)],
    );
    family(
        &mut out,
        "strom_fetch_bytes_total",
        "counter",
        "Record bytes sent to consumers: left in the page cache for sendfile (zero_copy) or read into memory (copied).",
        &[
            ("path=\"zero_copy\"".to_string(), load(&counters.fetch_zero_copy_bytes)),
            ("path=\"copied\"".to_string(), load(&counters.fetch_copied_bytes)),
        ],
    );
    family(
        &mut out,
        "strom_cleaner_passes_total",
        "counter",
        "Log cleaner passes finished on this broker's compacted logs.",
        &[(String::new(), load(&counters.cleaner_passes))],
    );
    family(
        &mut out,
        "strom_cleaner_removed_bytes_total",
        "counter",
        "Bytes the log cleaner took out of this broker's compacted logs.",
        &[(String::new(), load(&counters.cleaner_bytes_removed))],
    );
    family(
        &mut out,
        "strom_raft_last_log_index",
        "gauge",
        "The last metadata log index this node holds.",
        &[(String::new(), s.controller.last_log_index() as f64)],
    );
    family(
        &mut out,
        "strom_raft_apply_lag",
        "gauge",
        "Metadata log entries this node holds but has not applied to its image.",
        &[(
            String::new(),
            s.controller
                .last_log_index()
                .saturating_sub(s.controller.applied_index()) as f64,
        )],
    );
    family(
        &mut out,
        "strom_raft_snapshots_installed_total",
        "counter",
        "Metadata snapshots this node installed from the quorum's leader (it lagged behind the leader's log).",
        &[(String::new(), s.controller.snapshots_installed() as f64)],
    );
    group_families(&mut out, s, &hosted);
    txn_families(&mut out, s);
    out
}

/// The transaction coordinator's figures.
fn txn_families(out: &mut String, s: &Sources) {
    use std::sync::atomic::Ordering::Relaxed;
    family(
        out,
        "strom_transactions",
        "gauge",
        "Transactional ids this broker coordinates, by state.",
        &s.txns
            .states()
            .into_iter()
            .map(|(st, n)| (format!("state=\"{st}\""), n as f64))
            .collect::<Vec<_>>(),
    );
    let c = &s.txns.counters;
    family(
        out,
        "strom_transactions_completed_total",
        "counter",
        "Transactions this broker's coordinator completed (every marker written), by outcome.",
        &[
            (
                "result=\"commit\"".to_string(),
                c.committed.load(Relaxed) as f64,
            ),
            (
                "result=\"abort\"".to_string(),
                c.aborted.load(Relaxed) as f64,
            ),
        ],
    );
    family(
        out,
        "strom_transactions_timed_out_total",
        "counter",
        "Transactions the coordinator aborted because they were open past transaction.timeout.ms.",
        &[(String::new(), c.timed_out.load(Relaxed) as f64)],
    );
}

/// Consumer groups this broker coordinates: how many in each state, and each committed
/// partition's lag — its high watermark as this broker's replica knows it, less the committed
/// offset (only for partitions hosted here; a follower's high watermark trails the leader's by
/// at most a fetch).
fn group_families(out: &mut String, s: &Sources, hosted: &[Arc<crate::replica::Partition>]) {
    let groups = s.groups.committed_offsets();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let hw: std::collections::HashMap<(String, i32), i64> = hosted
        .iter()
        .map(|p| ((p.tp().topic.clone(), p.tp().partition), p.high_watermark()))
        .collect();
    let mut lags = Vec::new();
    for (id, state, offsets) in &groups {
        *states.entry(format!("{state:?}")).or_default() += 1;
        for (t, p, committed) in offsets {
            if let Some(end) = hw.get(&(t.clone(), *p)) {
                lags.push((
                    format!(
                        "group=\"{}\",topic=\"{}\",partition=\"{p}\"",
                        label(id),
                        label(t)
                    ),
                    (end - committed).max(0) as f64,
                ));
            }
        }
    }
    family(
        out,
        "strom_groups",
        "gauge",
        "Consumer groups this broker coordinates, by state.",
        &states
            .into_iter()
            .map(|(st, n)| (format!("state=\"{st}\""), n as f64))
            .collect::<Vec<_>>(),
    );
    family(
        out,
        "strom_group_lag_records",
        "gauge",
        "Records between a group's committed offset and the partition's high watermark.",
        &lags,
    );
}
