//! A shard: one offsets partition this node leads, the groups kept in it, and its lifecycle —
//! created when the replica manager tells of leadership (`Leadership::Elected`), loaded by
//! replaying the partition's log, dropped on `Resigned` (every waiting member is then told
//! NOT_COORDINATOR) — and the timers that run over loaded shards: group sessions and
//! deadlines, offset expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::log::{offset_key, read_groups};
use super::records::Key;
use super::state::{Group, State};
use super::{lock, Coordinator, OFFSETS_TOPIC};
use crate::replica::{Leadership, Partition};
use crate::types::{now_ms, LeaderEpoch};

/// How often group timers (session expiry, join and sync deadlines) are checked.
const TICK: Duration = Duration::from_millis(100);

/// One offsets partition this node leads, and the groups in it.
pub(super) struct Shard {
    pub(super) index: i32,
    pub(super) epoch: LeaderEpoch,
    /// Turns true once the shard's log is replayed; requests may wait for it.
    pub(super) loaded: watch::Sender<bool>,
    pub(super) partition: Arc<Partition>,
    pub(super) groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Offsets committed inside transactions not yet decided (TxnOffsetCommit), applied to
    /// their groups by a commit marker and dropped by an abort.
    pub(super) pending: Mutex<super::log::PendingTxnOffsets>,
    pub(super) cancel: CancellationToken,
}

impl Shard {
    pub(super) fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    pub(super) fn groups(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<Group>>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups().get(id).cloned()
    }

    pub(super) fn group_or_new(&self, id: &str) -> Arc<Mutex<Group>> {
        self.groups()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now_ms()))))
            .clone()
    }
}

impl Coordinator {
    /// Follows this node's leadership of offsets partitions (from the replica manager) and
    /// drives group timers and offset expiry until cancelled.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let me = Arc::downgrade(&self);
        let listener = move |event| {
            let Some(me) = me.upgrade() else { return };
            match event {
                Leadership::Elected { partition, epoch } => me.elected(partition, epoch),
                Leadership::Resigned { tp } => me.resigned(tp.partition),
            }
        };
        self.replicas
            .subscribe_leadership(OFFSETS_TOPIC, Arc::new(listener));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry_every = Duration::from_millis(self.config.groups.offsets_check_interval_ms);
        let mut last_expiry = Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => {
                    for s in self.shards().drain().map(|(_, s)| s) {
                        s.cancel.cancel();
                    }
                    return;
                }
                _ = tick.tick() => {
                    self.tick_groups();
                    if last_expiry.elapsed() >= expiry_every {
                        last_expiry = Instant::now();
                        self.expire_offsets().await;
                    }
                }
            }
        }
    }

    /// This node now leads an offsets partition at `epoch`: a new shard replaces any older
    /// one and loads the partition's groups (in the background: this runs inside the replica
    /// manager's reconciliation).
    fn elected(self: &Arc<Self>, partition: Arc<Partition>, epoch: LeaderEpoch) {
        let index = partition.tp().partition;
        if self.shards().get(&index).is_some_and(|s| s.epoch == epoch) {
            return;
        }
        self.resigned(index);
        let shard = Arc::new(Shard {
            index,
            epoch,
            loaded: watch::channel(false).0,
            partition: partition.clone(),
            groups: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        });
        self.shards().insert(index, shard.clone());
        tokio::spawn(self.clone().load(shard));
    }

    /// This node no longer leads offsets partition `index`: its groups' members are told
    /// NOT_COORDINATOR and the shard goes.
    fn resigned(&self, index: i32) {
        let Some(shard) = self.shards().remove(&index) else {
            return;
        };
        shard.cancel.cancel();
        for g in shard.groups().drain().map(|(_, g)| g) {
            lock(&g).kill(now_ms());
        }
        tracing::info!(
            partition = index,
            "no longer coordinator for this offsets partition"
        );
    }

    /// Loads a newly led shard: replays the partition's log into groups.
    async fn load(self: Arc<Self>, shard: Arc<Shard>) {
        let tp = shard.partition.tp().clone();
        let started = Instant::now();
        let log_part = shard.partition.clone();
        let loaded = tokio::task::spawn_blocking(move || read_groups(&log_part)).await;
        let (groups, records, pending) = match loaded {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(%tp, error = %e, "cannot load consumer groups");
                return;
            }
            Err(e) => {
                tracing::error!(%tp, error = %e, "group load task failed");
                return;
            }
        };
        if shard.cancel.is_cancelled() {
            return;
        }
        let count = groups.len();
        *shard.pending.lock().unwrap_or_else(|p| p.into_inner()) = pending;
        *shard.groups() = groups
            .into_iter()
            .map(|(k, g)| (k, Arc::new(Mutex::new(g))))
            .collect();
        shard.loaded.send_replace(true);
        tracing::info!(
            partition = shard.index,
            epoch = shard.epoch,
            groups = count,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinator loaded its groups"
        );
    }

    pub(super) fn loaded_shards(&self) -> Vec<Arc<Shard>> {
        self.shards()
            .values()
            .filter(|s| s.is_loaded())
            .cloned()
            .collect()
    }

    fn tick_groups(self: &Arc<Self>) {
        let now = Instant::now();
        let ms = now_ms();
        for shard in self.loaded_shards() {
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for group in groups {
                let mut g = lock(&group);
                g.tick(now, ms);
                if g.take_dirty() {
                    self.store_group_later(shard.clone(), group.clone());
                }
            }
        }
    }

    /// Writes tombstones for offsets past `offsets.retention.minutes`; a group left with no
    /// members and no offsets is deleted.
    async fn expire_offsets(&self) {
        let retention = self.config.groups.offsets_retention_ms;
        for shard in self.loaded_shards() {
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for group in groups {
                let mut g = lock(&group);
                let expired = g.expired_offsets(now_ms(), retention);
                let drop_group = g.state == State::Empty && g.offsets.len() == expired.len();
                if expired.is_empty() && !drop_group {
                    continue;
                }
                let mut tombstones: Vec<(Bytes, Option<Bytes>)> = expired
                    .iter()
                    .map(|(t, p)| (offset_key(&g.id, t, *p), None))
                    .collect();
                if drop_group {
                    tombstones.push((Key::Group(g.id.clone()).encode(), None));
                }
                if self.append(&shard, &tombstones).is_err() {
                    break;
                }
                tracing::info!(group = %g.id, expired = expired.len(), deleted = drop_group, "committed offsets expired");
                for k in &expired {
                    g.offsets.remove(k);
                }
                if drop_group {
                    g.kill(now_ms());
                    let id = g.id.clone();
                    drop(g);
                    shard.groups().remove(&id);
                }
            }
        }
    }
}
