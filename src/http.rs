//! The HTTP admin listener (`admin.http.listener`, default `127.0.0.1:9644`): `/metrics` in
//! Prometheus text format, `/health` (the process answers) and `/ready` (registered with the
//! controller and not fenced). Built by `node` and served on its own task with hyper's HTTP/1;
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
        tracing::info!(%addr, "admin HTTP listener: /metrics, /health, /ready");
    }
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
                async move { Ok::<_, Infallible>(respond(&sources, &req)) }
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

fn respond(s: &Sources, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
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
            "not found: /metrics, /health or /ready\n".to_string(),
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
    out
}
