//! The UPnP HTTP server: descriptions and SOAP control, for LAN clients only.
//!
//! Bounds: [`crate::server::Limits::CONTROL`] (a connection must send its headers within 5 s
//! and be done within 30 s; headers fit in 8 KiB; at most 32 are served at once, more are
//! closed at once); bodies fit in [`MAX_BODY`]. A peer outside the LAN
//! subnets is closed before a byte is read.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue, SERVER},
};
use tokio::net::TcpListener;

use super::{Fault, Identity, Service, control::Control, description, soap};
use crate::share::LanSubnet;

pub const MAX_BODY: usize = 16 * 1024;

/// What the server answers with.
pub struct Server {
    pub control: Control,
    pub identity: Identity,
    pub lan: Vec<LanSubnet>,
    root: String,
    ip_conn: String,
    common_if: String,
    firewall6: String,
}

impl Server {
    #[must_use]
    pub fn new(control: Control, identity: Identity, lan: Vec<LanSubnet>) -> Self {
        let version = identity.version;
        Self {
            root: description::root(&identity),
            ip_conn: description::scpd(Service::IpConnection, version),
            common_if: description::scpd(Service::CommonInterface, version),
            firewall6: description::scpd(Service::Firewall6, version),
            control,
            identity,
            lan,
        }
    }
}

/// Whether `addr` is in one of the LAN subnets.
#[must_use]
pub fn on_lan(lan: &[LanSubnet], addr: Ipv4Addr) -> bool {
    lan.iter().any(|s| s.contains(addr))
}

/// Serves `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, server: Arc<Server>, shutdown: impl Future<Output = ()>) {
    let lan = server.lan.clone();
    crate::server::serve(
        "UPnP HTTP",
        listener,
        crate::server::Limits::CONTROL,
        shutdown,
        move |peer| match peer.ip() {
            IpAddr::V4(v4) if on_lan(&lan, v4) => Some(v4),
            _ => None,
        },
        move |client, request| {
            let server = Arc::clone(&server);
            async move { respond(&server, client, request).await }
        },
    )
    .await;
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

fn xml(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=\"utf-8\""),
    );
    response
}

fn fault_response(fault: &Fault) -> Response<Full<Bytes>> {
    xml(
        StatusCode::INTERNAL_SERVER_ERROR,
        soap::fault(fault.code, fault.description()),
    )
}

/// The answer to one request from LAN host `client`.
pub async fn respond(
    server: &Server,
    client: Ipv4Addr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let mut response = route(server, client, request).await;
    if let Ok(value) = HeaderValue::from_str(&server.identity.server()) {
        response.headers_mut().insert(SERVER, value);
    }
    response
}

async fn route(
    server: &Server,
    client: Ipv4Addr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, description::ROOT_DESC) => {
            xml(StatusCode::OK, server.root.clone())
        }
        (&Method::GET | &Method::HEAD, description::IP_CONN_DESC) => {
            xml(StatusCode::OK, server.ip_conn.clone())
        }
        (&Method::GET | &Method::HEAD, description::COMMON_IF_DESC) => {
            xml(StatusCode::OK, server.common_if.clone())
        }
        (&Method::POST, description::IP_CONN_CONTROL) => {
            control(server, client, Service::IpConnection, request).await
        }
        (&Method::POST, description::COMMON_IF_CONTROL) => {
            control(server, client, Service::CommonInterface, request).await
        }
        (&Method::GET | &Method::HEAD, description::FIREWALL6_DESC) => {
            xml(StatusCode::OK, server.firewall6.clone())
        }
        (&Method::POST, description::FIREWALL6_CONTROL) => {
            control(server, client, Service::Firewall6, request).await
        }
        // GENA: no eventing, so nobody is ever called back (CVE-2020-12695, CallStranger).
        (
            method,
            description::IP_CONN_EVENTS
            | description::COMMON_IF_EVENTS
            | description::FIREWALL6_EVENTS,
        ) if matches!(method.as_str(), "SUBSCRIBE" | "UNSUBSCRIBE") => {
            plain(StatusCode::NOT_IMPLEMENTED, "eventing is not supported\n")
        }
        (
            _,
            description::ROOT_DESC
            | description::IP_CONN_DESC
            | description::COMMON_IF_DESC
            | description::IP_CONN_CONTROL
            | description::COMMON_IF_CONTROL
            | description::IP_CONN_EVENTS
            | description::COMMON_IF_EVENTS
            | description::FIREWALL6_DESC
            | description::FIREWALL6_CONTROL
            | description::FIREWALL6_EVENTS,
        ) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn control(
    server: &Server,
    client: Ipv4Addr,
    endpoint: Service,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let soap_action = request
        .headers()
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned());
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large or broken\n"),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "body is not UTF-8\n");
    };
    let parsed = match soap::parse(body) {
        Ok(parsed) => parsed,
        Err(err) => {
            let code = match err {
                soap::SoapError::NoAction | soap::SoapError::NoNamespace => Fault::INVALID_ACTION,
                _ => Fault::INVALID_ARGS,
            };
            let fault = Fault::new(code, err.to_string());
            tracing::info!("UPnP request from {client} refused: {fault}");
            server
                .control
                .metrics
                .request("upnp", "unknown", &fault.code.to_string());
            return fault_response(&fault);
        }
    };
    if let Some(header) = soap_action
        && header != format!("{}#{}", parsed.service, parsed.action)
    {
        let fault = Fault::new(
            Fault::INVALID_ACTION,
            format!("SOAPAction `{header}` does not name the action in the body"),
        );
        tracing::info!("UPnP request from {client} refused: {fault}");
        return fault_response(&fault);
    }
    let result = server.control.handle(endpoint, client, &parsed).await;
    server.control.metrics.request(
        "upnp",
        known_action(&parsed.action),
        &result
            .as_ref()
            .map_or_else(|fault| fault.code.to_string(), |_| "ok".to_owned()),
    );
    match result {
        Ok(outputs) => {
            if !parsed.action.starts_with("Get") {
                tracing::info!("UPnP {} from {client}: done", describe(&parsed));
            }
            xml(
                StatusCode::OK,
                soap::response(&parsed.service, &parsed.action, &outputs),
            )
        }
        Err(fault) => {
            tracing::info!("UPnP {} from {client}: {fault}", describe(&parsed));
            fault_response(&fault)
        }
    }
}

/// The action's name if the services have it, else `unknown`: a metric label must not take
/// whatever a client sends.
fn known_action(action: &str) -> &'static str {
    [
        Service::IpConnection,
        Service::CommonInterface,
        Service::Firewall6,
    ]
    .into_iter()
    .flat_map(|service| description::actions(service, super::IgdVersion::V2))
    .find(|known| *known == action)
    .unwrap_or("unknown")
}

/// An action and the arguments that say what it is about, for the log.
fn describe(request: &soap::Request) -> String {
    let mut text = request.action.clone();
    for name in [
        "NewProtocol",
        "NewExternalPort",
        "NewInternalClient",
        "NewInternalPort",
        "Protocol",
        "InternalClient",
        "InternalPort",
        "UniqueID",
    ] {
        if let Some(value) = request.arg(name) {
            text.push(' ');
            text.extend(value.chars().filter(|c| !c.is_control()).take(40));
        }
    }
    text
}
