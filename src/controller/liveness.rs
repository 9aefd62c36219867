//! Broker liveness: every broker registers (id, incarnation, advertised endpoints, rack) and then
//! heartbeats to the leader every `broker.heartbeat.interval.ms` (`run_broker`); the leader's
//! memory of those heartbeats (`Liveness`, in memory: a new leader starts everyone's clock
//! afresh), which its duties (`leader.rs`) read to fence brokers that went silent; and the
//! quorum status any node reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Handle;
use crate::metadata::BrokerRegistration;
use crate::types::NodeId;

/// The leader's memory of heartbeats.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Incarnations that asked for a controlled shutdown: a late heartbeat must not unfence them.
    pub(super) stopping: Mutex<std::collections::HashSet<uuid::Uuid>>,
    streams: Mutex<Streams>,
}

/// Each broker's liveness stream to this controller: the one open now (by number), and when the
/// last one closed with no other open.
#[derive(Default)]
struct Streams {
    next: u64,
    open: HashMap<NodeId, u64>,
    closed: HashMap<NodeId, Instant>,
}

/// A broker's liveness stream, as the controller holds it: dropping it (the stream ended — the
/// broker's connection closed, or this node stopped leading) records the close.
pub(super) struct StreamGuard {
    liveness: std::sync::Arc<Liveness>,
    broker: NodeId,
    number: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.liveness
            .stream_closed(self.broker, self.number, Instant::now());
    }
}

/// This broker's lease from the metadata quorum: held until `broker.lease.ms` after the sending
/// of the last heartbeat that a controller answered while it could still reach a quorum. A
/// partition leader without it acknowledges no produce: it may be cut off, and the controller
/// may already be electing another leader. Safe without synchronized clocks because the
/// controller fences only `broker.session.timeout.ms` (longer) after *receiving* that heartbeat,
/// which it did after it was sent; a new controller starts every session afresh, later still.
pub struct Lease {
    length: Option<Duration>,
    origin: Instant,
    /// Milliseconds after `origin` at which the lease ends (0: never held).
    until: AtomicU64,
}

impl Lease {
    /// `length_ms` 0: no lease (always held).
    pub fn new(length_ms: u64) -> Lease {
        Lease {
            length: (length_ms > 0).then(|| Duration::from_millis(length_ms)),
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// A heartbeat sent at `sent` was answered by a controller that confirmed its quorum.
    pub(super) fn renew(&self, sent: Instant) {
        if let Some(length) = self.length {
            let until = (sent + length).saturating_duration_since(self.origin);
            self.until
                .fetch_max(until.as_millis() as u64, Ordering::Relaxed);
        }
    }

    pub fn held(&self) -> bool {
        self.held_at(Instant::now())
    }

    fn held_at(&self, now: Instant) -> bool {
        self.length.is_none()
            || (now.saturating_duration_since(self.origin).as_millis() as u64)
                < self.until.load(Ordering::Relaxed)
    }
}

/// The quorum as one node sees it (the leader's view has every voter's progress).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub leader_id: NodeId,
    pub term: u64,
    /// The last committed-and-applied metadata log index.
    pub high_watermark: i64,
    pub voters: Vec<VoterStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VoterStatus {
    pub id: NodeId,
    /// The last log index known to be on that voter (-1: unknown).
    pub log_end_offset: i64,
}

impl Liveness {
    /// A broker opened its liveness stream: it replaces any older one.
    pub(super) fn stream_opened(self: &std::sync::Arc<Self>, broker: NodeId) -> StreamGuard {
        let mut st = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        st.next += 1;
        let number = st.next;
        st.open.insert(broker, number);
        st.closed.remove(&broker);
        StreamGuard {
            liveness: self.clone(),
            broker,
            number,
        }
    }

    fn stream_closed(&self, broker: NodeId, number: u64, at: Instant) {
        let mut st = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if st.open.get(&broker) == Some(&number) {
            st.open.remove(&broker);
            st.closed.insert(broker, at);
        }
    }

    /// Brokers whose stream closed at least `confirm` before `now`, with none reopened and no
    /// heartbeat since: most likely a dead process (its connections closed with it).
    pub(super) fn lost(&self, now: Instant, confirm: Duration) -> Vec<NodeId> {
        let st = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        st.closed
            .iter()
            .filter(|(b, at)| {
                now.saturating_duration_since(**at) >= confirm
                    && seen.get(b).is_none_or(|heard| heard <= *at)
            })
            .map(|(b, _)| *b)
            .collect()
    }

    /// The broker was fenced (or this node took over as leader): forget its closed stream.
    pub(super) fn forget_stream(&self, broker: NodeId) {
        let mut st = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        st.closed.remove(&broker);
    }

    pub(super) fn mark(&self, id: NodeId) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    pub(super) fn silent_for(&self, id: NodeId) -> Option<Duration> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|t| t.elapsed())
    }

    /// This node took over as leader at `now`: every broker gets a full session from now, and
    /// every broker's stream counts as closed now until it opens one to this leader — a broker
    /// that died with the old controller (or before it) never does, and is found by `lost`
    /// within the confirmation instead of a whole session later.
    pub(super) fn take_over(&self, ids: impl Iterator<Item = NodeId>, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        seen.clear();
        st.closed.clear();
        for id in ids {
            seen.insert(id, now);
            if !st.open.contains_key(&id) {
                st.closed.insert(id, now);
            }
        }
    }
}

impl Handle {
    /// Holds this broker's liveness stream to the leader open, reopening it (to whichever node
    /// leads) whenever it ends, until cancelled.
    async fn hold_liveness_stream(
        self,
        broker: NodeId,
        incarnation: uuid::Uuid,
        token: CancellationToken,
    ) {
        loop {
            if let Ok(mut pings) = self.open_liveness(broker, incarnation).await {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        ping = pings.message() => if !matches!(ping, Ok(Some(_))) { break },
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Runs on every broker: register, then heartbeat until cancelled; registers again when the
    /// leader no longer knows this incarnation. `registered` is told once the first one lands.
    pub async fn run_broker(
        self,
        reg: BrokerRegistration,
        registered: tokio::sync::watch::Sender<bool>,
        token: CancellationToken,
    ) {
        let every = Duration::from_millis(self.config.heartbeat_interval_ms);
        let mut is_registered = false;
        let mut warned = Instant::now() - Duration::from_secs(60);
        loop {
            if token.is_cancelled() {
                return;
            }
            if !is_registered {
                let joined = if self.is_voter() {
                    Ok(())
                } else {
                    self.join_as_learner(Duration::from_secs(2)).await
                };
                match joined.and(self.register(&reg, Duration::from_secs(2)).await) {
                    Ok(cluster_id) => {
                        tracing::info!(broker = reg.id, %cluster_id, "registered with the controller");
                        is_registered = true;
                        if !*registered.borrow() {
                            let stream = self.clone().hold_liveness_stream(
                                reg.id,
                                reg.incarnation,
                                token.child_token(),
                            );
                            tokio::spawn(stream);
                        }
                        registered.send_replace(true);
                    }
                    Err(e) => {
                        if warned.elapsed() > Duration::from_secs(10) {
                            tracing::warn!(error = %e, "waiting for the metadata quorum to register this broker");
                            warned = Instant::now();
                        }
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                        continue;
                    }
                }
            }
            let sent = Instant::now();
            // After a failure (most often: the metadata leader changed) try again soon, so
            // the lease outlives a controller election.
            let next = match self.heartbeat(reg.id, reg.incarnation, every * 2).await {
                Ok(answer) if !answer.registered => {
                    is_registered = false;
                    every
                }
                Ok(answer) => {
                    // Renewed only with the controller's metadata applied here: a leader
                    // deposed while it was cut off must see that before it may lead again.
                    if !answer.fenced && self.wait_applied(answer.applied_index, every).await {
                        self.lease.renew(sent);
                    }
                    every
                }
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat failed");
                    Duration::from_millis(100).min(every)
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_new_leader_counts_every_broker_without_a_stream_to_it_as_closed_from_its_takeover() {
        let live = Arc::new(Liveness::default());
        let confirm = Duration::from_millis(300);
        let _early = live.stream_opened(3); // reached this node before the duties noticed
        let now = Instant::now();
        let t0 = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        live.take_over([1, 2, 3, 4].into_iter(), t0);
        assert!(live.lost(t0, confirm).is_empty(), "not yet confirmed");
        let mut lost = live.lost(t0 + confirm, confirm);
        lost.sort();
        assert_eq!(lost, vec![1, 2, 4], "3's stream is open");
        // A live broker reconnects its stream, or heartbeats: only 4 — dead with the old
        // controller — does neither.
        let _s1 = live.stream_opened(1);
        live.mark(2);
        assert_eq!(live.lost(t0 + confirm, confirm), vec![4]);
    }

    #[test]
    fn a_lease_runs_from_the_sending_of_the_answered_heartbeat() {
        let lease = Lease::new(1500);
        let t0 = Instant::now();
        assert!(
            !lease.held_at(t0),
            "never held before a heartbeat is answered"
        );
        lease.renew(t0);
        assert!(lease.held_at(t0 + Duration::from_millis(1499)));
        assert!(!lease.held_at(t0 + Duration::from_millis(1500)));
        // An answer to an older heartbeat arriving late does not shorten it.
        lease.renew(t0 + Duration::from_millis(1000));
        lease.renew(t0);
        assert!(lease.held_at(t0 + Duration::from_millis(2499)));
        assert!(!lease.held_at(t0 + Duration::from_millis(2500)));
        assert!(Lease::new(0).held_at(t0), "0 turns the lease off");
    }

    #[test]
    fn a_closed_stream_marks_a_broker_lost_only_after_the_confirmation_and_without_news() {
        let live = Arc::new(Liveness::default());
        let confirm = Duration::from_millis(300);
        let s1 = live.stream_opened(1);
        let s2 = live.stream_opened(2);
        let t0 = Instant::now();
        assert!(
            live.lost(t0 + confirm * 10, confirm).is_empty(),
            "streams open"
        );
        drop(s1);
        let closed = Instant::now();
        assert!(live.lost(closed, confirm).is_empty(), "not yet confirmed");
        assert_eq!(live.lost(closed + confirm, confirm), vec![1]);
        // A new stream from broker 1 (it reconnected) clears it; so does a heartbeat after.
        let s1 = live.stream_opened(1);
        assert!(live.lost(closed + confirm, confirm).is_empty());
        drop(s2);
        live.mark(2);
        assert!(
            live.lost(Instant::now() + confirm, confirm).is_empty(),
            "heard from since"
        );
        // An older stream of a broker ending after a newer one opened changes nothing.
        let newer = live.stream_opened(1);
        drop(s1);
        assert!(live.lost(Instant::now() + confirm, confirm).is_empty());
        drop(newer);
        assert_eq!(live.lost(Instant::now() + confirm, confirm), vec![1]);
        live.forget_stream(1);
        assert!(live.lost(Instant::now() + confirm, confirm).is_empty());
    }
}
