//! The OpenAPI document, assembled from the handlers' `#[utoipa::path]` annotations as they
//! are registered (utoipa-actix-web), and served at `/api/v1/openapi.json`.

use actix_web::{HttpResponse, get, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AISC Subsidy Back Office",
        description = "The AI Subsidy Scheme's back office: commands and queries for staff tools, \
                       the event feed and audit trail for auditors. Errors are application/problem+json."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `aisc tokens issue --name NAME --roles ROLE[,ROLE]`"))
                    .build(),
            ),
        );
    }
}

/// Where the document is served: the one `/api/v1` path that needs no token.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The generated document, rendered once at start-up.
pub struct OpenApiJson(pub String);

/// `GET /api/v1/openapi.json`
#[utoipa::path(
    tag = "operations",
    security(()),
    responses((status = 200, description = "This API's OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
pub async fn openapi_json(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document.0.clone())
}
