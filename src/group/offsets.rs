//! A group's committed offsets: which commits it accepts from whom, applying commits (new or
//! replayed from the log, the later record winning), the topics its members subscribe to
//! (OffsetDelete refuses those), and which offsets have outlived their retention.

use std::time::Instant;

use super::records::OffsetValue;
use super::state::Group;
use super::types::{Caller, Committed, GroupError, State};

impl Group {
    /// OffsetCommit's membership check (a commit also counts as a heartbeat). A negative
    /// generation is a commit from outside any group, allowed only while the group is empty.
    pub fn check_commit(&mut self, caller: Caller, now: Instant) -> Result<(), GroupError> {
        if self.state == State::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if caller.generation < 0 && self.state == State::Empty {
            return Ok(());
        }
        if self.state == State::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        self.check_current(caller, now)
    }

    /// Commits `value` for a partition if it is newer (by log position) than what is held.
    pub fn apply_offset(
        &mut self,
        topic: &str,
        partition: i32,
        value: OffsetValue,
        log_offset: i64,
    ) {
        let key = (topic.to_string(), partition);
        if self
            .offsets
            .get(&key)
            .is_some_and(|c| c.log_offset > log_offset)
        {
            return;
        }
        self.offsets.insert(key, Committed { value, log_offset });
    }

    /// Topics the members subscribe to (consumer protocol only).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for m in self.members.values() {
            all.extend(super::records::subscribed_topics(
                &m.metadata(self.protocol.as_deref()),
            )?);
        }
        all.sort();
        all.dedup();
        Some(all)
    }

    /// Offsets past their retention: for a group with no members, counted from when it became
    /// empty (or from the commit, if later); offsets committed outside any group count from
    /// the commit.
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        if self.state != State::Empty {
            return Vec::new();
        }
        self.offsets
            .iter()
            .filter(|(_, c)| {
                let base = match self.protocol_type {
                    Some(_) => c.value.commit_timestamp.max(self.state_since_ms),
                    None => c.value.commit_timestamp,
                };
                base.saturating_add(retention_ms) <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}
