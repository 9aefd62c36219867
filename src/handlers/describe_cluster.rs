//! DescribeCluster: the cluster id, the active controller and the brokers' endpoints on the
//! client's listener.

use crate::metadata::acl::Operation;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::errors::Refusal;

use super::{broker, s, Context};

pub async fn handle(
    ctx: &Context,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = ctx.controller.image();
    if !ctx.may_on_cluster(Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(Refusal::ClusterAuthorizationFailed.code())
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_authorized_operations(i32::MIN);
    }
    if req.endpoint_type != 1 {
        // Controllers' endpoints are asked of controllers (Kafka's brokers answer the same).
        return DescribeClusterResponse::default()
            .with_error_code(Refusal::UnsupportedEndpointType.code())
            .with_error_message(Some(s("this listener serves broker endpoints only")))
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_authorized_operations(i32::MIN);
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| (req.include_fenced_brokers && version >= 2) || !b.fenced)
        .filter_map(|b| {
            let ep = b.endpoints.iter().find(|e| e.listener == ctx.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(broker(b.id))
                    .with_host(s(ep.host.clone()))
                    .with_port(ep.port as i32)
                    .with_rack(b.rack.clone().map(s))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(s(image.cluster_id.clone()))
        .with_controller_id(broker(ctx.controller.controller_id().unwrap_or(-1)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
