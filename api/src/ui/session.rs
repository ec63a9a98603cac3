//! Signing in to the pages: the staff token is given once, at `POST /ui/login`, and exchanged
//! for a session cookie (HttpOnly, SameSite=Lax, path `/ui`). Each page finds the session's
//! principal — roles apply as on the API — and each state-changing form carries the session's
//! CSRF token. A revoked token ends its sessions at the next page.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use aisc_adapters::ui_sessions;
use sqlx::PgPool;

use super::layout;
use crate::auth::{Principal, Role};
use crate::problem::ApiError;

pub const SESSION_COOKIE: &str = "aisc_session";

/// A signed-in staff member and the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct UiSession {
    pub principal: Principal,
    pub csrf_token: String,
}

/// Why a page is not shown: no session (sign in first), or what the API would refuse.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("sign in to see {next}")]
    SignIn { next: String },
    #[error(transparent)]
    Refused(#[from] ApiError),
}

impl From<aisc_projections::ProjectionError> for UiError {
    fn from(error: aisc_projections::ProjectionError) -> Self {
        UiError::Refused(error.into())
    }
}

impl From<sqlx::Error> for UiError {
    fn from(error: sqlx::Error) -> Self {
        UiError::Refused(error.into())
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::SignIn { .. } => StatusCode::SEE_OTHER,
            UiError::Refused(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            UiError::SignIn { next } => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/ui/login?next={}", super::format::url_value(next))))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish(),
            UiError::Refused(error) => {
                let status = error.status_code();
                if status.is_server_error() {
                    tracing::error!(%error, "a page could not be shown");
                }
                let title = status.canonical_reason().unwrap_or("Error");
                let body = format!(
                    "<section class=\"notice\"><h1>{}</h1><p>{}</p><p><a href=\"/ui/\">Back to the dashboard</a></p></section>",
                    super::format::escape(title),
                    super::format::escape(&error.to_string())
                );
                layout::page_response(status, title, None, &body)
            }
        }
    }
}

/// The value of a cookie of the request, read from its `Cookie` headers.
pub fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
}

/// The signed-in staff member of the request, or [`UiError::SignIn`] back to this page.
pub async fn signed_in(request: &HttpRequest, pool: &PgPool) -> Result<UiSession, UiError> {
    let sign_in = || UiError::SignIn { next: requested_page(request) };
    let Some(session) = cookie(request, SESSION_COOKIE).filter(|value| valid_session_value(value)) else {
        return Err(sign_in());
    };
    let Some(owner) = ui_sessions::find(pool, &session).await? else { return Err(sign_in()) };
    let roles: Vec<Role> = owner.roles.iter().filter_map(|role| role.parse().ok()).collect();
    Ok(UiSession { principal: Principal { name: owner.name, roles }, csrf_token: owner.csrf_token })
}

/// The path and query of the request: where signing in leads back to.
fn requested_page(request: &HttpRequest) -> String {
    match request.query_string() {
        "" => request.path().to_string(),
        query => format!("{}?{query}", request.path()),
    }
}

/// Session values are 64 lower-case hex digits; anything else is not looked up.
fn valid_session_value(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Where to go after signing in: a page under `/ui/` of this service, never another site
/// (`//host`, `/\host`, a scheme) — anything else goes to the dashboard.
pub fn safe_next(next: Option<&str>) -> String {
    const HOME: &str = "/ui/";
    let Some(next) = next else { return HOME.to_string() };
    let local = next.starts_with("/ui/") || next == "/ui";
    let tricky = next.contains("//") || next.contains('\\') || next.chars().any(|c| c.is_control() || c == ' ');
    if local && !tricky && next.len() <= 2_000 { next.to_string() } else { HOME.to_string() }
}

/// Whether the form's CSRF token is the session's (compared in constant time).
pub fn csrf_matches(session: &UiSession, presented: &str) -> bool {
    let (expected, presented) = (session.csrf_token.as_bytes(), presented.as_bytes());
    expected.len() == presented.len()
        && expected.iter().zip(presented).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// A form posted from another site is refused: when the browser names the form's origin, it
/// must be this service's (sign-in has no session yet, so no CSRF token to compare).
pub fn same_origin(request: &HttpRequest) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let connection = request.connection_info();
    let ours = format!("{}://{}", connection.scheme(), connection.host());
    origin == ours
}

/// The `Set-Cookie` of a new session; `Secure` when the request came over HTTPS (directly or
/// through a proxy that says so), so that a plain-HTTP development service still works.
pub fn session_cookie(request: &HttpRequest, session: &str) -> HeaderValue {
    let secure = if request.connection_info().scheme() == "https" { "; Secure" } else { "" };
    let lifetime = ui_sessions::SESSION_LIFETIME.as_secs();
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={session}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={lifetime}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("aisc_session=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0"))
}

/// The `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("aisc_session=; Path=/ui; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_of_this_service_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/applications/A-1?tab=history")), "/ui/applications/A-1?tab=history");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for hostile in
            ["//evil.example/ui/", "https://evil.example/", "/ui//evil", "/ui/\\evil", "/api/v1/kpis", "/ui/\nx"]
        {
            assert_eq!(safe_next(Some(hostile)), "/ui/", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let session = UiSession {
            principal: Principal { name: "pat".into(), roles: vec![Role::Auditor] },
            csrf_token: "ab".repeat(32),
        };
        assert!(csrf_matches(&session, &"ab".repeat(32)));
        assert!(!csrf_matches(&session, &"ab".repeat(31)));
        assert!(!csrf_matches(&session, &format!("{}ac", "ab".repeat(31))));
    }
}
