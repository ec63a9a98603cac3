//! The `/api/v1` resources.

pub mod audit;
pub mod data_subjects;
pub mod docs;
pub mod exports;
pub mod feed;
pub mod operations;
pub mod personal_data_requests;
pub mod scheme;
pub mod webhooks;

use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Query parameters, with a 400 naming the parameter when one is malformed or unknown, or holds
/// a control character (a NUL among them: no parameter of this API has any).
pub fn query<T: DeserializeOwned>(request: &actix_web::HttpRequest) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(request.query_string().as_bytes());
    for (key, value) in pairs {
        if key.chars().any(char::is_control) {
            return Err(ApiError::bad_field("query", "a parameter name holds a control character"));
        }
        if value.chars().any(char::is_control) {
            return Err(ApiError::bad_field(key, "holds a control character"));
        }
    }
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let message = error.inner().to_string();
        let path = error.path().to_string();
        // An unknown parameter has no path yet; serde names it in backticks.
        let field = if path == "." { message.split('`').nth(1).unwrap_or("query").to_string() } else { path };
        ApiError::bad_field(field, message)
    })
}

/// Registers every `/api/v1` resource; the OpenAPI document is collected from these calls.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(feed::all_events)
        .service(feed::stream_events)
        .service(audit::query_audit_trail)
        .service(operations::projection_status)
        .service(operations::rebuild_projection)
        .service(operations::verify_log)
        .service(personal_data_requests::subject_personal_data)
        .service(crate::openapi::openapi_json)
        .map(docs::configure)
        .configure(scheme::configure)
        .configure(exports::configure)
        .configure(webhooks::configure)
        .configure(data_subjects::configure);
}
