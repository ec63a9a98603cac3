//! The web pages of the scheme's people under `/ui/`: the KPI dashboard, the batch board, the
//! applications and each one's history, and the progress-report worklist. Rendered on the
//! server from the read models the API reads, with charts as inline SVG and one stylesheet
//! compiled into the binary: nothing is fetched from elsewhere and no script runs.

mod charts;
mod format;
mod layout;
mod pages;
mod session;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// Registers the pages under the scope they are mounted at (`/ui`).
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("", web::get().to(to_dashboard))
        .route("/", web::get().to(pages::dashboard::show))
        .route("/login", web::get().to(pages::login::form))
        .route("/login", web::post().to(pages::login::sign_in))
        .route("/logout", web::post().to(pages::login::sign_out))
        .route("/batches", web::get().to(pages::batches::show))
        .route("/applications", web::get().to(pages::applications::list))
        .route("/applications/{application_id}", web::get().to(pages::applications::show))
        .route("/worklist", web::get().to(pages::worklist::show))
        .route("/assets/ui.css", web::get().to(stylesheet))
        .route("/assets/icon.svg", web::get().to(icon));
}

async fn to_dashboard() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

/// The stylesheet: the same for a build, so browsers may keep it for a day.
async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", layout::STYLESHEET)
}

async fn icon() -> HttpResponse {
    asset("image/svg+xml", layout::ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}
