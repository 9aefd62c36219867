//! OffsetDelete: removes a group's committed offsets for partitions its members do not
//! subscribe to.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{errors, Context};

pub async fn handle(
    ctx: &Context,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let asked: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    if !ctx.may(Operation::Delete, acl::GROUP, &req.group_id)
        || asked
            .iter()
            .any(|(t, _)| !ctx.may(Operation::Read, acl::TOPIC, t))
    {
        let code = if ctx.may(Operation::Delete, acl::GROUP, &req.group_id) {
            Refusal::TopicAuthorizationFailed
        } else {
            Refusal::GroupAuthorizationFailed
        };
        return OffsetDeleteResponse::default().with_error_code(code.code());
    }
    let results = match ctx.groups.delete_offsets(&req.group_id, asked).await {
        Ok(r) => r,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(errors::group(&e)),
    };
    let mut codes = results.iter().map(errors::group_code);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(errors::NONE))
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
