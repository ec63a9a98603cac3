//! The interactive API reference at `/api/v1/docs`: Swagger UI on this service's OpenAPI
//! document. Its scripts and styles are compiled into the binary (`api/assets/`), so the page
//! fetches nothing from outside, at build time or run time; its Content-Security-Policy keeps
//! it so. Like the document, it needs no token: the reader types one in (Authorize) to try a
//! route, and the page sends it as `Authorization: Bearer`.
//!
//! The page and its assets are plain actix routes, outside the OpenAPI document: they are the
//! document's reader, not operations of the API.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use actix_web::{HttpResponse, get, web};

use crate::problem::ApiError;

/// Where the page is served; it names the document (`openapi.json`) and its assets relative
/// to this path, so it works behind a proxy that mounts the service elsewhere.
pub const PAGE_PATH: &str = "/api/v1/docs";
/// Where the assets are served (`PAGE_PATH` + `/assets/`).
pub const ASSETS_PREFIX: &str = "/api/v1/docs/assets/";

/// The vendored Swagger UI release (`api/assets/swagger-ui/VERSION`).
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

/// What the page may load: its own origin only. Images also from `data:` URLs, which are
/// inline and fetch nothing (Swagger UI's stylesheet draws its icons with them). No frames,
/// no plug-ins, no `<base>`, no embedding in another site's frame.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Assets change only with a release: their URLs carry it (`?v=`), so a browser may keep
/// them for a year and a new release is fetched afresh.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Compiled in, so the asset URLs change when either the service or Swagger UI does.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        name: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        name: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    },
    Asset {
        name: "favicon-32x32.png",
        content_type: "image/png",
        bytes: include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
    },
    Asset {
        name: "api-reference.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/api-reference/api-reference.js"),
    },
];

const PAGE_TEMPLATE: &str = include_str!("../../assets/api-reference/index.html");

/// `GET /api/v1/docs`: the reference's page.
#[get("/docs")]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Small, and it names the assets' versions: always asked afresh.
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(PAGE_TEMPLATE.replace("{{VERSION}}", ASSET_VERSION))
}

/// `GET /api/v1/docs/`: to the page (whose relative URLs would resolve under `docs/` here).
#[get("/docs/")]
pub async fn page_with_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((actix_web::http::header::LOCATION, "../docs")).finish()
}

/// `GET /api/v1/docs/assets/{name}`: a vendored script, stylesheet or icon.
#[get("/docs/assets/{name}")]
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no asset {} of the API reference", name.as_str())))?;
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CACHE_CONTROL, ASSET_CACHE))
        .body(asset.bytes))
}

/// Whether the path is the reference's page or one of its assets (served without a token).
pub fn is_reference(path: &str) -> bool {
    path.strip_prefix(PAGE_PATH).is_some_and(|rest| rest.is_empty() || rest == "/") || path.starts_with(ASSETS_PREFIX)
}

/// Registers the page and its assets, outside the OpenAPI document.
pub fn configure(config: &mut web::ServiceConfig) -> &mut web::ServiceConfig {
    config.service(page).service(page_with_slash).service(asset)
}
