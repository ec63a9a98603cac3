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
        .route("/assets/ui.css", web::get().to(stylesheet));
}

async fn to_dashboard() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

/// The stylesheet: the same for a build, so browsers may keep it for a day.
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(layout::STYLESHEET)
}
