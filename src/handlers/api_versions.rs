//! ApiVersions: exactly the keys and versions in `protocol::SUPPORTED`.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Context;
use crate::protocol::SUPPORTED;

pub fn list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

pub async fn handle(
    _ctx: &Context,
    _req: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(list())
}
