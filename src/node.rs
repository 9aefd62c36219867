//! The composition root: builds every part from `Config`, starts the tasks, and owns the one
//! shutdown story — stop accepting, drain connections, stop background tasks, flush logs,
//! shut Raft down last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::controller::Controller;
use crate::handlers::Context;
use crate::metadata::{BrokerRegistration, Endpoint};
use crate::replica::ReplicaManager;

/// Errors that stop the node from starting.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create log.dirs {path}: {err}")]
    LogDir { path: String, err: std::io::Error },
    #[error("cannot bind listener {name} on {addr}: {err}")]
    Bind {
        name: String,
        addr: String,
        err: std::io::Error,
    },
    #[error(transparent)]
    Controller(#[from] crate::controller::StartError),
    #[error("listener {listener}: `{setting}`: {reason}")]
    Security {
        listener: String,
        setting: String,
        reason: String,
    },
}

/// Logs a warning for every advertised endpoint this broker can see is wrong: a name that does
/// not resolve from here, or a wildcard address. (Names meant for another network may resolve
/// only there; the warning says so.)
fn warn_about_advertised(endpoints: &[Endpoint]) {
    use std::net::ToSocketAddrs;
    for e in endpoints {
        match (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(a)) if a.ip().is_unspecified() => tracing::warn!(
                listener = %e.listener,
                host = %e.host,
                "advertised address is a wildcard that clients cannot connect to; fix advertised.listeners"
            ),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => tracing::warn!(
                listener = %e.listener,
                host = %e.host,
                port = e.port,
                "advertised host does not resolve from this broker; clients must be able to resolve it (check advertised.listeners)"
            ),
        }
    }
}

/// A running node.
pub struct Node {
    config: Arc<Config>,
    controller: Controller,
    replicas: Arc<ReplicaManager>,
    serving: CancellationToken,
    background: CancellationToken,
    connections: TaskTracker,
    tasks: TaskTracker,
    client_addrs: Vec<(String, SocketAddr)>,
    /// Stops this broker's heartbeats (first step of a controlled shutdown).
    liveness: CancellationToken,
    incarnation: uuid::Uuid,
}

/// Binds a listener; `buffers` (SO_SNDBUF, SO_RCVBUF) are set before `listen`, so every
/// accepted connection inherits them (and the receive window scales to them).
async fn bind(
    name: &str,
    addr: Result<SocketAddr, String>,
    buffers: (Option<u32>, Option<u32>),
) -> Result<TcpListener, NodeError> {
    let addr = addr.map_err(|e| NodeError::Bind {
        name: name.to_string(),
        addr: String::new(),
        err: std::io::Error::other(e),
    })?;
    let bound = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Some(n) = buffers.0 {
            socket.set_send_buffer_size(n)?;
        }
        if let Some(n) = buffers.1 {
            socket.set_recv_buffer_size(n)?;
        }
        socket.bind(addr)?;
        socket.listen(1024)
    };
    bound().map_err(|err| NodeError::Bind {
        name: name.to_string(),
        addr: addr.to_string(),
        err,
    })
}

impl Node {
    pub async fn start(config: Arc<Config>) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.log_dir).map_err(|err| NodeError::LogDir {
            path: config.log_dir.display().to_string(),
            err,
        })?;
        // Certificates and user files are read, and ports bound, before anything is written.
        let mut auth = std::collections::BTreeMap::new();
        for l in &config.listeners {
            let built = match config.security.get(&l.name) {
                Some(s) => crate::auth::ListenerAuth::build(s).map_err(|(setting, reason)| {
                    NodeError::Security {
                        listener: l.name.clone(),
                        setting,
                        reason,
                    }
                })?,
                None => crate::auth::ListenerAuth::plaintext(),
            };
            auth.insert(l.name.clone(), Arc::new(built));
        }
        // A lone voter has no other broker to replicate from: what it lacks to reach one is
        // worth a warning, not a refusal (a broker-only node joining later will need it).
        let peers = match crate::auth::client::ClientSecurity::inter_broker(&config) {
            Ok(p) => Arc::new(p),
            Err((setting, reason)) if config.voters.len() == 1 => {
                tracing::warn!(listener = %config.inter_broker_listener, %setting, %reason, "this node could not replicate from another broker");
                Arc::new(crate::auth::client::ClientSecurity::default())
            }
            Err((setting, reason)) => {
                return Err(NodeError::Security {
                    listener: config.inter_broker_listener.clone(),
                    setting,
                    reason,
                })
            }
        };
        let mut client = Vec::new();
        for l in &config.listeners {
            let buffers = (config.socket_send_buffer, config.socket_receive_buffer);
            client.push((
                l.name.clone(),
                bind(&l.name, l.socket_addr(), buffers).await?,
            ));
        }
        let cl = &config.controller_listener;
        let controller_listener = bind(&cl.name, cl.socket_addr(), (None, None)).await?;

        let controller = Controller::start(config.clone(), controller_listener).await?;
        let handle = controller.handle();
        let client_addrs: Vec<(String, SocketAddr)> = client
            .iter()
            .filter_map(|(n, l)| l.local_addr().ok().map(|a| (n.clone(), a)))
            .collect();
        let endpoints: Vec<Endpoint> = config
            .advertised
            .iter()
            .map(|a| {
                // Port 0 (tests) advertises the port actually bound.
                let port = if a.port == 0 {
                    client_addrs
                        .iter()
                        .find(|(n, _)| *n == a.name)
                        .map(|(_, s)| s.port())
                        .unwrap_or(0)
                } else {
                    a.port
                };
                Endpoint {
                    listener: a.name.clone(),
                    host: a.host.clone(),
                    port,
                }
            })
            .collect();
        warn_about_advertised(&endpoints);
        let registration = BrokerRegistration {
            id: config.node_id,
            incarnation: uuid::Uuid::new_v4(),
            endpoints,
            rack: None,
            fenced: false,
        };

        let background = CancellationToken::new();
        crate::storage::files::set_limit(config.max_open_log_files);
        let replicas = Arc::new(ReplicaManager::new(
            config.clone(),
            peers.clone(),
            handle.clone(),
            background.child_token(),
        ));
        {
            // Open (and recover) every hosted log before serving anyone.
            let r = replicas.clone();
            let _ = tokio::task::spawn_blocking(move || r.reconcile()).await;
        }

        let serving = CancellationToken::new();
        let connections = TaskTracker::new();
        let tasks = TaskTracker::new();
        tasks.spawn(
            replicas
                .clone()
                .run_reconciler(handle.subscribe(), background.child_token()),
        );
        tasks.spawn(replicas.clone().run_retention(background.child_token()));
        tasks.spawn(replicas.clone().run_time_flush(background.child_token()));
        if config.cleaner.enable {
            tasks.spawn(crate::replica::cleaner::run(
                replicas.clone(),
                config.cleaner.clone(),
                background.child_token(),
            ));
        }
        let groups = Arc::new(crate::group::Coordinator::new(
            config.clone(),
            handle.clone(),
            replicas.clone(),
        ));
        tasks.spawn(groups.clone().run(background.child_token()));
        let producer_ids = Arc::new(crate::handlers::init_producer_id::ProducerIds::default());
        let txns = Arc::new(crate::txn::Coordinator::new(
            config.clone(),
            handle.clone(),
            replicas.clone(),
            groups.clone(),
            producer_ids.clone(),
            peers.clone(),
        ));
        tasks.spawn(txns.clone().run(background.child_token()));
        tasks.spawn(
            replicas
                .clone()
                .run_isr_and_checkpoints(background.child_token()),
        );
        let (registered_tx, mut registered) = tokio::sync::watch::channel(false);
        let liveness = CancellationToken::new();
        let incarnation = registration.incarnation;
        // Registration and heartbeats on the quorum's runtime: busy partition work must not
        // make a live broker look silent to the controller.
        tasks.spawn_on(
            handle
                .clone()
                .run_broker(registration, registered_tx, liveness.clone()),
            handle.quorum_runtime(),
        );
        // A lone or already-formed quorum registers us at once; a forming one may take a while,
        // and clients can be served from the stored image meanwhile.
        let wait = Duration::from_millis(config.quorum_request_timeout_ms.max(3000));
        if tokio::time::timeout(wait, registered.wait_for(|r| *r))
            .await
            .is_err()
        {
            tracing::warn!("not registered with the controller yet (no metadata quorum); serving from the stored metadata");
        }
        let open_connections = Arc::new(crate::server::Connections::new(&config));
        for (name, listener) in client {
            let ctx = Arc::new(Context {
                auth: auth
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(crate::auth::ListenerAuth::plaintext())),
                config: config.clone(),
                controller: handle.clone(),
                replicas: replicas.clone(),
                listener: name,
                producer_ids: producer_ids.clone(),
                groups: groups.clone(),
                txns: txns.clone(),
                all_topics: Default::default(),
                principal: crate::handlers::ANONYMOUS.into(),
                host: "".into(),
            });
            tasks.spawn(crate::server::serve(
                listener,
                ctx,
                open_connections.clone(),
                serving.child_token(),
                connections.clone(),
            ));
        }
        if let Some(listener) = crate::http::bind(&config).await {
            let sources = Arc::new(crate::http::Sources {
                config: config.clone(),
                replicas: replicas.clone(),
                controller: handle.clone(),
                connections: open_connections.clone(),
                groups: groups.clone(),
                txns: txns.clone(),
                console_bootstrap: client_addrs
                    .iter()
                    .find(|(name, _)| {
                        auth.get(name)
                            .is_none_or(|a| a.tls.is_none() && a.sasl.is_none())
                    })
                    .map(|(_, a)| {
                        let ip = if a.ip().is_unspecified() {
                            std::net::IpAddr::from([127, 0, 0, 1])
                        } else {
                            a.ip()
                        };
                        std::net::SocketAddr::new(ip, a.port()).to_string()
                    }),
                throughput: Default::default(),
            });
            tasks.spawn(crate::http::serve(listener, sources, serving.child_token()));
        }
        tracing::info!(
            node_id = config.node_id,
            cluster_id = %handle.image().cluster_id,
            listeners = ?client_addrs,
            log_dir = %config.log_dir.display(),
            "strom is serving"
        );
        Ok(Node {
            config,
            controller,
            replicas,
            serving,
            background,
            connections,
            tasks,
            client_addrs,
            liveness,
            incarnation,
        })
    }

    /// The bound address of each client listener.
    pub fn client_addrs(&self) -> &[(String, SocketAddr)] {
        &self.client_addrs
    }

    /// Moves this broker's leadership away (a controlled shutdown) and leaves the metadata
    /// quorum, answers clients a little longer (`controlled.shutdown.linger.ms`), then stops
    /// accepting, drains connections, stops background work, and flushes every log and writes
    /// its recovery point. Bounded by `shutdown.timeout.ms`.
    pub async fn shutdown(self) {
        let limit = Duration::from_millis(self.config.shutdown_timeout_ms);
        // Controlled shutdown: stop heartbeating, then have the controller move our partitions'
        // leadership away while we still serve, so clients re-route before we go.
        self.liveness.cancel();
        let handle = self.controller.handle();
        let mut quorum_left = false;
        match handle
            .controlled_shutdown(self.config.node_id, self.incarnation, limit / 4)
            .await
        {
            Ok(()) => {
                tracing::info!("leadership moved off this broker");
                // Leave the metadata quorum now: were this node its leader, the others elect a
                // new one only after it goes quiet, and until then no broker's lease is renewed
                // (every leader would stop taking writes when the leases run out). A leader
                // first runs one round of Raft heartbeats, which carries the commit of the
                // leadership move: the followers learn it now, not from the next leader.
                if handle.is_leader() {
                    let _ = handle.confirm_leadership(limit / 8).await;
                }
                let _ = tokio::time::timeout(limit / 4, self.controller.shutdown()).await;
                quorum_left = true;
                // Clients learn the new leaders from their next answer here (KIP-951) rather
                // than from a closed connection: librdkafka, losing the connection, forgets a
                // partition's leader it had just learned and asks again a second later.
                let linger = Duration::from_millis(self.config.shutdown_linger_ms).min(limit / 4);
                tokio::time::sleep(linger).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "controlled shutdown not acknowledged; stopping anyway")
            }
        }
        self.serving.cancel();
        self.connections.close();
        if tokio::time::timeout(limit / 2, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections did not drain in time");
        }
        self.background.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(limit / 4, self.tasks.wait()).await;
        let replicas = self.replicas.clone();
        let _ = tokio::task::spawn_blocking(move || replicas.flush_all()).await;
        if !quorum_left {
            let _ = tokio::time::timeout(limit / 4, self.controller.shutdown()).await;
        }
        tracing::info!("shutdown complete");
    }
}
