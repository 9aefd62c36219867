//! The openraft log store: entries, vote, committed id and purge point in sled.
//!
//! Owned by the openraft core task (it is moved into `Raft::new`); its `LogReader` clones share
//! the same sled trees. sled holds metadata only; partition data lives in `storage/`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::{RaftNodeId, TypeConfig};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log, vote and commit point, in two sled trees.
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::write_logs(&e).into()
}

/// A stored entry: binary (the Raft messages' encoding, a third of JSON's size for partition
/// changes), or JSON as versions before it wrote them.
fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError<RaftNodeId>> {
    super::codec::decode_snapshot(bytes).map_err(read_err)
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<LogStore, sled::Error> {
        Ok(LogStore {
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<RaftNodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError<RaftNodeId>> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        self.meta.insert(key, bytes).map_err(write_err)?;
        self.meta.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StorageError<RaftNodeId>> {
        match self.log.last().map_err(read_err)? {
            Some((_, v)) => decode_entry(&v).map(Some),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<RaftNodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (k, v) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| read_err(std::io::Error::other("bad raft log key")))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(decode_entry(&v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<RaftNodeId>> {
        let last_purged: Option<LogId<RaftNodeId>> = self.get_meta(LAST_PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError<RaftNodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<RaftNodeId>>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        self.put_meta(COMMITTED, &committed).await
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<RaftNodeId>>, StorageError<RaftNodeId>> {
        Ok(self
            .get_meta::<Option<LogId<RaftNodeId>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(
                &e.log_id.index.to_be_bytes(),
                super::codec::encode(&e).map_err(write_err)?,
            );
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let flushed = self
            .log
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(
        &mut self,
        log_id: LogId<RaftNodeId>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        // One atomic batch: removing keys one by one, a crash part-way would leave a log with a
        // hole in it (the entries after the hole still there).
        let mut batch = sled::Batch::default();
        for k in self.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(k.map_err(write_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.log.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        self.put_meta(LAST_PURGED, &log_id).await?;
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(k.map_err(write_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::MetadataCommand;
    use crate::metadata::MetadataRecord;

    fn entry(index: u64, term: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(MetadataCommand {
                records: vec![MetadataRecord::FenceBroker { id: index as i32 }],
            }),
        }
    }

    #[tokio::test]
    async fn entries_written_as_json_by_older_versions_read_beside_binary_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let mut store = LogStore::open(&db).expect("store");
        // Index 1 as an older version stored it; 2 and 3 as this one does (term 123 makes a
        // binary entry start with '{', as JSON does).
        let old = serde_json::to_vec(&entry(1, 1)).expect("json");
        store.log.insert(1u64.to_be_bytes(), old).expect("insert");
        for (i, term) in [(2, 1), (3, 123)] {
            let bytes = crate::controller::codec::encode(&entry(i, term)).expect("encode");
            store.log.insert(i.to_be_bytes(), bytes).expect("insert");
        }
        let got = store.try_get_log_entries(1..=3).await.expect("read");
        let want: Vec<_> = [(1, 1), (2, 1), (3, 123)].map(|(i, t)| entry(i, t)).into();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        let binary = store
            .log
            .get(3u64.to_be_bytes())
            .expect("get")
            .expect("stored");
        let json = serde_json::to_vec(&entry(3, 123)).expect("json");
        assert!(
            binary.len() * 2 < json.len(),
            "{} vs {} bytes",
            binary.len(),
            json.len()
        );
        assert_eq!(binary.first(), Some(&b'{'));
    }
}
