//! Every Kafka error code strom answers with is chosen here: from the typed errors of the
//! modules below (admin, elections, partitions, logs, appends, fetches, groups) and from the
//! refusals handlers decide themselves (`Refusal`). Handlers name no code.

use kafka_protocol::error::ResponseError as E;

use crate::controller::AdminError;
use crate::group::GroupError;
use crate::metadata::ElectionError;
use crate::replica::{
    AppendError, BatchError, DeleteError, EpochError, FetchError, HwWait, LogError, PartitionError,
    ProduceError, ProducerError, Refused,
};
use crate::txn::TxnError;

pub const NONE: i16 = 0;

/// Refusals a handler decides from the request itself, with no other module's error behind
/// them. Every Kafka code strom sends is chosen in this file: from these, or from the typed
/// errors of the modules below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A topic (or partition) by name this cluster does not have.
    UnknownTopicOrPartition,
    /// A topic id this cluster does not have (the id-based versions).
    UnknownTopicId,
    /// A name Kafka refuses, or a change to a topic only the broker itself writes.
    InvalidTopic,
    /// Produce acks other than -1, 0 and 1.
    InvalidRequiredAcks,
    /// A request Kafka does not take in this form.
    InvalidRequest,
    /// More than one request may ask for (partitions per request).
    PolicyViolation,
    /// A topic that is being created: retry.
    LeaderNotAvailable,
    /// No coordinator can be named yet: retry.
    CoordinatorNotAvailable,
    /// The coordinator is loading its groups: retry.
    CoordinatorLoadInProgress,
    InvalidGroupId,
    /// This broker is not the one to ask (a quorum or partition it does not lead).
    NotLeaderOrFollower,
    /// DescribeCluster asked for controller endpoints, which brokers do not give.
    UnsupportedEndpointType,
    /// A fetch session: strom keeps none.
    FetchSessionIdNotFound,
    /// The principal may not use this transactional id.
    TransactionalIdAuthorizationFailed,
    /// OffsetFetch with `require_stable` while a transaction holds an offset (KIP-447).
    UnstableOffsetCommit,
    /// A transactional request naming a partition WriteTxnMarkers cannot write, or refused
    /// before the others were tried (Kafka's OPERATION_NOT_ATTEMPTED).
    OperationNotAttempted,
    /// A request version this broker does not serve (ApiVersions answers with its list).
    UnsupportedVersion,
    /// The controller answered something no request can get (a bug, reported as Kafka does).
    UnknownServerError,
    /// A fetch as a replica (replica id >= 0) on a listener other than the inter-broker one:
    /// Kafka's answer to a follower fetch without CLUSTER_ACTION.
    ReplicaFetchNotAllowed,
    /// A SASL request where the connection expects none (a listener without SASL, or one
    /// already authenticated that did not start re-authentication).
    IllegalSaslState,
    /// SaslHandshake named a mechanism the listener does not enable.
    UnsupportedSaslMechanism,
    /// Wrong password, unknown user or a malformed exchange (the client learns no more).
    SaslAuthenticationFailed,
    /// A SCRAM credential that does not meet Kafka's rules (empty name, iterations, salt).
    UnacceptableCredential,
    /// A user credential to describe or delete that does not exist.
    ResourceNotFound,
    /// The same user (and mechanism) named twice in one request.
    DuplicateResource,
    /// ACL requests with no authorizer configured.
    SecurityDisabled,
    /// The principal's ACLs do not allow this on the cluster / topic / group.
    ClusterAuthorizationFailed,
    TopicAuthorizationFailed,
    GroupAuthorizationFailed,
}

impl Refusal {
    pub fn code(self) -> i16 {
        match self {
            Refusal::UnknownTopicOrPartition => E::UnknownTopicOrPartition.code(),
            Refusal::UnknownTopicId => E::UnknownTopicId.code(),
            Refusal::InvalidTopic => E::InvalidTopicException.code(),
            Refusal::InvalidRequiredAcks => E::InvalidRequiredAcks.code(),
            Refusal::InvalidRequest => E::InvalidRequest.code(),
            Refusal::PolicyViolation => E::PolicyViolation.code(),
            Refusal::LeaderNotAvailable => E::LeaderNotAvailable.code(),
            Refusal::CoordinatorNotAvailable => E::CoordinatorNotAvailable.code(),
            Refusal::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress.code(),
            Refusal::InvalidGroupId => E::InvalidGroupId.code(),
            Refusal::NotLeaderOrFollower => E::NotLeaderOrFollower.code(),
            Refusal::UnsupportedEndpointType => E::UnsupportedEndpointType.code(),
            Refusal::FetchSessionIdNotFound => E::FetchSessionIdNotFound.code(),
            Refusal::TransactionalIdAuthorizationFailed => {
                E::TransactionalIdAuthorizationFailed.code()
            }
            Refusal::UnstableOffsetCommit => E::UnstableOffsetCommit.code(),
            Refusal::OperationNotAttempted => E::OperationNotAttempted.code(),
            Refusal::UnsupportedVersion => E::UnsupportedVersion.code(),
            Refusal::UnknownServerError => E::UnknownServerError.code(),
            Refusal::ReplicaFetchNotAllowed => E::TopicAuthorizationFailed.code(),
            Refusal::IllegalSaslState => E::IllegalSaslState.code(),
            Refusal::UnsupportedSaslMechanism => E::UnsupportedSaslMechanism.code(),
            Refusal::SaslAuthenticationFailed => E::SaslAuthenticationFailed.code(),
            Refusal::UnacceptableCredential => E::UnacceptableCredential.code(),
            Refusal::ResourceNotFound => E::ResourceNotFound.code(),
            Refusal::DuplicateResource => E::DuplicateResource.code(),
            Refusal::SecurityDisabled => E::SecurityDisabled.code(),
            Refusal::ClusterAuthorizationFailed => E::ClusterAuthorizationFailed.code(),
            Refusal::TopicAuthorizationFailed => E::TopicAuthorizationFailed.code(),
            Refusal::GroupAuthorizationFailed => E::GroupAuthorizationFailed.code(),
        }
    }
}

pub fn admin(e: &AdminError) -> i16 {
    match e {
        AdminError::TopicAlreadyExists(_) => E::TopicAlreadyExists.code(),
        AdminError::UnknownTopic(_) => E::UnknownTopicOrPartition.code(),
        AdminError::InvalidTopic(_) => E::InvalidTopicException.code(),
        AdminError::InvalidPartitions(_) => E::InvalidPartitions.code(),
        AdminError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor.code(),
        AdminError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment.code(),
        AdminError::InvalidConfig(_) => E::InvalidConfig.code(),
        // Retriable: the client tries again once a quorum is back.
        AdminError::NoQuorum(_) | AdminError::NotLeader(_) => E::RequestTimedOut.code(),
        AdminError::Stale(_) => E::InvalidUpdateVersion.code(),
        AdminError::InvalidRequest(_) => E::InvalidRequest.code(),
        AdminError::PolicyViolation(_) => E::PolicyViolation.code(),
        AdminError::NoReassignmentInProgress(_) => E::NoReassignmentInProgress.code(),
    }
}

pub fn election(e: &ElectionError) -> i16 {
    match e {
        ElectionError::UnknownPartition => E::UnknownTopicOrPartition.code(),
        ElectionError::NotNeeded => E::ElectionNotNeeded.code(),
        ElectionError::PreferredNotAvailable => E::PreferredLeaderNotAvailable.code(),
        ElectionError::NoEligibleLeader => E::EligibleLeadersNotAvailable.code(),
    }
}

pub fn partition(e: &PartitionError) -> i16 {
    match e {
        PartitionError::UnknownTopicOrPartition => E::UnknownTopicOrPartition.code(),
        PartitionError::NotLeader { .. } => E::NotLeaderOrFollower.code(),
    }
}

pub fn log(e: &LogError) -> i16 {
    match e {
        LogError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        // The replica moved away (or the topic went): the client asks Metadata again.
        LogError::Removed => E::NotLeaderOrFollower.code(),
        LogError::Io(_) | LogError::NonContiguous { .. } => E::KafkaStorageError.code(),
        LogError::Producer(ProducerError::OutOfOrder { .. }) => E::OutOfOrderSequenceNumber.code(),
        LogError::Producer(ProducerError::Fenced { .. } | ProducerError::FencedMarker { .. }) => {
            E::InvalidProducerEpoch.code()
        }
        LogError::Producer(ProducerError::CoordinatorFenced { .. }) => {
            E::TransactionCoordinatorFenced.code()
        }
        LogError::Producer(ProducerError::UnknownProducer { .. }) => E::UnknownProducerId.code(),
        // Kafka: "Partition was not added to the transaction".
        LogError::Producer(ProducerError::NotVerified) => E::InvalidTxnState.code(),
    }
}

pub fn append(e: &AppendError) -> i16 {
    match e {
        AppendError::NotOneBatch => E::InvalidRecord.code(),
        AppendError::Batch(b) => batch(b),
        AppendError::NotEnoughReplicas { .. } => E::NotEnoughReplicas.code(),
        AppendError::Timestamp => E::InvalidTimestamp.code(),
        AppendError::Log(l) => log(l),
    }
}

pub fn batch(e: &BatchError) -> i16 {
    match e {
        BatchError::Corrupt(_) | BatchError::BadCrc => E::CorruptMessage.code(),
        BatchError::TooLarge { .. } => E::MessageTooLarge.code(),
        BatchError::UnsupportedMagic(_) => E::UnsupportedForMessageFormat.code(),
        BatchError::Invalid(_) => E::InvalidRecord.code(),
        BatchError::ClientLogAppendTime => E::InvalidTimestamp.code(),
        BatchError::Transactional => E::InvalidTxnState.code(),
    }
}

pub fn epoch(e: &EpochError) -> i16 {
    match e {
        EpochError::Fenced => E::FencedLeaderEpoch.code(),
        EpochError::Unknown => E::UnknownLeaderEpoch.code(),
    }
}

pub fn produce(e: &ProduceError) -> i16 {
    match e {
        ProduceError::Partition(p) => partition(p),
        ProduceError::Append(a) => append(a),
    }
}

pub fn fetch(e: &FetchError) -> i16 {
    match e {
        FetchError::Refused(Refused::UnknownTopicId) => E::UnknownTopicId.code(),
        FetchError::Refused(Refused::Partition(p)) => partition(p),
        FetchError::Refused(Refused::NotAReplica) => E::NotLeaderOrFollower.code(),
        FetchError::Refused(Refused::Epoch(e)) => epoch(e),
        FetchError::Log(l) => log(l),
    }
}

/// A replicated write's wait that did not reach its watermark.
pub fn wait(w: &HwWait) -> i16 {
    match w {
        HwWait::Reached => NONE,
        HwWait::TimedOut => E::RequestTimedOut.code(),
        HwWait::NotLeader => E::NotLeaderOrFollower.code(),
    }
}

pub fn delete(e: &DeleteError) -> i16 {
    match e {
        DeleteError::Partition(p) => partition(p),
        DeleteError::OffsetOutOfRange => E::OffsetOutOfRange.code(),
        DeleteError::Log(l) => log(l),
        DeleteError::Wait(w) => wait(w),
    }
}

/// A transaction coordinator's refusal. PRODUCER_FENCED exists only from the request versions
/// of KIP-588 (`fenced_code`); older ones are told INVALID_PRODUCER_EPOCH, as Kafka does.
pub fn txn(e: &TxnError, knows_fenced: bool) -> i16 {
    match e {
        TxnError::NotCoordinator => E::NotCoordinator.code(),
        TxnError::LoadInProgress => E::CoordinatorLoadInProgress.code(),
        TxnError::CoordinatorNotAvailable => E::CoordinatorNotAvailable.code(),
        TxnError::ConcurrentTransactions => E::ConcurrentTransactions.code(),
        TxnError::ProducerFenced if knows_fenced => E::ProducerFenced.code(),
        TxnError::ProducerFenced => E::InvalidProducerEpoch.code(),
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping.code(),
        TxnError::InvalidTxnState => E::InvalidTxnState.code(),
        TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout.code(),
        TxnError::UnknownTransactionalId => E::TransactionalIdNotFound.code(),
        TxnError::NotInTransaction => E::InvalidTxnState.code(),
    }
}

/// A coordinator's answer to a leader's KIP-890 verification (AddPartitionsToTxn v4+
/// `verify_only`): a partition outside the transaction is TRANSACTION_ABORTABLE from v5, the
/// version that added the code; v4's senders knew INVALID_TXN_STATE.
pub fn txn_verify_answer(e: &TxnError, version: i16) -> i16 {
    match e {
        TxnError::NotInTransaction if version >= 5 => E::TransactionAbortable.code(),
        other => txn(other, true),
    }
}

/// What a TxnOffsetCommit is told when the group's offsets partition was not verified to be
/// in its transaction: outside it TRANSACTION_ABORTABLE from v4 (the version that added the
/// code), INVALID_TXN_STATE before; a transaction coordinator that cannot answer now
/// COORDINATOR_NOT_AVAILABLE (retried).
pub fn txn_offset_verification(e: &TxnError, version: i16) -> i16 {
    match e {
        TxnError::NotInTransaction if version >= 4 => E::TransactionAbortable.code(),
        TxnError::NotCoordinator
        | TxnError::LoadInProgress
        | TxnError::CoordinatorNotAvailable
        | TxnError::ConcurrentTransactions => E::CoordinatorNotAvailable.code(),
        other => txn(other, version >= 3),
    }
}

/// What a producer is told when its transaction's first batch on a partition was not verified,
/// as Kafka's leader tells it: retriable trouble reaching the coordinator is
/// NOT_ENOUGH_REPLICAS (retried without a metadata refresh); a partition outside the
/// transaction is TRANSACTION_ABORTABLE from Produce v11 and INVALID_TXN_STATE before.
pub fn verification(e: &TxnError, produce_version: i16) -> i16 {
    match e {
        TxnError::NotInTransaction if produce_version >= 11 => E::TransactionAbortable.code(),
        TxnError::NotInTransaction | TxnError::InvalidTxnState => E::InvalidTxnState.code(),
        TxnError::ProducerFenced => E::InvalidProducerEpoch.code(),
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping.code(),
        TxnError::NotCoordinator
        | TxnError::LoadInProgress
        | TxnError::CoordinatorNotAvailable
        | TxnError::ConcurrentTransactions => E::NotEnoughReplicas.code(),
        TxnError::InvalidTransactionTimeout | TxnError::UnknownTransactionalId => {
            E::InvalidTxnState.code()
        }
    }
}

pub fn group(e: &GroupError) -> i16 {
    match e {
        GroupError::NotCoordinator => E::NotCoordinator.code(),
        GroupError::LoadInProgress => E::CoordinatorLoadInProgress.code(),
        GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable.code(),
        GroupError::InvalidGroupId => E::InvalidGroupId.code(),
        GroupError::TooLong(_) => E::InvalidRequest.code(),
        GroupError::UnknownMemberId => E::UnknownMemberId.code(),
        GroupError::MemberIdRequired(_) => E::MemberIdRequired.code(),
        GroupError::IllegalGeneration => E::IllegalGeneration.code(),
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol.code(),
        GroupError::RebalanceInProgress => E::RebalanceInProgress.code(),
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout.code(),
        GroupError::FencedInstanceId => E::FencedInstanceId.code(),
        GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached.code(),
        GroupError::NonEmptyGroup => E::NonEmptyGroup.code(),
        GroupError::GroupIdNotFound => E::GroupIdNotFound.code(),
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic.code(),
        GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge.code(),
        GroupError::InvalidCommitOffsetSize => E::InvalidCommitOffsetSize.code(),
        GroupError::ProducerFenced => E::ProducerFenced.code(),
        GroupError::NotInTransaction => E::InvalidTxnState.code(),
    }
}

/// The error code of a group call's outcome (NONE for success).
pub fn group_code<T>(r: &Result<T, GroupError>) -> i16 {
    r.as_ref().err().map_or(NONE, group)
}
