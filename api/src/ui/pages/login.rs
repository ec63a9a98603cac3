//! `GET /ui/login`, `POST /ui/login` (form fields `token` and `next`) and `POST /ui/logout`
//! (form field `csrf_token`).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use aisc_adapters::ui_sessions;
use serde::Deserialize;
use sqlx::PgPool;

use crate::problem::ApiError;
use crate::ui::format::escape;
use crate::ui::layout::{page_response, secure_headers};
use crate::ui::session::{
    SESSION_COOKIE, UiError, cleared_cookie, cookie, csrf_matches, safe_next, same_origin, session_cookie, signed_in,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginParams {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

fn login_page(status: StatusCode, next: &str, problem: Option<&str>) -> HttpResponse {
    let problem =
        problem.map(|text| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(text))).unwrap_or_default();
    let body = format!(
        "<section class=\"panel\"><h1>Sign in</h1>{problem}\
         <p class=\"muted\">Paste your staff token (from <code>aisc tokens issue</code>). It is exchanged for a session \
         of this browser and not kept in it.</p>\
         <form class=\"login\" method=\"post\" action=\"/ui/login\">\
         <label for=\"token\">Staff token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"200\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form></section>",
        escape(next)
    );
    page_response(status, "Sign in", None, &body)
}

/// The sign-in form; `next` is the page to go to afterwards.
pub async fn form(request: HttpRequest) -> Result<HttpResponse, UiError> {
    let params: LoginParams = crate::routes::query(&request)?;
    Ok(login_page(StatusCode::OK, &safe_next(params.next.as_deref()), None))
}

/// A form body, as `application/x-www-form-urlencoded` (415 otherwise, 400 when malformed).
fn form_body<T: serde::de::DeserializeOwned>(request: &HttpRequest, body: &web::Bytes) -> Result<T, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType {
            detail: format!("a form is sent as application/x-www-form-urlencoded, not {content_type:?}"),
        });
    }
    serde_urlencoded::from_bytes(body).map_err(|error| ApiError::bad_field("form", error.to_string()))
}

/// Exchanges a staff token for a session cookie and goes on to `next` (303); the form again,
/// 401, for a token that is unknown or revoked.
pub async fn sign_in(request: HttpRequest, body: web::Bytes, pool: web::Data<PgPool>) -> Result<HttpResponse, UiError> {
    let form: LoginForm = form_body(&request, &body)?;
    let next = safe_next(form.next.as_deref());
    if !same_origin(&request) {
        return Err(ApiError::Forbidden("the sign-in form was sent from another site".into()).into());
    }
    let token = form.token.as_deref().map(str::trim).unwrap_or("");
    if token.is_empty() || token.len() > 200 || token.chars().any(char::is_control) {
        return Ok(login_page(StatusCode::BAD_REQUEST, &next, Some("Give your staff token.")));
    }
    let Some(opened) = ui_sessions::open(&pool, token).await? else {
        return Ok(login_page(StatusCode::UNAUTHORIZED, &next, Some("That token is not known, or has been revoked.")));
    };
    let mut response = HttpResponse::SeeOther();
    secure_headers(&mut response);
    Ok(response
        .insert_header((header::LOCATION, next))
        .insert_header((header::SET_COOKIE, session_cookie(&request, &opened.session)))
        .finish())
}

/// Closes the session (the form must carry its CSRF token) and returns to the sign-in form.
pub async fn sign_out(
    request: HttpRequest,
    body: web::Bytes,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, UiError> {
    let form: LogoutForm = form_body(&request, &body)?;
    let session = signed_in(&request, &pool).await?;
    if !csrf_matches(&session, form.csrf_token.as_deref().unwrap_or("")) {
        return Err(ApiError::Forbidden("the form's CSRF token is not this session's; reload the page".into()).into());
    }
    if let Some(value) = cookie(&request, SESSION_COOKIE) {
        ui_sessions::close(&pool, &value).await?;
    }
    let mut response = HttpResponse::SeeOther();
    secure_headers(&mut response);
    Ok(response
        .insert_header((header::LOCATION, "/ui/login"))
        .insert_header((header::SET_COOKIE, cleared_cookie()))
        .finish())
}
