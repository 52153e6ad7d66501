//! The share and pinhole routes: `/api/v1/shares` and `/api/v1/pinholes`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::{Api, ApiError, Fields, Reply, name, no_fields, required, table_error};
use crate::{
    pinhole::{PinholeId, PinholeSpec},
    share::{Proto, ShareId, ShareSpec},
    table::{By, PinholeView, SharePatch, ShareView, now},
};

pub(super) async fn create(api: &Api, body: Map<String, Value>) -> Reply {
    let mut body = Fields::new(body);
    let proto: Proto = required(body.parsed("proto", "tcp or udp")?, "proto")?;
    let (ext_port, ext_last) = required(body.ports("external_port")?, "external_port")?;
    let internal: SocketAddrV4 = required(
        body.parsed("internal", "an IPv4 address and port (10.0.0.10:80)")?,
        "internal",
    )?;
    if internal.port() == 0 {
        return Err(ApiError::field("internal", "port 0 is not a port"));
    }
    let remote: Option<Ipv4Addr> = body.parsed("remote", "an IPv4 address")?;
    let name = body.string("name")?.map(name).transpose()?;
    let enabled = body.bool("enabled")?.unwrap_or(true);
    let hairpin = body.bool("hairpin")?.unwrap_or(true);
    body.done()?;
    let spec = ShareSpec {
        id: ShareId {
            proto,
            ext_port,
            remote,
            ext_last,
        },
        internal,
        name,
        enabled,
        hairpin,
    };
    spec.check_internal_range()
        .map_err(|e| ApiError::field("internal", e.to_string()))?;
    let entry = api
        .table
        .change(move |t| t.create(spec))
        .await
        .map_err(|e| table_error(&e))?;
    let (_, share) = share(api, entry.spec.id)?;
    Ok((StatusCode::CREATED, share))
}

pub(super) async fn delete_share(api: &Api, id: ShareId) -> Reply {
    let share = api
        .table
        .change(move |t| t.remove(id, By::Operator))
        .await
        .map_err(|e| table_error(&e))?;
    Ok((
        StatusCode::OK,
        json!({ "deleted": share.spec.id.to_string(), "internal": share.spec.internal.to_string() }),
    ))
}

/// The `/api/v1/pinholes` routes.
pub(super) async fn pinholes(
    api: &Api,
    method: &str,
    route: &str,
    param: &str,
    body: Map<String, Value>,
) -> Reply {
    match (method, route) {
        ("GET", "/api/v1/pinholes") => {
            let list = api
                .table
                .snapshot()
                .pinhole_views(api.table.reader(), now())
                .map_err(|e| table_error(&e))?;
            let list: Vec<Value> = list.iter().map(pinhole_json).collect();
            Ok((StatusCode::OK, json!({ "pinholes": list })))
        }
        ("POST", "/api/v1/pinholes") => {
            let spec = pinhole_spec(body)?;
            let view = api
                .table
                .change(move |t| t.open_pinhole(spec))
                .await
                .map_err(|e| table_error(&e))?;
            Ok((StatusCode::CREATED, pinhole_json(&view)))
        }
        ("DELETE", "/api/v1/pinholes/{id}") => {
            let id = pinhole_id(param)?;
            let closed = api
                .table
                .change(move |t| t.close_pinhole(id, By::Operator))
                .await
                .map_err(|e| table_error(&e))?;
            Ok((
                StatusCode::OK,
                json!({ "deleted": closed.spec.id.to_string() }),
            ))
        }
        ("POST", "/api/v1/pinholes/{id}/enable" | "/api/v1/pinholes/{id}/disable") => {
            let id = pinhole_id(param)?;
            no_fields(&body)?;
            let enabled = route.ends_with("/enable");
            let view = api
                .table
                .change(move |t| t.switch_pinhole(id, enabled))
                .await
                .map_err(|e| table_error(&e))?;
            Ok((StatusCode::OK, pinhole_json(&view)))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such route")),
    }
}

fn pinhole_id(text: &str) -> Result<PinholeId, ApiError> {
    text.parse()
        .map_err(|e: crate::share::SpecError| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
}

/// A pinhole from a POST body: `{"proto": "tcp", "internal": "[2001:db8::10]:443",
/// "remote": "2001:db8:ff::2", "name": "web", "enabled": true}`.
fn pinhole_spec(body: Map<String, Value>) -> Result<PinholeSpec, ApiError> {
    let mut body = Fields::new(body);
    let proto: Proto = required(body.parsed("proto", "tcp or udp")?, "proto")?;
    let internal: SocketAddrV6 = required(
        body.parsed("internal", "an IPv6 address and port ([2001:db8::10]:443)")?,
        "internal",
    )?;
    if internal.port() == 0 {
        return Err(ApiError::field("internal", "port 0 is not a port"));
    }
    let remote: Option<Ipv6Addr> = body.parsed("remote", "an IPv6 address")?;
    let name = body.string("name")?.map(name).transpose()?;
    let enabled = body.bool("enabled")?.unwrap_or(true);
    body.done()?;
    Ok(PinholeSpec {
        id: PinholeId {
            proto,
            addr: *internal.ip(),
            port: internal.port(),
        },
        remote,
        remote_port: None,
        name,
        enabled,
    })
}

fn pinhole_json(view: &PinholeView) -> Value {
    let spec = &view.pinhole.spec;
    json!({
        "id": spec.id.to_string(),
        "proto": spec.id.proto,
        "address": spec.id.addr.to_string(),
        "port": spec.id.port,
        "remote": spec.remote.map(|r| r.to_string()),
        "remote_port": spec.remote_port,
        "name": spec.name,
        "enabled": spec.enabled,
        "active": view.active,
        "source": view.pinhole.origin.source(),
        "client": view.pinhole.origin.owner().map(|c| c.to_string()),
        "unique_id": view.pinhole.uid,
        "expires_in": view.expires_in.map(|left| left.as_secs()),
        "counters": {
            "packets_in": view.stats.packets_in,
            "bytes_in": view.stats.bytes_in,
            "packets_out": view.stats.packets_out,
            "bytes_out": view.stats.bytes_out,
        },
    })
}

/// Every share, as the list shows them.
pub(super) fn list(api: &Api) -> Reply {
    let shares = api
        .table
        .snapshot()
        .share_views(api.table.reader(), now())
        .map_err(|e| table_error(&e))?;
    let host = reach_host(api);
    let list: Vec<Value> = shares
        .iter()
        .map(|s| share_json(s, host.as_deref()))
        .collect();
    Ok((StatusCode::OK, json!({ "shares": list })))
}

/// One share as the list shows it (counters, and whether it is active now).
pub(super) fn share(api: &Api, id: ShareId) -> Reply {
    let view = api
        .table
        .snapshot()
        .share_view(id, api.table.reader(), now())
        .map_err(|e| table_error(&e))?;
    Ok((
        StatusCode::OK,
        share_json(&view, reach_host(api).as_deref()),
    ))
}

/// The host a share is called by from the internet: the dynamic DNS name when one is kept,
/// else the external address (`None` without one).
pub(super) fn reach_host(api: &Api) -> Option<String> {
    match &api.ddns {
        Some(ddns) => Some(ddns.borrow().name.clone()),
        None => api.table.snapshot().external.map(|a| a.to_string()),
    }
}

pub(super) fn share_patch(body: Map<String, Value>) -> Result<SharePatch, ApiError> {
    let mut body = Fields::new(body);
    let name = match body.take("name") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(name(s)?)),
        Some(_) => return Err(ApiError::field("name", "expected a string or null")),
    };
    let internal: Option<SocketAddrV4> =
        body.parsed("internal", "an IPv4 address and port (10.0.0.10:80)")?;
    if internal.is_some_and(|i| i.port() == 0) {
        return Err(ApiError::field("internal", "port 0 is not a port"));
    }
    let patch = SharePatch {
        name,
        internal,
        external_port: body.ports("external_port")?,
        enabled: body.bool("enabled")?,
        hairpin: body.bool("hairpin")?,
    };
    body.done()?;
    Ok(patch)
}

pub(super) async fn edit(api: &Api, id: ShareId, patch: SharePatch) -> Reply {
    let entry = api
        .table
        .change(move |t| t.edit(id, patch))
        .await
        .map_err(|e| table_error(&e))?;
    share(api, entry.spec.id)
}

/// A share as the API shows it; `host` is what it is called by from the internet.
pub(super) fn share_json(view: &ShareView, host: Option<&str>) -> Value {
    let entry = &view.entry;
    let spec = &entry.spec;
    let ports = if spec.id.is_range() {
        format!("{}-{}", spec.id.ext_port, spec.id.ext_last)
    } else {
        spec.id.ext_port.to_string()
    };
    let mut value = json!({
        "id": spec.id.to_string(),
        "proto": spec.id.proto,
        "external_port": spec.id.ext_port,
        "external_last": spec.id.ext_last,
        "remote": spec.id.remote.map(|r| r.to_string()),
        "internal": spec.internal.to_string(),
        "device": spec.internal.ip().to_string(),
        "name": spec.name,
        "enabled": spec.enabled,
        "hairpin": spec.hairpin,
        "active": view.active,
        "source": entry.origin.source(),
        "from_config": entry.origin == crate::share::Origin::Static,
        "client": entry.origin.client().map(|c| c.to_string()),
        "lease_remaining": entry.expires_in.map(|d| d.as_secs()),
        "from_internet": host.map(|h| format!("{h}:{ports}")),
    });
    value["counters"] = json!({
        "packets_in": view.stats.packets_in,
        "bytes_in": view.stats.bytes_in,
        "packets_out": view.stats.packets_out,
        "bytes_out": view.stats.bytes_out,
    });
    value
}
