//! The values a group's rules work with and answer in: errors, states, join and sync
//! arguments and replies, members, committed offsets and limits. Plain data; the rules are in
//! `state.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::OffsetValue;

/// Why a group request failed; `handlers::errors::group` maps each to its Kafka code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("the coordinator is still loading its groups")]
    LoadInProgress,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("unknown member id")]
    UnknownMemberId,
    /// KIP-394: a new dynamic member must join again with this id.
    #[error("member id required")]
    MemberIdRequired(String),
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout,
    #[error("another member now holds this group.instance.id")]
    FencedInstanceId,
    #[error("the group has reached group.max.size")]
    GroupMaxSizeReached,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group's members subscribe to this topic")]
    GroupSubscribedToTopic,
    #[error("the offset metadata is larger than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the offsets are too large to store")]
    InvalidCommitOffsetSize,
    #[error("{0} is longer than the offsets topic's records can hold")]
    TooLong(&'static str),
    /// TxnOffsetCommit from a producer whose epoch a newer one has replaced.
    #[error("the transactional producer was fenced by a newer one")]
    ProducerFenced,
    /// TxnOffsetCommit whose transaction does not have the group's offsets partition (its
    /// verification was refused or voided by a marker: KIP-890).
    #[error("the group's offsets partition is not in the producer's transaction")]
    NotInTransaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without an instance id: a new member gets MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoining a stable group must not compute a new assignment.
    pub skip_assignment: bool,
}

pub type JoinReply = Result<Joined, GroupError>;
pub type SyncReply = Result<Bytes, GroupError>;

/// An answer now, or a receiver for the answer once the barrier completes.
pub enum Step<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// What a SyncGroup needs next.
pub enum SyncStep {
    Now(SyncReply),
    Wait(oneshot::Receiver<SyncReply>),
    /// The leader's assignment is in: store the group, then call `finish_sync(generation, ..)`.
    Store {
        reply: oneshot::Receiver<SyncReply>,
        generation: i32,
    },
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The rules (`state.rs`) keep these: when the member was last heard, and the answers it
    /// waits for at a barrier.
    pub(super) last_heard: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinReply>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncReply>>,
}

impl Member {
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset and where its record sits in `__consumer_offsets` (a later record wins).
#[derive(Debug, Clone)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: i64,
}

/// Coordinator-wide limits the rules need.
#[derive(Debug, Clone)]
pub struct Limits {
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

/// Who a group request comes from: a member id (and, for a static member, its instance id) at
/// a generation.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation: i32,
}

impl<'a> Caller<'a> {
    pub fn new(member_id: &'a str, instance_id: Option<&'a str>, generation: i32) -> Caller<'a> {
        Caller {
            member_id,
            instance_id,
            generation,
        }
    }
}
