//! A transaction shard: one `__transaction_state` partition this node leads and the
//! transactional ids kept in it — created on `Leadership::Elected`, loaded by replaying the
//! partition's log (and every transaction found decided but not completed is completed again),
//! dropped on `Resigned` — and the timers over loaded shards: transactions open past their
//! timeout are aborted at a bumped epoch (fencing their producer), ids idle past
//! `transactional.id.expiration.ms` are forgotten with a tombstone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::{self, TxnMeta};
use super::{decode, Coordinator, TXN_TOPIC};
use crate::replica::{Leadership, Partition};
use crate::types::{now_ms, LeaderEpoch};

/// One transactional id's state; `None` until its first InitProducerId is written. The async
/// lock orders every change to the id (decide, write, wait for replication, apply).
pub(super) type Cell = Arc<tokio::sync::Mutex<Option<TxnMeta>>>;

pub(super) struct Shard {
    pub(super) index: i32,
    /// The partition's leader epoch: the coordinator epoch markers carry.
    pub(super) epoch: LeaderEpoch,
    pub(super) loaded: watch::Sender<bool>,
    pub(super) partition: Arc<Partition>,
    txns: Mutex<HashMap<String, Cell>>,
    pub(super) cancel: CancellationToken,
}

impl Shard {
    pub(super) fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    fn txns(&self) -> MutexGuard<'_, HashMap<String, Cell>> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id's cell, created empty when the id is new.
    pub(super) fn txn(&self, id: &str) -> Cell {
        self.txns().entry(id.to_string()).or_default().clone()
    }

    /// The id's cell if the id was ever initialized here (requests on unknown ids make none).
    pub(super) fn existing(&self, id: &str) -> Option<Cell> {
        self.txns().get(id).cloned()
    }

    pub(super) fn all(&self) -> Vec<(String, Cell)> {
        self.txns()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Coordinator {
    /// Follows this node's leadership of `__transaction_state` partitions and drives the
    /// timeout and expiry timers until cancelled.
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
            .subscribe_leadership(TXN_TOPIC, Arc::new(listener));
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.config.txn.abort_check_interval_ms.max(10),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry_every = Duration::from_millis(self.config.txn.expiry_check_interval_ms);
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
                    self.abort_timed_out().await;
                    if last_expiry.elapsed() >= expiry_every {
                        last_expiry = Instant::now();
                        self.expire_ids().await;
                    }
                }
            }
        }
    }

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
            partition,
            txns: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        });
        self.shards().insert(index, shard.clone());
        tokio::spawn(self.clone().load(shard));
    }

    fn resigned(&self, index: i32) {
        if let Some(shard) = self.shards().remove(&index) {
            shard.cancel.cancel();
            tracing::info!(
                partition = index,
                "no longer transaction coordinator for this partition"
            );
        }
    }

    /// Replays a newly led partition into its ids, then completes every decided transaction.
    async fn load(self: Arc<Self>, shard: Arc<Shard>) {
        let started = Instant::now();
        let part = shard.partition.clone();
        let replayed = tokio::task::spawn_blocking(move || {
            let mut txns: HashMap<String, TxnMeta> = HashMap::new();
            crate::group::replay(&part, |r| {
                if r.control {
                    return;
                }
                match decode(r.key.as_ref(), r.value.as_ref()) {
                    Some((id, Some(meta))) => {
                        txns.insert(id, meta);
                    }
                    Some((id, None)) => {
                        txns.remove(&id);
                    }
                    None => {}
                }
            })
            .map(|()| txns)
        })
        .await;
        let txns = match replayed {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::error!(partition = shard.index, error = %e, "cannot load transactions");
                return;
            }
            Err(e) => {
                tracing::error!(partition = shard.index, error = %e, "transaction load task failed");
                return;
            }
        };
        if shard.cancel.is_cancelled() {
            return;
        }
        let deciding: Vec<String> = txns
            .iter()
            .filter(|(_, m)| m.state.is_prepare())
            .map(|(id, _)| id.clone())
            .collect();
        let count = txns.len();
        *shard.txns() = txns
            .into_iter()
            .map(|(id, m)| (id, Arc::new(tokio::sync::Mutex::new(Some(m)))))
            .collect();
        shard.loaded.send_replace(true);
        tracing::info!(
            partition = shard.index,
            epoch = shard.epoch,
            transactional_ids = count,
            resumed = deciding.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "transaction coordinator loaded its partition"
        );
        for id in deciding {
            self.spawn_completion(&shard, &id);
        }
    }

    fn loaded_shards(&self) -> Vec<Arc<Shard>> {
        self.shards()
            .values()
            .filter(|s| s.is_loaded())
            .cloned()
            .collect()
    }

    /// Aborts every transaction open longer than its timeout, at the next epoch.
    async fn abort_timed_out(self: &Arc<Self>) {
        for shard in self.loaded_shards() {
            for (id, cell) in shard.all() {
                let Ok(mut guard) = cell.try_lock() else {
                    continue; // busy: looked at on the next tick
                };
                let Some(abort) = guard.as_ref().and_then(|m| state::timed_out(m, now_ms())) else {
                    continue;
                };
                if self.write(&shard, &id, Some(&abort)).await.is_err() {
                    continue;
                }
                tracing::info!(transactional_id = %id, producer_id = abort.producer_id, epoch = abort.epoch, timeout_ms = abort.timeout_ms, "aborting a transaction open past its timeout");
                self.counters
                    .timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *guard = Some(abort);
                drop(guard);
                self.spawn_completion(&shard, &id);
            }
        }
    }

    /// Forgets ids with no transaction for `transactional.id.expiration.ms`.
    async fn expire_ids(&self) {
        let expiration = self.config.txn.id_expiration_ms;
        for shard in self.loaded_shards() {
            for (id, cell) in shard.all() {
                let Ok(mut guard) = cell.try_lock() else {
                    continue;
                };
                if !guard
                    .as_ref()
                    .is_some_and(|m| state::expired(m, now_ms(), expiration))
                {
                    continue;
                }
                if self.write(&shard, &id, None).await.is_ok() {
                    *guard = None;
                    tracing::info!(transactional_id = %id, "transactional id expired");
                }
            }
        }
    }
}
