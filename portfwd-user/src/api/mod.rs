//! The owner's REST API and the Prometheus endpoint, on `--api ADDR` (default
//! `127.0.0.1:9780`).
//!
//! Endpoints (JSON; the OpenAPI 3 document, `openapi.json`, is served at
//! `/api/v1/openapi.json` and a test checks it against [`ROUTES`]):
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text format; the token only if `[api] metrics_auth` |
//! | GET | `/api/v1/openapi.json` | this API |
//! | GET, POST | `/api/v1/shares` | list; create (the owner's share) |
//! | GET, PATCH, DELETE | `/api/v1/shares/{id}` | one share (`tcp:8080`, `udp:53@198.51.100.7`) |
//! | POST | `/api/v1/shares/{id}/enable`, `.../disable` | switch it on or off |
//! | GET, POST | `/api/v1/pinholes` | IPv6 pinholes: list; open (the owner's) |
//! | DELETE | `/api/v1/pinholes/{id}` | close one (`tcp:[2001:db8::10]:443`) |
//! | POST | `/api/v1/pinholes/{id}/enable`, `.../disable` | switch it on or off |
//! | GET | `/api/v1/devices` | LAN devices, their permission and shares |
//! | PUT | `/api/v1/devices/{addr}` | `{"allowed": true \| false \| null}` |
//! | POST | `/api/v1/devices/revoke-unused` | revoke for every device without shares |
//! | GET, PATCH | `/api/v1/settings` | UPnP switch, secure mode, quotas |
//! | GET | `/api/v1/events?after=ID&limit=N&wait=S` | the event log, paged; `wait` long-polls |
//! | GET | `/api/v1/status` | WAN link and address, XDP modes, program ids, uptime |
//!
//! Connections from anywhere but loopback and the LAN subnets are closed unanswered (the API
//! listens on loopback unless the owner says otherwise, and never answers the WAN).
//!
//! Every `/api/v1` route needs `Authorization: Bearer TOKEN` (the token is made on first start
//! in `STATE_DIR/api-token`, mode 0600); a wrong or missing token is 401. Bad input is 400
//! naming the field, a collision 409 naming the share it collides with, an unknown share 404.
//! A change is answered once the share table has applied it to the kernel and written it to the
//! state directory.
//!
//! Bounds: bodies up to [`MAX_BODY`]; connections as [`LIMITS`] says (those of
//! [`crate::server::Limits::CONTROL`], but 90 s per connection: a long poll waits at most
//! [`MAX_WAIT`]).

use std::{
    future::Future,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Body,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue},
};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::{
    host::Host,
    metrics::{self, Metrics},
    pinhole::PinholeError,
    share::{LanSubnet, ShareError, ShareId},
    table::{SharePatch, Table, TableError, TableHandle},
};

pub const MAX_BODY: usize = 16 * 1024;
pub const MAX_WAIT: Duration = Duration::from_mins(1);
/// The connection bounds.
pub const LIMITS: crate::server::Limits = crate::server::Limits {
    connection_timeout: Duration::from_secs(90),
    ..crate::server::Limits::CONTROL
};
/// Longest share name.
pub const MAX_NAME: usize = 64;
/// Most events one page holds.
pub const MAX_PAGE: usize = 1000;

/// The OpenAPI 3 document of the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The routes, as the OpenAPI document names them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/shares"),
    ("POST", "/api/v1/shares"),
    ("GET", "/api/v1/shares/{id}"),
    ("PATCH", "/api/v1/shares/{id}"),
    ("DELETE", "/api/v1/shares/{id}"),
    ("POST", "/api/v1/shares/{id}/enable"),
    ("POST", "/api/v1/shares/{id}/disable"),
    ("GET", "/api/v1/pinholes"),
    ("POST", "/api/v1/pinholes"),
    ("DELETE", "/api/v1/pinholes/{id}"),
    ("POST", "/api/v1/pinholes/{id}/enable"),
    ("POST", "/api/v1/pinholes/{id}/disable"),
    ("GET", "/api/v1/devices"),
    ("PUT", "/api/v1/devices/{addr}"),
    ("POST", "/api/v1/devices/revoke-unused"),
    ("GET", "/api/v1/settings"),
    ("PATCH", "/api/v1/settings"),
    ("GET", "/api/v1/exposed-host"),
    ("PUT", "/api/v1/exposed-host"),
    ("DELETE", "/api/v1/exposed-host"),
    ("DELETE", "/api/v1/exposed-host/{addr}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/status"),
];

/// What `/api/v1/status` reports beside the table: fixed at start.
#[derive(Clone, Debug)]
pub struct Facts {
    pub wan: String,
    pub lan: String,
    pub lan_address: Ipv4Addr,
    pub wan_mode: &'static str,
    pub lan_mode: &'static str,
    pub wan_program: Option<u32>,
    pub lan_program: Option<u32>,
    pub upnp_url: String,
    pub started: Instant,
}

/// The API server's state.
pub struct Api {
    pub table: TableHandle,
    pub token: String,
    pub metrics: Arc<Metrics>,
    pub metrics_auth: bool,
    pub facts: Facts,
    pub lan: Vec<LanSubnet>,
    pub host: Arc<dyn Host>,
    /// The dynamic DNS task's last result, when it runs.
    pub ddns: Option<tokio::sync::watch::Receiver<crate::ddns::DdnsStatus>>,
    /// The owner's page's sessions.
    pub page: crate::page::Page,
}

/// Serves `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, api: Arc<Api>, shutdown: impl Future<Output = ()>) {
    let lan = api.lan.clone();
    // Listening beyond loopback is the owner's choice for the LAN, never the WAN.
    let admit = move |peer: std::net::SocketAddr| {
        let ours = |v4: Ipv4Addr| v4.is_loopback() || crate::upnp::http::on_lan(&lan, v4);
        let allowed = match peer.ip() {
            std::net::IpAddr::V4(v4) => ours(v4),
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(ours),
        };
        allowed.then_some(peer.ip())
    };
    crate::server::serve(
        "API",
        listener,
        LIMITS,
        shutdown,
        admit,
        move |peer, request| {
            let api = Arc::clone(&api);
            async move {
                let mut response = if crate::page::is_page(request.uri().path()) {
                    crate::page::respond(&api, peer, request).await
                } else {
                    respond(&api, request).await
                };
                crate::page::security_headers(response.headers_mut());
                response
            }
        },
    )
    .await;
}

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault.
    pub field: Option<&'static str>,
    /// The share the request collides with.
    pub conflict: Option<ShareId>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            conflict: None,
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    fn conflict(existing: ShareId, message: impl Into<String>) -> Self {
        Self {
            conflict: Some(existing),
            ..Self::new(StatusCode::CONFLICT, message)
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        if let Some(conflict) = self.conflict {
            body["conflict"] = json!(conflict.to_string());
        }
        json_response(self.status, &body)
    }
}

/// The HTTP answer to a refused table change: the API's side of the one mapping from domain
/// errors to what each protocol says (UPnP's is `upnp::control::table_fault`).
#[must_use]
pub fn table_error(err: &TableError) -> ApiError {
    let message = crate::error_chain(err);
    match err {
        TableError::Share { source, .. } => match source {
            ShareError::Duplicate(id) => ApiError::conflict(*id, message),
            ShareError::InternalInUse { existing, .. } | ShareError::Overlap { existing, .. } => {
                ApiError::conflict(*existing, message)
            }
            ShareError::Spec(_) => ApiError::field("external_port", message),
            ShareError::NotOnLan { .. } => ApiError::field("internal", message),
            ShareError::Full { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, message),
        },
        TableError::Conflict { existing, .. } => ApiError::conflict(*existing, message),
        TableError::Static(id) => ApiError::conflict(*id, message),
        // A share would hide the box's own service on that port.
        TableError::BoxListens { .. } => ApiError {
            field: Some("external_port"),
            ..ApiError::new(StatusCode::CONFLICT, message)
        },
        TableError::Quota { .. } | TableError::NoFreePort { .. } => {
            ApiError::new(StatusCode::CONFLICT, message)
        }
        // The owner's own changes are not held to the clients' rules; only a client's are.
        TableError::Refused(_) => ApiError::new(StatusCode::FORBIDDEN, message),
        TableError::NotOwner(..) | TableError::PinholeNotOwner(..) => {
            ApiError::new(StatusCode::FORBIDDEN, message)
        }
        TableError::NoSuchShare(_) | TableError::NoSuchPinhole(_) => {
            ApiError::new(StatusCode::NOT_FOUND, message)
        }
        TableError::Pinhole { source, .. } => match source {
            PinholeError::Duplicate(_) => ApiError::new(StatusCode::CONFLICT, message),
            PinholeError::NotOnLan { .. } => ApiError::field("internal", message),
            PinholeError::Full { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, message),
        },
        TableError::NotExposable(_) => ApiError::field("address", message),
        TableError::NoSuchExposedHost(_) => ApiError::new(StatusCode::NOT_FOUND, message),
        TableError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
        TableError::Dataplane(_) | TableError::Store(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) type Reply = Result<(StatusCode, Value), ApiError>;

/// The answer to one request (any body type: the server's, or a fuzz target's).
pub async fn respond<B>(api: &Api, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let Some((route, params)) = route(method.as_str(), &path) else {
        return not_routed(method.as_str(), &path);
    };
    let needs_token = route != "/metrics" || api.metrics_auth;
    if needs_token && !authorized(&api.token, request.headers().get(AUTHORIZATION)) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (it is in STATE_DIR/api-token)",
        )
        .response();
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return response;
    }
    if route == "/metrics" {
        // Prometheus asks for OpenMetrics first; everything else gets the classic format.
        let openmetrics = request
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        return match scrape(api) {
            Ok(text) => {
                let (text, kind) = if openmetrics {
                    (text, metrics::OPENMETRICS)
                } else {
                    (metrics::classic(&text), metrics::CLASSIC)
                };
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
                response
            }
            Err(err) => table_error(&err).response(),
        };
    }
    if route == "/api/v1/openapi.json" {
        let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let body = if matches!(method, Method::POST | Method::PATCH | Method::PUT) {
        match read_body(request).await {
            Ok(body) => body,
            Err(err) => return err.response(),
        }
    } else {
        Map::new()
    };
    let reply = handle(api, method.as_str(), route, &params, &query, body).await;
    match reply {
        Ok((status, value)) => json_response(status, &value),
        Err(err) => {
            if method != Method::GET {
                tracing::info!("API {method} {path} refused: {}", err.message);
            }
            err.response()
        }
    }
}

/// The answer to a request no route takes: 404, or 405 with the `Allow` header RFC 9110
/// section 15.5.6 requires, listing the methods the path has.
fn not_routed(method: &str, path: &str) -> Response<Full<Bytes>> {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p)| matches(p, path).is_some())
        .map(|(m, _)| *m)
        .collect();
    if allowed.is_empty() {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no route {path}")).response();
    }
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}"),
    )
    .response();
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

/// Compares the token in constant time.
fn authorized(token: &str, header: Option<&HeaderValue>) -> bool {
    let Some(given) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    crate::page::session::same_secret(given, token)
}

/// The route `path` takes for `method`, with its `{param}` values.
fn route(method: &str, path: &str) -> Option<(&'static str, Vec<String>)> {
    ROUTES
        .iter()
        .filter(|(m, _)| *m == method)
        .find_map(|(_, pattern)| matches(pattern, path).map(|params| (*pattern, params)))
}

fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut parts = path.split('/');
    for want in pattern.split('/') {
        let got = parts.next()?;
        if want.starts_with('{') {
            if got.is_empty() {
                return None;
            }
            params.push(percent_decode(got)?);
        } else if want != got {
            return None;
        }
    }
    parts.next().is_none().then_some(params)
}

/// Decodes `%XX` escapes (clients may escape the `:` and `@` of share ids).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A request's body, at most [`MAX_BODY`] bytes (the API's and the page's forms').
pub(crate) async fn body_bytes<B>(request: Request<B>) -> Result<Bytes, ApiError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large (at most {MAX_BODY} bytes) or broken"),
            )
        })
}

async fn read_body<B>(request: Request<B>) -> Result<Map<String, Value>, ApiError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = body_bytes(request).await?;
    // No body is no fields; anything else must be a JSON object (blanks alone are not JSON).
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {err}"),
        )),
    }
}

async fn handle(
    api: &Api,
    method: &str,
    route: &str,
    params: &[String],
    query: &str,
    body: Map<String, Value>,
) -> Reply {
    let param = || params.first().map_or("", String::as_str);
    match (method, route) {
        ("GET", "/api/v1/shares") => list(api),
        ("POST", "/api/v1/shares") => create(api, body).await,
        ("GET", "/api/v1/shares/{id}") => share(api, share_id(param())?),
        ("PATCH", "/api/v1/shares/{id}") => {
            let id = share_id(param())?;
            let patch = share_patch(body)?;
            edit(api, id, patch).await
        }
        ("POST", "/api/v1/shares/{id}/enable" | "/api/v1/shares/{id}/disable") => {
            let id = share_id(param())?;
            no_fields(&body)?;
            let enabled = route.ends_with("/enable");
            edit(
                api,
                id,
                SharePatch {
                    enabled: Some(enabled),
                    ..SharePatch::default()
                },
            )
            .await
        }
        ("DELETE", "/api/v1/shares/{id}") => delete_share(api, share_id(param())?).await,
        (_, pinhole_route) if pinhole_route.starts_with("/api/v1/pinholes") => {
            pinholes(api, method, route, param(), body).await
        }
        ("GET", "/api/v1/devices") => Ok(devices(api)),
        ("PUT", "/api/v1/devices/{addr}") => {
            let addr: Ipv4Addr = param().parse().map_err(|_| {
                ApiError::field("addr", format!("`{}` is not an IPv4 address", param()))
            })?;
            if !api.lan.iter().any(|s| s.has_host(addr)) {
                return Err(ApiError::field(
                    "addr",
                    format!("{addr} is not a host of the LAN subnets"),
                ));
            }
            let mut body = Fields::new(body);
            let allowed = match body.take("allowed") {
                None => return Err(ApiError::field("allowed", "missing: true, false or null")),
                Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(b),
                Some(_) => return Err(ApiError::field("allowed", "expected true, false or null")),
            };
            body.done()?;
            let removed = api
                .table
                .change(move |t| t.set_device(addr, allowed))
                .await
                .map_err(|e| table_error(&e))?;
            let removed: Vec<String> = removed.iter().map(|s| s.spec.id.to_string()).collect();
            Ok((
                StatusCode::OK,
                json!({ "address": addr.to_string(), "allowed": allowed, "removed": removed }),
            ))
        }
        ("POST", "/api/v1/devices/revoke-unused") => {
            no_fields(&body)?;
            let kept = api
                .table
                .change(Table::revoke_unused)
                .await
                .map_err(|e| table_error(&e))?;
            let kept: Vec<String> = kept.iter().map(ToString::to_string).collect();
            Ok((StatusCode::OK, json!({ "kept": kept })))
        }
        ("GET", "/api/v1/settings") => {
            let view = api.table.snapshot().settings_view();
            Ok((StatusCode::OK, settings_json(&view)))
        }
        ("PATCH", "/api/v1/settings") => {
            let patch = settings_patch(body)?;
            let view = api
                .table
                .change(move |t| t.set_settings(&patch))
                .await
                .map_err(|e| table_error(&e))?;
            Ok((StatusCode::OK, settings_json(&view)))
        }
        (_, exposed_route) if exposed_route.starts_with("/api/v1/exposed-host") => {
            exposed_routes(api, method, params, body).await
        }
        ("GET", "/api/v1/events") => events(api, query).await,
        ("GET", "/api/v1/status") => Ok(status(api)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such route")),
    }
}

/// The answer to an API call made inside the daemon (the owner's page): `path` routed as a
/// request's would be, `body` taken as its JSON body.
pub(crate) async fn call(
    api: &Api,
    method: &str,
    path: &str,
    query: &str,
    body: Map<String, Value>,
) -> Reply {
    let Some((route, params)) = route(method, path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route {path}"),
        ));
    };
    handle(api, method, route, &params, query, body).await
}

fn share_id(text: &str) -> Result<ShareId, ApiError> {
    text.parse()
        .map_err(|err: crate::share::SpecError| ApiError::field("id", err.to_string()))
}

mod fields;
mod owner;
mod shares;
#[cfg(test)]
mod tests;

use fields::{Fields, name, no_fields, required};
use owner::{devices, events, exposed_routes, scrape, settings_json, settings_patch, status};
use shares::{create, delete_share, edit, list, pinholes, share, share_patch};
