//! One consumer group under Kafka's classic rebalance protocol: members, generation, the join
//! and sync barriers, heartbeats and session expiry, static membership (KIP-345), the two-step
//! join for new dynamic members (KIP-394), and the group's committed offsets.
//!
//! Plain state behind a `std::sync::Mutex` owned by the coordinator's shard; never locked across
//! an await. Requests that must wait for other members (JoinGroup, SyncGroup) get a oneshot
//! receiver; whoever completes the barrier — another request or the coordinator's timer calling
//! `tick` — answers every waiter. Time comes in as arguments, so the rules are testable.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::{GroupValue, StoredMember};

pub use super::types::*;

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: State,
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// KIP-394 member ids handed out and not yet used, with their expiry.
    pending: HashMap<String, Instant>,
    /// End of the current join phase (PreparingRebalance) or sync phase (CompletingRebalance).
    deadline: Option<Instant>,
    /// A new group's first join waits this long for more members (group.initial.rebalance.delay.ms).
    initial_until: Option<Instant>,
    /// Membership changed outside a sync: the group record should be written again.
    dirty: bool,
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            offsets: HashMap::new(),
            pending: HashMap::new(),
            deadline: None,
            initial_until: None,
            dirty: false,
        }
    }

    /// Rebuilds a group from its stored record (a coordinator taking over). Members come back
    /// as a stable group and must heartbeat within their session timeout from `now`.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.state_since_ms = v.state_timestamp;
        self.members = v
            .members
            .into_iter()
            .map(|m| {
                let protocols = match &self.protocol {
                    Some(p) => vec![(p.clone(), m.subscription)],
                    None => Vec::new(),
                };
                let member = Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    last_heard: now,
                    join_waiter: None,
                    sync_waiter: None,
                };
                (m.member_id, member)
            })
            .collect();
        self.state = if self.members.is_empty() {
            State::Empty
        } else {
            State::Stable
        };
    }

    /// The group's record for `__consumer_offsets`.
    pub fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Whether the group record must be written again (and clears the flag).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn set_state(&mut self, state: State, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// Protocol names every current member supports, in `first`'s order of preference.
    fn common_protocols<'a>(&'a self, first: &'a [(String, Bytes)]) -> Vec<&'a str> {
        first
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && !self.common_protocols(protocols).is_empty()
    }

    /// The protocol with the most first-choice votes among those every member supports.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates = self.common_protocols(&first.protocols);
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((_, choice)) = m
                .protocols
                .iter()
                .find(|(p, _)| candidates.contains(&p.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|v| v.1 == choice) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; among equals, the earliest in the first member's preference.
        let best = votes.iter().map(|v| v.0).max()?;
        votes.iter().find(|v| v.0 == best).map(|v| v.1.to_string())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms)
    }

    fn current(&self, member_id: &str, skip_assignment: bool, for_leader: bool) -> Joined {
        Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if for_leader {
                self.joined_members()
            } else {
                Vec::new()
            },
            skip_assignment,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(self.protocol.as_deref()),
            })
            .collect()
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        a: JoinArgs,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> Step<JoinReply> {
        use GroupError::*;
        if self.state == State::Dead {
            return Step::Now(Err(CoordinatorNotAvailable));
        }
        if !self.compatible(&a.protocol_type, &a.protocols) {
            return Step::Now(Err(InconsistentGroupProtocol));
        }
        if a.member_id.is_empty() {
            if let Some(instance) = a.instance_id.clone() {
                if let Some(old) = self.static_member(&instance) {
                    return self.replace_static(&old, a, now, now_ms);
                }
            }
            if self.members.len() + self.pending.len() >= limits.max_size {
                return Step::Now(Err(GroupMaxSizeReached));
            }
            let id = new_member_id(a.instance_id.as_deref().unwrap_or(&a.client_id));
            if a.instance_id.is_none() && a.require_known_member_id {
                let expiry = now + Duration::from_millis(a.session_timeout_ms.max(0) as u64);
                self.pending.insert(id.clone(), expiry);
                return Step::Now(Err(MemberIdRequired(id)));
            }
            return self.add_member(id, a, now, now_ms, limits);
        }
        if self.pending.remove(&a.member_id).is_some() {
            let id = a.member_id.clone();
            return self.add_member(id, a, now, now_ms, limits);
        }
        let Some(m) = self.members.get(&a.member_id) else {
            return Step::Now(Err(match &a.instance_id {
                Some(i) if self.static_member(i).is_some() => FencedInstanceId,
                _ => UnknownMemberId,
            }));
        };
        if a.instance_id.is_some() && m.instance_id != a.instance_id {
            return Step::Now(Err(FencedInstanceId));
        }
        let same = m.protocols == a.protocols;
        let is_leader = self.leader.as_deref() == Some(a.member_id.as_str());
        match self.state {
            State::PreparingRebalance => {
                let rx = self.update_member(&a, now, true);
                self.maybe_complete_join(now, now_ms);
                Step::Wait(rx)
            }
            State::CompletingRebalance if same => {
                Step::Now(Ok(self.current(&a.member_id, false, is_leader)))
            }
            State::Stable if same && !is_leader => {
                Step::Now(Ok(self.current(&a.member_id, false, false)))
            }
            State::CompletingRebalance | State::Stable => {
                let rx = self.update_member(&a, now, true);
                self.prepare_rebalance(now, now_ms, limits.initial_rebalance_delay);
                self.maybe_complete_join(now, now_ms);
                Step::Wait(rx)
            }
            State::Empty | State::Dead => Step::Now(Err(UnknownMemberId)),
        }
    }

    /// Refreshes a member from its JoinGroup and parks its answer.
    fn update_member(
        &mut self,
        a: &JoinArgs,
        now: Instant,
        wait: bool,
    ) -> oneshot::Receiver<JoinReply> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&a.member_id) {
            m.protocols = a.protocols.clone();
            m.session_timeout_ms = a.session_timeout_ms;
            m.rebalance_timeout_ms = a.rebalance_timeout_ms;
            m.client_id = a.client_id.clone();
            m.client_host = a.client_host.clone();
            m.last_heard = now;
            if wait {
                if let Some(old) = m.join_waiter.replace(tx) {
                    let _ = old.send(Err(GroupError::UnknownMemberId));
                }
            }
        }
        rx
    }

    fn add_member(
        &mut self,
        id: String,
        a: JoinArgs,
        now: Instant,
        now_ms: i64,
        limits: &Limits,
    ) -> Step<JoinReply> {
        if self.members.len() >= limits.max_size {
            return Step::Now(Err(GroupError::GroupMaxSizeReached));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(a.protocol_type.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: a.instance_id,
                client_id: a.client_id,
                client_host: a.client_host,
                session_timeout_ms: a.session_timeout_ms,
                rebalance_timeout_ms: a.rebalance_timeout_ms,
                protocols: a.protocols,
                assignment: Bytes::new(),
                last_heard: now,
                join_waiter: Some(tx),
                sync_waiter: None,
            },
        );
        if self.state == State::PreparingRebalance {
            if let (Some(_), Some(deadline)) = (self.initial_until, self.deadline) {
                // Still gathering a new group's first members: wait a little longer.
                self.initial_until = Some((now + limits.initial_rebalance_delay).min(deadline));
            }
        } else {
            self.prepare_rebalance(now, now_ms, limits.initial_rebalance_delay);
        }
        self.maybe_complete_join(now, now_ms);
        Step::Wait(rx)
    }

    /// A known static member (group.instance.id) came back with a new process: it takes over
    /// the old member's place under a new member id, without a rebalance if nothing changed.
    fn replace_static(
        &mut self,
        old: &str,
        a: JoinArgs,
        now: Instant,
        now_ms: i64,
    ) -> Step<JoinReply> {
        let Some(mut m) = self.members.remove(old) else {
            return Step::Now(Err(GroupError::UnknownMemberId));
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        let id = new_member_id(a.instance_id.as_deref().unwrap_or_default());
        let unchanged = m.protocols == a.protocols;
        m.id = id.clone();
        self.members.insert(id.clone(), m);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        let args = JoinArgs {
            member_id: id.clone(),
            ..a
        };
        self.dirty = true;
        match self.state {
            State::Stable if unchanged => {
                self.update_member(&args, now, false);
                let is_leader = self.leader.as_deref() == Some(id.as_str());
                Step::Now(Ok(self.current(&id, is_leader, is_leader)))
            }
            State::PreparingRebalance => {
                let rx = self.update_member(&args, now, true);
                self.maybe_complete_join(now, now_ms);
                Step::Wait(rx)
            }
            _ => {
                let rx = self.update_member(&args, now, true);
                self.prepare_rebalance(now, now_ms, Duration::ZERO);
                self.maybe_complete_join(now, now_ms);
                Step::Wait(rx)
            }
        }
    }

    /// Opens a join phase. A group leaving Empty first waits `initial_delay` for more members.
    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        let first = self.state == State::Empty && !initial_delay.is_zero();
        let deadline = now + self.max_rebalance_timeout();
        self.deadline = Some(deadline);
        self.initial_until = first.then(|| (now + initial_delay).min(deadline));
        self.set_state(State::PreparingRebalance, now_ms);
        tracing::debug!(group = %self.id, members = self.members.len(), "preparing rebalance");
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let delaying = self.initial_until.is_some_and(|t| now < t);
        let expired = self.deadline.is_some_and(|d| now >= d);
        if expired || (!delaying && self.all_joined()) {
            self.complete_join(now, now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin leave, the generation moves on, and
    /// every waiting member gets its answer (the leader with everyone's metadata).
    fn complete_join(&mut self, now: Instant, now_ms: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.members.remove(&id);
        }
        self.initial_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.deadline = None;
            self.set_state(State::Empty, now_ms);
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(State::CompletingRebalance, now_ms);
        self.deadline = Some(now + self.max_rebalance_timeout());
        let leader = self.leader.clone().unwrap_or_default();
        let everyone = self.joined_members();
        let generation = self.generation;
        for m in self.members.values_mut() {
            m.last_heard = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Ok(Joined {
                    generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                }));
            }
        }
        tracing::info!(group = %self.id, generation, members = self.members.len(), protocol = ?self.protocol, "group rebalanced");
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        match self.members.get(member_id) {
            Some(m) if instance_id.is_some() && m.instance_id.as_deref() != instance_id => {
                Err(GroupError::FencedInstanceId)
            }
            Some(_) => Ok(()),
            None => match instance_id {
                Some(i) if self.static_member(i).is_some() => Err(GroupError::FencedInstanceId),
                _ => Err(GroupError::UnknownMemberId),
            },
        }
    }

    /// SyncGroup. The leader's call carries the assignments.
    pub fn sync(
        &mut self,
        caller: Caller,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> SyncStep {
        use GroupError::*;
        let (member_id, generation) = (caller.member_id, caller.generation);
        if let Err(e) = self.check_current(caller, now) {
            return SyncStep::Now(Err(e));
        }
        let (ptype, pname) = protocol;
        if ptype.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || pname.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return SyncStep::Now(Err(InconsistentGroupProtocol));
        }
        match self.state {
            State::Empty | State::Dead => SyncStep::Now(Err(UnknownMemberId)),
            State::PreparingRebalance => SyncStep::Now(Err(RebalanceInProgress)),
            State::Stable => SyncStep::Now(Ok(self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default())),
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let is_leader = self.leader.as_deref() == Some(member_id);
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(Err(RebalanceInProgress));
                    }
                }
                if !is_leader {
                    return SyncStep::Wait(rx);
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                SyncStep::Store {
                    reply: rx,
                    generation,
                }
            }
        }
    }

    /// The group record with the leader's assignment was stored (or not): answer every member
    /// waiting in SyncGroup.
    pub fn finish_sync(
        &mut self,
        generation: i32,
        stored: Result<(), GroupError>,
        now: Instant,
        now_ms: i64,
    ) {
        if self.state != State::CompletingRebalance || self.generation != generation {
            return;
        }
        match stored {
            Ok(()) => {
                self.set_state(State::Stable, now_ms);
                self.deadline = None;
                for m in self.members.values_mut() {
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Ok(m.assignment.clone()));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Err(e.clone()));
                    }
                }
                self.prepare_rebalance(now, now_ms, Duration::ZERO);
            }
        }
    }

    /// Heartbeat: keeps the member's session alive and tells it whether to rejoin.
    pub fn heartbeat(&mut self, caller: Caller, now: Instant) -> Result<(), GroupError> {
        self.check_current(caller, now)?;
        match self.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            State::Empty => Err(GroupError::UnknownMemberId),
            _ => Ok(()),
        }
    }

    /// A request from a current member of the current generation, which also keeps its session
    /// alive.
    pub(super) fn check_current(&mut self, caller: Caller, now: Instant) -> Result<(), GroupError> {
        if self.state == State::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_member(caller.member_id, caller.instance_id)?;
        if caller.generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(caller.member_id) {
            m.last_heard = now;
        }
        Ok(())
    }

    /// LeaveGroup for one member (by member id, or by instance id for a static member).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if self.state == State::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let id = match instance_id {
            Some(i) => {
                let found = self.static_member(i).ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != found {
                    return Err(GroupError::FencedInstanceId);
                }
                found
            }
            None => {
                if self.pending.remove(member_id).is_some() {
                    return Ok(());
                }
                if !self.members.contains_key(member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        self.remove_member(&id, now, now_ms);
        Ok(())
    }

    fn remove_member(&mut self, id: &str, now: Instant, now_ms: i64) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        tracing::info!(group = %self.id, member = %id, "member left the group");
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(now, now_ms, Duration::ZERO);
                self.maybe_complete_join(now, now_ms);
            }
            State::PreparingRebalance => self.maybe_complete_join(now, now_ms),
            State::Empty | State::Dead => {}
        }
    }

    /// Timers: expired KIP-394 ids, join and sync phase deadlines, silent members.
    pub fn tick(&mut self, now: Instant, now_ms: i64) {
        self.pending.retain(|_, expiry| *expiry > now);
        if self.state == State::CompletingRebalance && self.deadline.is_some_and(|d| now >= d) {
            // The leader never sent its assignment: members that did not sync are dropped.
            let late: Vec<String> = self
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.id.clone())
                .collect();
            tracing::info!(group = %self.id, ?late, "sync phase timed out");
            for id in late {
                self.remove_member(&id, now, now_ms);
            }
            if self.state == State::CompletingRebalance {
                self.prepare_rebalance(now, now_ms, Duration::ZERO);
            }
        }
        let silent: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now.duration_since(m.last_heard)
                        > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in silent {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, now, now_ms);
        }
        self.maybe_complete_join(now, now_ms);
    }

    /// Marks the group deleted; every waiter is told the coordinator moved on.
    pub fn kill(&mut self, now_ms: i64) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Err(GroupError::NotCoordinator));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Err(GroupError::NotCoordinator));
            }
        }
        self.members.clear();
        self.offsets.clear();
        self.set_state(State::Dead, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::OffsetValue;

    fn limits() -> Limits {
        Limits {
            initial_rebalance_delay: Duration::ZERO,
            max_size: 100,
        }
    }

    fn args(member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinArgs {
        JoinArgs {
            member_id: member.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"m")))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn now_reply(step: Step<JoinReply>) -> JoinReply {
        match step {
            Step::Now(r) => r,
            Step::Wait(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    /// Two-step join (KIP-394), then a single member forms generation 1 as its own leader.
    /// A first member that joined and synced: the group is Stable at generation 1.
    fn stable_member(g: &mut Group, now: Instant) -> Joined {
        let a = join_new(g, now);
        let _ = g.sync(
            Caller::new(&a.member_id, None, 1),
            (None, None),
            vec![],
            now,
        );
        g.finish_sync(1, Ok(()), now, 0);
        a
    }

    fn join_new(g: &mut Group, now: Instant) -> Joined {
        let id = match now_reply(g.join(args("", None, &["range"]), now, 0, &limits())) {
            Err(GroupError::MemberIdRequired(id)) => id,
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        };
        match g.join(args(&id, None, &["range"]), now, 0, &limits()) {
            Step::Wait(rx) => {
                let mut rx = rx;
                rx.try_recv()
                    .expect("a lone member completes the join at once")
                    .expect("joined")
            }
            Step::Now(r) => r.expect("joined"),
        }
    }

    #[test]
    fn new_members_join_in_two_steps_and_the_first_leads() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let j = join_new(&mut g, now);
        assert_eq!(j.generation, 1);
        assert_eq!(j.leader, j.member_id);
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.protocol.as_deref(), Some("range"));
        assert_eq!(g.state, State::CompletingRebalance);
        let SyncStep::Store {
            mut reply,
            generation,
        } = g.sync(
            Caller::new(&j.member_id, None, 1),
            (None, None),
            vec![(j.member_id.clone(), Bytes::from_static(b"A"))],
            now,
        )
        else {
            panic!("the leader's sync stores the group");
        };
        g.finish_sync(generation, Ok(()), now, 0);
        assert_eq!(
            reply.try_recv().expect("answered"),
            Ok(Bytes::from_static(b"A"))
        );
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.heartbeat(Caller::new(&j.member_id, None, 1), now), Ok(()));
        assert_eq!(
            g.heartbeat(Caller::new(&j.member_id, None, 0), now),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat(Caller::new("nobody", None, 1), now),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn a_second_member_triggers_a_rebalance_that_waits_for_the_first() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let a = stable_member(&mut g, now);
        let Err(GroupError::MemberIdRequired(b)) =
            now_reply(g.join(args("", None, &["range"]), now, 0, &limits()))
        else {
            panic!("two-step join");
        };
        let Step::Wait(mut b_rx) = g.join(args(&b, None, &["range"]), now, 0, &limits()) else {
            panic!("must wait for the existing member");
        };
        assert!(b_rx.try_recv().is_err(), "not complete until a rejoins");
        assert_eq!(
            g.heartbeat(Caller::new(&a.member_id, None, 1), now),
            Err(GroupError::RebalanceInProgress)
        );
        let Step::Wait(mut a_rx) = g.join(args(&a.member_id, None, &["range"]), now, 0, &limits())
        else {
            panic!("rejoin waits");
        };
        let ja = a_rx.try_recv().expect("answered").expect("ok");
        let jb = b_rx.try_recv().expect("answered").expect("ok");
        assert_eq!(ja.generation, 2);
        assert_eq!(jb.generation, 2);
        assert_eq!(ja.leader, a.member_id, "the leader stays");
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
    }

    #[test]
    fn a_silent_member_expires_and_an_empty_group_bumps_its_generation() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        stable_member(&mut g, now);
        g.tick(now + Duration::from_secs(5), 5);
        assert_eq!(g.state, State::Stable);
        g.tick(now + Duration::from_secs(11), 11);
        assert_eq!(g.state, State::Empty);
        assert_eq!(g.generation, 2);
        assert!(g.take_dirty());
    }

    #[test]
    fn a_static_member_returning_takes_its_place_without_a_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let Step::Wait(mut rx) = g.join(args("", Some("i1"), &["range"]), now, 0, &limits()) else {
            panic!("static members join in one step");
        };
        let first = rx.try_recv().expect("answered").expect("ok");
        let _ = g.sync(
            Caller::new(&first.member_id, Some("i1"), 1),
            (None, None),
            vec![(first.member_id.clone(), Bytes::from_static(b"P"))],
            now,
        );
        g.finish_sync(1, Ok(()), now, 0);
        let again = now_reply(g.join(args("", Some("i1"), &["range"]), now, 0, &limits()))
            .expect("rejoined");
        assert_eq!(again.generation, 1, "no new generation");
        assert_ne!(again.member_id, first.member_id);
        assert_eq!(g.state, State::Stable);
        let SyncStep::Now(Ok(asg)) = g.sync(
            Caller::new(&again.member_id, Some("i1"), 1),
            (None, None),
            vec![],
            now,
        ) else {
            panic!("a stable group answers sync at once");
        };
        assert_eq!(asg, Bytes::from_static(b"P"));
        assert_eq!(
            g.heartbeat(Caller::new(&first.member_id, Some("i1"), 1), now),
            Err(GroupError::FencedInstanceId),
            "the old process is fenced"
        );
    }

    #[test]
    fn protocols_must_match_the_group() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let _ = join_new(&mut g, now);
        let mut other = args("", None, &["roundrobin"]);
        other.require_known_member_id = false;
        assert!(matches!(
            now_reply(g.join(other, now, 0, &limits())),
            Err(GroupError::InconsistentGroupProtocol)
        ));
    }

    #[test]
    fn offsets_expire_only_once_the_group_is_empty() {
        let mut g = Group::new("g", 0);
        g.apply_offset(
            "t",
            0,
            OffsetValue {
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 100,
            },
            1,
        );
        assert!(g.expired_offsets(150, 100).is_empty());
        assert_eq!(g.expired_offsets(200, 100), vec![("t".to_string(), 0)]);
        // An older record never replaces a newer one.
        g.apply_offset(
            "t",
            0,
            OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 100,
            },
            0,
        );
        assert_eq!(g.offsets[&("t".to_string(), 0)].value.offset, 5);
    }
}
