//! The owner's web page, served on the API listener at `/` (so it answers loopback and the
//! LAN subnets, never the WAN, as the API does).
//!
//! It is built on the API: every page reads the API's own answers, and every form post is
//! turned into the API call it stands for, so the page can do nothing the API cannot and
//! shows its errors next to the field they name.
//!
//! - Pages: `/` port sharing (devices, shares, add, exposed host), `/share?id=` edit,
//!   `/apps` ports opened by applications, `/settings`, `/events`, `/status`, `/login`.
//! - Server-rendered (maud); each page works as plain form posts and full page loads. The
//!   one script (`/static/app.js`) posts forms in place and follows the event log (a long
//!   poll on `/live`) to redraw the page when something changes, and its counters every
//!   10 s. Everything is embedded in the binary.
//! - Login with the API token gives a session ([`session`]). Every form carries the session's
//!   CSRF token; a post without it, or whose `Origin` (or `Referer`, or `Sec-Fetch-Site`) is
//!   another site's, is 403 and changes nothing.
//! - Every response of the listener has [`security_headers`]: a Content-Security-Policy
//!   with no inline script or style, no framing, no sniffing, and no caching of pages.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode,
    body::Body,
    header::{
        CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderValue, LOCATION, ORIGIN, REFERER,
        SET_COOKIE,
    },
};
use maud::Markup;
use serde_json::{Map, Value};

use crate::api::{Api, ApiError, body_bytes, call};

mod actions;
pub mod form;
pub mod session;
mod views;

use form::Form;
use session::{Session, cookie, same_secret};
use views::{Frame, Problems};

/// The page's state beside the API's.
#[derive(Debug, Default)]
pub struct Page {
    pub sessions: session::Sessions,
    /// Host names the page answers to besides IP addresses and `localhost` (`[api]
    /// page_names`).
    pub names: Vec<String>,
}

/// The session cookie.
pub const SESSION_COOKIE: &str = "portfwd_session";
/// The login form's own CSRF cookie (before there is a session).
pub const LOGIN_COOKIE: &str = "portfwd_login";

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// The policy every response of the API listener carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the page's (everything but `/metrics` and `/api/`).
#[must_use]
pub fn is_page(path: &str) -> bool {
    path != "/metrics" && path != "/api" && !path.starts_with("/api/")
}

/// Adds the headers every response of the API listener carries.
pub fn security_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The answer to one request for the page, from `peer`.
pub async fn respond<B>(api: &Api, peer: IpAddr, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if method == Method::GET
        && let Some(asset) = asset(&path)
    {
        return asset;
    }
    if !host_allowed(request.headers(), &api.page.names) {
        return error_status(
            StatusCode::MISDIRECTED_REQUEST,
            "This page answers requests for its IP address or localhost only (against DNS \
             rebinding). To reach it by a name, list the name in [api] page_names.",
        );
    }
    let now = Instant::now();
    // The script's own refreshes and long polls do not keep a session alive.
    let used = !request.headers().contains_key(BACKGROUND);
    let tls = request
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v == "https");
    let session_id = request
        .headers()
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie(v, SESSION_COOKIE))
        .map(str::to_owned);
    let session = session_id.as_deref().and_then(|id| {
        api.page
            .sessions
            .get(id, now, used)
            .map(|s| (id.to_owned(), s))
    });
    if path == "/login" {
        return match (method, session) {
            (Method::GET, Some(_)) => redirect("/"),
            (Method::GET, None) => login_form(None, StatusCode::OK, tls),
            (Method::POST, _) => login(api, peer, request, tls).await,
            _ => not_allowed("GET, POST"),
        };
    }
    let Some((id, session)) = session else {
        return if method == Method::GET {
            redirect("/login")
        } else {
            refused("Your session has ended: log in again.")
        };
    };
    match method {
        Method::GET => actions::get(api, &session, &path, &query).await,
        Method::POST => {
            if !same_origin(request.headers()) {
                tracing::warn!("page: refused a {path} post from another site ({peer})");
                return refused("This form was sent from another site.");
            }
            let form = match read_form(request).await {
                Ok(form) => form,
                Err(response) => return response,
            };
            if !same_secret(form.value("csrf"), &session.csrf) {
                tracing::warn!("page: refused a {path} post without its CSRF token ({peer})");
                return refused(
                    "This form is too old or did not come from this page: reload the page and try again.",
                );
            }
            if path == "/logout" {
                api.page.sessions.end(&id);
                let mut response = redirect("/login");
                set_cookie(
                    &mut response,
                    &format!("{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"),
                );
                return response;
            }
            actions::post(api, &session, &path, &form).await
        }
        _ => not_allowed("GET, POST"),
    }
}

/// The login: the token checked after the wait [`session::Sessions::login_wait`] says.
async fn login<B>(api: &Api, peer: IpAddr, request: Request<B>, tls: bool) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !same_origin(request.headers()) {
        return refused("This login was sent from another site.");
    }
    let expected = request
        .headers()
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie(v, LOGIN_COOKIE))
        .map(str::to_owned);
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !expected.is_some_and(|e| !e.is_empty() && same_secret(&e, form.value("login_csrf"))) {
        return login_form(
            Some("The login form had expired: enter the token again."),
            StatusCode::FORBIDDEN,
            tls,
        );
    }
    let Some(wait) = api.page.sessions.login_wait(peer, Instant::now()) else {
        let mut response = error_status(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens from this address: try again in a few seconds.",
        );
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    if !same_secret(form.value("token").trim(), &api.token) {
        api.page.sessions.login_failed(peer, Instant::now());
        tracing::warn!("page: wrong token from {peer}");
        return login_form(Some("Wrong token."), StatusCode::UNAUTHORIZED, tls);
    }
    api.page.sessions.login_succeeded(peer);
    let Some((id, _)) = api.page.sessions.create(Instant::now()) else {
        return error_page(
            "The kernel gave no random bytes for a session (is /dev/urandom there?).",
        );
    };
    tracing::info!("page: {peer} logged in");
    let secure = if tls { "; Secure" } else { "" };
    let mut response = redirect("/");
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}=; Max-Age=0; Path=/login"),
    );
    response
}

fn login_form(error: Option<&str>, status: StatusCode, tls: bool) -> Response<Full<Bytes>> {
    let token = session::random_hex::<16>().unwrap_or_default();
    let mut response = html(status, &views::login(&token, error));
    let secure = if tls { "; Secure" } else { "" };
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict{secure}"),
    );
    response
}

/// The header the script sends on its own refreshes and long polls.
pub const BACKGROUND: &str = "x-portfwd-background";

/// Whether `Host` names this box by an IP address, `localhost`, or one of `names`: a page a
/// DNS-rebinding site points at the box carries the site's name, and is refused.
fn host_allowed(headers: &HeaderMap, names: &[String]) -> bool {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        },
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether a post comes from this page: `Sec-Fetch-Site`, then `Origin`, then `Referer`
/// must name this host when the browser sends them.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let Some(host) = get(HOST) else {
        return false;
    };
    if get(hyper::header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return false;
    }
    let ours = |origin: &str| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host)
    };
    match (get(ORIGIN), get(REFERER)) {
        (Some(origin), _) => ours(origin),
        (None, Some(referer)) => {
            let origin: String = referer.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
            ours(&origin)
        }
        (None, None) => true,
    }
}

async fn read_form<B>(request: Request<B>) -> Result<Form, Response<Full<Bytes>>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = body_bytes(request)
        .await
        .map_err(|e| error_status(e.status, &e.message))?;
    Form::parse(&bytes).map_err(|e| {
        error_status(
            StatusCode::BAD_REQUEST,
            &format!("The form is broken: {e}."),
        )
    })
}

fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, kind) = match path {
        "/static/app.css" => (CSS, "text/css; charset=utf-8"),
        "/static/app.js" => (JS, "text/javascript; charset=utf-8"),
        "/static/icon.svg" | "/favicon.ico" => (ICON, "image/svg+xml"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=86400"));
    Some(response)
}

/// What the frame of a logged-in page needs.
fn frame<'a>(api: &Api, session: &'a Session, notice: Option<&'a str>) -> Frame<'a> {
    Frame {
        csrf: &session.csrf,
        last_event: api.table.snapshot().last_event,
        notice,
    }
}

/// An API call's answer (`GET`s the page reads).
async fn read(api: &Api, path: &str, query: &str) -> Result<Value, ApiError> {
    call(api, "GET", path, query, Map::new())
        .await
        .map(|(_, value)| value)
}

fn html(status: StatusCode, markup: &Markup) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(markup.0.clone())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn set_cookie(response: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// A 403 page that changed nothing.
fn refused(message: &str) -> Response<Full<Bytes>> {
    error_status(StatusCode::FORBIDDEN, message)
}

fn error_page(message: &str) -> Response<Full<Bytes>> {
    error_status(StatusCode::INTERNAL_SERVER_ERROR, message)
}

fn error_status(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    html(status, &views::problem(status, message))
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "The page does not take this method.",
    );
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// How long the script's long poll waits for the next event.
pub const LIVE_WAIT: Duration = Duration::from_secs(25);

#[cfg(test)]
mod tests;
