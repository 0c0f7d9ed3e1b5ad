use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use strata_protocol::SUPPORTED_APIS;

use crate::errors;

/// Our API ranges; with `too_new`, the KIP-511 answer to an ApiVersions version we don't know.
pub fn handle(_version: i16, too_new: bool) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(if too_new {
            errors::UNSUPPORTED_VERSION
        } else {
            errors::NONE
        })
        .with_api_keys(api_keys)
}
