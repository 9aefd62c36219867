//! The controller's leader-side service: what the Raft leader does with the calls brokers send
//! it (`rpc.rs` hands them here) and its own duties. Each call asks `decide.rs` (pure) for the
//! records, proposes them through Raft, and answers from the outcome; the duties — writing the
//! cluster id once, fencing brokers whose heartbeats stopped for `broker.session.timeout.ms`
//! (with the partition changes that follow: new leaders from the ISR, epoch + 1), moving
//! leadership back to preferred replicas — run on every node and act only while it leads.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::decide;
use super::liveness::{StreamGuard, VoterStatus};
use super::{AdminDone, AdminError, AdminOp, Handle, QuorumStatus, RaftNodeId};
use crate::metadata::{BrokerRegistration, MetadataImage, MetadataRecord};
use crate::types::NodeId;

/// How often the controller pings down a broker's liveness stream.
pub(super) const LIVENESS_PING: Duration = Duration::from_millis(250);

/// How long the controller waits for a connection to a broker whose stream closed: a dead
/// process's port refuses at once; anything slower is not a confirmation.
const DEAD_CONNECT: Duration = Duration::from_millis(250);

/// How often the leader's duties look again (a lost broker is fenced within this of its
/// confirmation).
const DUTY_TICK: Duration = Duration::from_millis(50);

/// How long a heartbeat's answer may wait for the quorum to confirm this leader.
const HEARTBEAT_CONFIRM: Duration = Duration::from_millis(500);

/// How long a broker's liveness stream must stay closed — with no new stream and no heartbeat —
/// before the controller checks whether its process is gone (`process_gone`): a live broker
/// whose connection merely broke usually reconnects sooner, and if not, its port still accepts.
const LOST_CONFIRM: Duration = Duration::from_millis(100);

impl Handle {
    /// A registered broker (this incarnation) opened its liveness stream to this leader.
    pub(super) fn liveness_stream(
        &self,
        broker: NodeId,
        incarnation: uuid::Uuid,
    ) -> Option<StreamGuard> {
        let registered = self
            .image()
            .brokers
            .get(&broker)
            .is_some_and(|b| b.incarnation == incarnation);
        registered.then(|| self.liveness.stream_opened(broker))
    }

    /// Fences the first broker whose liveness stream closed and stayed closed, once a connection
    /// to it is refused (a dead process: the kernel closed its sockets and nothing listens on its
    /// port), well before its session would time out. A broker that still accepts connections,
    /// or cannot be reached at all (a cut network: it may be alive and leading), is left to the
    /// session timeout, which its lease undercuts. Returns whether the image changed.
    async fn fence_lost_brokers(&self) -> bool {
        let image = self.image();
        for b in self.liveness.lost(Instant::now(), LOST_CONFIRM) {
            self.liveness.forget_stream(b);
            // This node's own broker cannot be dead while its controller runs.
            let Some(reg) = image.brokers.get(&b).filter(|r| !r.fenced) else {
                continue;
            };
            if b == self.config.node_id || !self.process_gone(reg).await {
                continue;
            }
            match self
                .fence_broker(b, reg.incarnation, self.config.unclean_leader_election)
                .await
            {
                Ok(records) => tracing::warn!(
                    broker = b,
                    records,
                    "fenced a broker whose connection to the controller closed"
                ),
                Err(e) => tracing::warn!(broker = b, error = %e, "cannot fence broker"),
            }
            return true;
        }
        false
    }

    /// Whether every inter-broker address of `reg` refuses a connection at once: the kernel
    /// saying no process listens there. A connection made, or one that hangs, confirms nothing.
    async fn process_gone(&self, reg: &BrokerRegistration) -> bool {
        let listener = &self.config.inter_broker_listener;
        let mut addresses: Vec<_> = reg
            .endpoints
            .iter()
            .filter(|e| &e.listener == listener)
            .collect();
        if addresses.is_empty() {
            addresses = reg.endpoints.iter().collect();
        }
        for e in &addresses {
            let connect = tokio::net::TcpStream::connect((e.host.as_str(), e.port));
            match tokio::time::timeout(DEAD_CONNECT, connect).await {
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
                _ => return false,
            }
        }
        !addresses.is_empty()
    }

    /// An admin write, on the leader: decided against the current image (`decide::admin`),
    /// proposed, and answered from the committed outcomes.
    pub(super) async fn admin_local(&self, op: AdminOp) -> Result<AdminDone, AdminError> {
        let planned = decide::admin(&self.image(), &self.config, op)?;
        let outcomes = if planned.records.is_empty() {
            Vec::new()
        } else {
            self.propose(planned.records.clone()).await?
        };
        planned.conclude(&outcomes)
    }

    /// Runs on every node; acts only while this node leads.
    pub(super) async fn run_leader_duties(self, token: CancellationToken) {
        let session = Duration::from_millis(self.config.session_timeout_ms);
        let rebalance_every = Duration::from_millis(self.config.leader_imbalance_check_ms);
        let mut last_rebalance = Instant::now();
        let mut led_term = None;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(DUTY_TICK) => {}
            }
            if !self.is_leader() {
                led_term = None;
                continue;
            }
            let term = self.raft.metrics().borrow().current_term;
            let image = self.image();
            if led_term != Some(term) {
                // New leader: everyone gets a full session from now, and must open its
                // liveness stream to this node (a dead one cannot; see `fence_lost_brokers`).
                self.liveness
                    .take_over(image.brokers.keys().copied(), Instant::now());
                led_term = Some(term);
                tracing::info!(term, "this node is now the metadata leader (controller)");
            }
            if image.cluster_id.is_empty() {
                let cluster_id = uuid::Uuid::new_v4().simple().to_string();
                let mut records = vec![MetadataRecord::InitCluster { cluster_id }];
                records.extend(self.config.scram_bootstrap.iter().map(bootstrap_credential));
                if let Err(e) = self.propose(records).await {
                    tracing::warn!(error = %e, "cannot write the cluster id yet");
                }
                continue;
            }
            if self.fence_lost_brokers().await {
                continue; // the image changed: look again with the new one
            }
            if self.config.auto_leader_rebalance && last_rebalance.elapsed() >= rebalance_every {
                last_rebalance = Instant::now();
                self.rebalance_leaders().await;
            }
            for b in image.brokers.values().filter(|b| !b.fenced) {
                // A broker this leader has not heard of yet (its registration reached the image
                // after the leader took over) gets a full session from now.
                let Some(silent) = self.liveness.silent_for(b.id) else {
                    self.liveness.mark(b.id);
                    continue;
                };
                if silent < session {
                    continue;
                }
                match self
                    .fence_broker(b.id, b.incarnation, self.config.unclean_leader_election)
                    .await
                {
                    Ok(records) => tracing::warn!(
                        broker = b.id,
                        silent_ms = silent.as_millis() as u64,
                        records,
                        "fenced a broker whose heartbeats stopped"
                    ),
                    Err(e) => tracing::warn!(broker = b.id, error = %e, "cannot fence broker"),
                }
                break; // the image changed: look again with the new one
            }
        }
    }

    /// Registration, on the leader: decided, proposed, and the broker's clock started.
    pub(super) async fn register_local(&self, reg: BrokerRegistration) -> Result<(), AdminError> {
        let id = reg.id;
        let records = decide::register(&self.image(), reg)?;
        self.propose(records).await?;
        self.liveness.mark(id);
        Ok(())
    }

    /// A heartbeat, on the leader. Returns (registered, fenced after this heartbeat).
    pub(super) async fn heartbeat_local(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
    ) -> Result<(bool, bool), AdminError> {
        let stopping = self
            .liveness
            .stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&incarnation);
        match decide::heartbeat(&self.image(), id, incarnation, stopping) {
            decide::Heartbeat::Unknown => Ok((false, false)),
            decide::Heartbeat::Stopping => Ok((true, true)),
            decide::Heartbeat::Alive(records) => {
                self.liveness.mark(id);
                if !records.is_empty() {
                    self.propose(records).await?;
                    tracing::info!(broker = id, "unfenced a broker whose heartbeats resumed");
                } else {
                    // The answer renews the broker's lease: only a leader that still has its
                    // quorum may give it (a deposed one cut off with the broker must not).
                    self.confirm_leadership(HEARTBEAT_CONFIRM).await?;
                }
                Ok((true, false))
            }
        }
    }

    /// A broker about to stop, on the leader: fence it now with the partition changes that
    /// follow, so clients move to the new leaders before its connections close.
    pub(super) async fn controlled_shutdown_local(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
    ) -> Result<(), AdminError> {
        let image = self.image();
        let Some(reg) = image.brokers.get(&id) else {
            return Ok(());
        };
        if reg.incarnation != incarnation || reg.fenced {
            return Ok(());
        }
        self.liveness
            .stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(incarnation);
        let records = self.fence_broker(id, incarnation, false).await?;
        tracing::info!(
            broker = id,
            records,
            "controlled shutdown: broker fenced, leadership moved"
        );
        Ok(())
    }

    /// Fences broker `id` in bounded entries (`decide::fence`): partitions move off it first,
    /// the fence comes last. Returns how many records were written. Stops early, with nothing
    /// more written, if `id` registers again under another incarnation meanwhile (it
    /// restarted and is alive).
    async fn fence_broker(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
        unclean: bool,
    ) -> Result<usize, AdminError> {
        self.write_in_entries(&format!("fencing broker {id}"), |image| {
            decide::fence(image, id, incarnation, unclean, decide::RECORDS_PER_ENTRY)
        })
        .await
    }

    /// Moves leadership back to each partition's preferred (first) replica where it is alive
    /// and in the ISR. Pure planning over the image, written in bounded entries.
    async fn rebalance_leaders(&self) {
        let moved = self
            .write_in_entries("moving leaders back", |image| {
                decide::preferred_leaders(image, decide::RECORDS_PER_ENTRY)
            })
            .await;
        match moved {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                partitions = n,
                "moved leadership back to preferred replicas"
            ),
            Err(e) => tracing::debug!(error = %e, "preferred leader election failed"),
        }
    }

    /// Work split into bounded entries: `plan` gives the next entry from the image the one
    /// before left (a change refused as stale meanwhile is planned again), until it has nothing
    /// more. Returns how many records were written. Gives up after enough entries for every
    /// partition once, with room for changes planned again.
    async fn write_in_entries(
        &self,
        what: &str,
        plan: impl Fn(&MetadataImage) -> Vec<MetadataRecord>,
    ) -> Result<usize, AdminError> {
        let partitions: usize = self
            .image()
            .topics
            .values()
            .map(|t| t.partitions.len())
            .sum();
        let mut written = 0;
        for _ in 0..partitions / decide::RECORDS_PER_ENTRY + 8 {
            let records = plan(&self.image());
            if records.is_empty() {
                return Ok(written);
            }
            written += records.len();
            self.propose(records).await?;
        }
        Err(AdminError::NoQuorum(format!(
            "{what}: its changes kept being refused as stale"
        )))
    }

    /// Adds a broker-only node as a learner (idempotent), on the leader.
    pub(super) async fn add_learner_local(
        &self,
        id: NodeId,
        address: String,
    ) -> Result<(), AdminError> {
        if self.config.voters.iter().any(|v| v.id == id) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "node {id} is a voter, not a learner"
            )));
        }
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&(id as RaftNodeId))
            .is_some_and(|n| n.addr == address);
        if known {
            return Ok(());
        }
        self.raft
            .add_learner(id as RaftNodeId, openraft::BasicNode::new(address), false)
            .await
            .map_err(|e| AdminError::NoQuorum(e.to_string()))?;
        tracing::info!(node = id, "added a broker-only node as a metadata learner");
        Ok(())
    }

    /// This node's view of the quorum.
    pub(super) fn quorum_local(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let progress = m.replication.clone().unwrap_or_default();
        let last_index = m.last_log_index.map(|i| i as i64).unwrap_or(-1);
        let voters = self
            .config
            .voters
            .iter()
            .map(|v| {
                let log_end_offset = if v.id == self.config.node_id {
                    last_index
                } else {
                    progress
                        .get(&(v.id as RaftNodeId))
                        .and_then(|l| l.as_ref())
                        .map(|l| l.index as i64)
                        .unwrap_or(-1)
                };
                VoterStatus {
                    id: v.id,
                    log_end_offset,
                }
            })
            .collect();
        QuorumStatus {
            cluster_id: self.cluster_id(),
            node_id: self.config.node_id,
            leader_id: m.current_leader.map(|l| l as NodeId).unwrap_or(-1),
            term: m.current_term,
            high_watermark: m.last_applied.map(|l| l.index as i64).unwrap_or(-1),
            voters,
        }
    }
}

/// The record of one `scram.bootstrap.credentials` entry: a fresh salt, the password never
/// stored.
fn bootstrap_credential(c: &crate::config::BootstrapCredential) -> MetadataRecord {
    use crate::auth::scram;
    let salt = crate::auth::random_bytes(32);
    let salted = scram::salted_password(c.mechanism, c.password.as_bytes(), &salt, c.iterations);
    MetadataRecord::ScramCredential {
        user: c.user.clone(),
        mechanism: c.mechanism.name().to_string(),
        credential: Some(scram::credential(c.mechanism, &salted, &salt, c.iterations)),
    }
}
