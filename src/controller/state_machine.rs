//! The metadata state machine: applies committed `MetadataCommand`s to the `MetadataImage` and
//! publishes every new image on a watch channel.
//!
//! Owned by the openraft core task; snapshot builders share its state through an `Arc<Mutex>`.
//! Apply is deterministic: it reads nothing but the entries. Snapshots are the serialized image,
//! kept in sled so a restart replays only the log after the last snapshot.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{codec, RaftNodeId, TypeConfig};
use crate::metadata::{ApplyOutcome, MetadataImage};

const SNAPSHOT: &str = "snapshot";

#[derive(Clone, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, BasicNode>,
    image: MetadataImage,
}

/// `SmState` as snapshots held it with an older image shape `I`.
#[derive(Deserialize)]
struct SmStateOld<I> {
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, BasicNode>,
    image: I,
}

fn decode_old<I: serde::de::DeserializeOwned + Into<MetadataImage>>(
    bytes: &[u8],
) -> std::io::Result<SmState> {
    let old = codec::decode_snapshot::<SmStateOld<I>>(bytes)?;
    Ok(SmState {
        last_applied: old.last_applied,
        membership: old.membership,
        image: old.image.into(),
    })
}

/// A snapshot's state, in this version's shape or an earlier one: before reassignments (V3),
/// before SCRAM credentials (V2). Newest first — bincode reads an older shape's prefix of a
/// newer snapshot without complaint, never the other way round.
fn decode_state(bytes: &[u8]) -> std::io::Result<SmState> {
    codec::decode_snapshot::<SmState>(bytes).or_else(|e| {
        decode_old::<crate::metadata::MetadataImageV3>(bytes)
            .or_else(|_| decode_old::<crate::metadata::MetadataImageV2>(bytes))
            .map_err(|_| e)
    })
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    state: Arc<Mutex<SmState>>,
    tree: sled::Tree,
    images: watch::Sender<Arc<MetadataImage>>,
    /// Snapshots received from the leader since start (`/metrics`).
    pub installed: Arc<std::sync::atomic::AtomicU64>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn lock(state: &Mutex<SmState>) -> std::sync::MutexGuard<'_, SmState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl StateMachine {
    /// Opens the state machine, loading the last snapshot (if any) so the image is current up to
    /// it before openraft replays the rest of the log.
    pub fn open(
        db: &sled::Db,
        images: watch::Sender<Arc<MetadataImage>>,
    ) -> Result<StateMachine, StorageError<RaftNodeId>> {
        let tree = db.open_tree("raft_sm").map_err(sm_err)?;
        let mut state = SmState::default();
        if let Some(bytes) = tree.get(SNAPSHOT).map_err(sm_err)? {
            let stored: StoredSnapshot = codec::decode_snapshot(&bytes).map_err(sm_err)?;
            state = decode_state(&stored.data).map_err(sm_err)?;
        }
        images.send_replace(Arc::new(state.image.clone()));
        Ok(StateMachine {
            state: Arc::new(Mutex::new(state)),
            tree,
            images,
            installed: Arc::default(),
        })
    }

    fn snapshot_now(&self) -> Result<Snapshot<TypeConfig>, StorageError<RaftNodeId>> {
        let state = lock(&self.state).clone();
        let data = codec::encode(&state).map_err(sm_err)?;
        let snapshot_id = match &state.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.tree
            .insert(SNAPSHOT, codec::encode(&stored).map_err(sm_err)?)
            .map_err(sm_err)?;
        self.tree.flush().map_err(sm_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<RaftNodeId>> {
        self.snapshot_now()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<RaftNodeId>>,
            StoredMembership<RaftNodeId, BasicNode>,
        ),
        StorageError<RaftNodeId>,
    > {
        let s = lock(&self.state);
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<Vec<ApplyOutcome>>, StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
    {
        let mut replies = Vec::new();
        let image = {
            let mut s = lock(&self.state);
            for entry in entries {
                s.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Vec::new()),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        replies.push(Vec::new());
                    }
                    EntryPayload::Normal(cmd) => {
                        let mut outcomes = Vec::with_capacity(cmd.records.len());
                        for record in &cmd.records {
                            outcomes.push(s.image.apply_mut(record));
                        }
                        replies.push(outcomes);
                    }
                }
            }
            Arc::new(s.image.clone())
        };
        self.images.send_replace(image);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<RaftNodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        let data = snapshot.into_inner();
        let state = decode_state(&data).map_err(sm_err)?;
        let image = Arc::new(state.image.clone());
        *lock(&self.state) = state;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.tree
            .insert(SNAPSHOT, codec::encode(&stored).map_err(sm_err)?)
            .map_err(sm_err)?;
        self.tree.flush_async().await.map_err(sm_err)?;
        self.images.send_replace(image);
        self.installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            last_log_index = meta.last_log_id.map(|l| l.index),
            bytes = stored.data.len(),
            "installed a metadata snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<RaftNodeId>> {
        match self.tree.get(SNAPSHOT).map_err(sm_err)? {
            Some(bytes) => {
                let stored: StoredSnapshot = codec::decode_snapshot(&bytes).map_err(sm_err)?;
                Ok(Some(Snapshot {
                    meta: stored.meta,
                    snapshot: Box::new(Cursor::new(stored.data)),
                }))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot written before the image had SCRAM credentials still reads, with none.
    #[test]
    fn a_snapshot_from_before_scram_credentials_reads() {
        let image = MetadataImage::default()
            .apply(&crate::metadata::MetadataRecord::InitCluster {
                cluster_id: "c1".into(),
            })
            .0;
        // The old shape: the same fields, without `scram` at the end.
        let old = (
            None::<LogId<RaftNodeId>>,
            StoredMembership::<RaftNodeId, BasicNode>::default(),
            (
                &image.cluster_id,
                &image.brokers,
                &image.topics,
                &image.topic_names,
                image.next_producer_id,
                &image.broker_configs,
            ),
        );
        let bytes = codec::encode(&old).expect("encode");
        assert!(codec::decode_snapshot::<SmState>(&bytes).is_err());
        let state = decode_state(&bytes).expect("the old shape reads");
        assert_eq!(state.image, image);
        let now = codec::encode(&state).expect("encode");
        assert_eq!(decode_state(&now).expect("the new shape").image, image);
    }

    /// A snapshot from before reassignments (with an ACL in it) reads whole, with none.
    #[test]
    fn a_snapshot_from_before_reassignments_reads() {
        use crate::metadata::{AclBinding, MetadataRecord};
        let image = MetadataImage::default()
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c1".into(),
            })
            .0
            .apply(&MetadataRecord::CreateAcl(AclBinding {
                resource_type: 2,
                resource_name: "t".into(),
                pattern_type: 3,
                principal: "User:a".into(),
                host: "*".into(),
                operation: 3,
                permission: 3,
            }))
            .0;
        assert_eq!(image.acls.len(), 1);
        let old = (
            None::<LogId<RaftNodeId>>,
            StoredMembership::<RaftNodeId, BasicNode>::default(),
            (
                &image.cluster_id,
                &image.brokers,
                &image.topics,
                &image.topic_names,
                image.next_producer_id,
                &image.broker_configs,
                &image.scram,
                &image.acls,
            ),
        );
        let bytes = codec::encode(&old).expect("encode");
        assert!(codec::decode_snapshot::<SmState>(&bytes).is_err());
        assert_eq!(
            decode_state(&bytes).expect("the V3 shape reads").image,
            image
        );
    }
}
