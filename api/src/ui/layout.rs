//! The frame every page shares: the navigation, who is signed in (and the sign-out form with
//! its CSRF token), one stylesheet served by the binary, and headers that keep the pages to
//! themselves (no script, nothing from another origin, not framed, not cached).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;

use super::format::escape;
use super::session::UiSession;

/// Pages run no script and load nothing but this service's stylesheet; inline SVG charts are
/// part of the document.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NAVIGATION: [(&str, &str); 5] = [
    ("/ui/", "Dashboard"),
    ("/ui/batches", "Batches"),
    ("/ui/applications", "Applications"),
    ("/ui/worklist", "Worklist"),
    ("/api/v1/docs", "API"),
];

/// A whole page: `body` is already escaped HTML.
pub fn page(title: &str, session: Option<&UiSession>, body: &str) -> String {
    let mut html = String::with_capacity(body.len() + 2_048);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    html.push_str(&format!("<title>{} · AISC Subsidy Back Office</title>", escape(title)));
    html.push_str("<link rel=\"icon\" href=\"/ui/assets/icon.svg\" type=\"image/svg+xml\">");
    html.push_str("<link rel=\"stylesheet\" href=\"/ui/assets/ui.css\"></head><body>");
    html.push_str("<header class=\"top\"><a class=\"brand\" href=\"/ui/\">AISC Subsidy Back Office</a>");
    if let Some(session) = session {
        html.push_str("<nav>");
        for (href, name) in NAVIGATION {
            html.push_str(&format!("<a href=\"{href}\">{name}</a>"));
        }
        html.push_str("</nav>");
        let roles: Vec<&str> = session.principal.roles.iter().map(|role| role.as_str()).collect();
        html.push_str(&format!(
            "<form class=\"signout\" method=\"post\" action=\"/ui/logout\"><span class=\"who\">{} <small>{}</small></span>\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            escape(&session.principal.name),
            escape(&roles.join(", ")),
            escape(&session.csrf_token)
        ));
    }
    html.push_str("</header><main>");
    html.push_str(body);
    html.push_str("</main><footer>Figures from the service's read models; money in HK$, rates as approved.</footer></body></html>");
    html
}

/// A page as a response, with the headers every page carries.
pub fn page_response(status: StatusCode, title: &str, session: Option<&UiSession>, body: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    secure_headers(&mut response);
    response.content_type("text/html; charset=utf-8").body(page(title, session, body))
}

pub fn secure_headers(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
}

/// The stylesheet and the icon, compiled into the binary.
pub const STYLESHEET: &str = include_str!("assets/ui.css");
pub const ICON: &str = include_str!("assets/icon.svg");
