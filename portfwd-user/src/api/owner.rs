//! The owner's other routes: settings, devices, events, status, and `/metrics`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::Duration,
};

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::{Api, ApiError, Fields, MAX_PAGE, MAX_WAIT, Reply, no_fields, required, table_error};
use crate::{
    clock::Civil,
    metrics::{self, ShareSample, Snapshot},
    table::{SettingsPatch, SettingsView, TableError, now},
};

pub(super) fn settings_patch(body: Map<String, Value>) -> Result<SettingsPatch, ApiError> {
    let mut body = Fields::new(body);
    let quota = |n: Option<u64>| n.and_then(|n| usize::try_from(n).ok());
    let patch = SettingsPatch {
        upnp_enabled: body.bool("upnp_enabled")?,
        secure_mode: body.bool("secure_mode")?,
        quota_per_client: quota(body.number(
            "quota_per_client",
            0..=u64::from(portfwd_common::MAX_SHARES),
        )?),
        quota_total: quota(body.number("quota_total", 0..=u64::from(portfwd_common::MAX_SHARES))?),
    };
    body.done()?;
    Ok(patch)
}

pub(super) fn settings_json(view: &SettingsView) -> Value {
    let s = &view.effective;
    let overlay = serde_json::to_value(&view.overlay).unwrap_or(Value::Null);
    json!({
        "upnp_enabled": s.enabled,
        "secure_mode": s.secure_mode,
        "quota_per_client": s.limits.per_client,
        "quota_total": s.limits.total,
        "igd_version": s.igd_version.number(),
        "max_lease": s.max_lease.map(|d| d.as_secs()),
        "new_devices": s.new_devices,
        "changed_by_api": overlay,
    })
}

pub(super) fn devices(api: &Api) -> (StatusCode, Value) {
    let snapshot = api.table.snapshot();
    let view = snapshot.settings_view();
    let entries: Vec<_> = snapshot.entries(now()).collect();
    let neighbours: BTreeMap<Ipv4Addr, [u8; 6]> = api
        .host
        .neighbours()
        .into_iter()
        .filter(|(addr, _)| api.lan.iter().any(|s| s.has_host(*addr)))
        .collect();
    let mut addrs: BTreeSet<Ipv4Addr> = neighbours.keys().copied().collect();
    addrs.extend(view.effective.permissions.keys());
    for entry in &entries {
        addrs.insert(*entry.spec.internal.ip());
        addrs.extend(entry.origin.client());
    }
    let list: Vec<Value> = addrs
        .iter()
        .map(|addr| {
            let mac = neighbours.get(addr).copied();
            let (allowed, from) = view.effective.permission(*addr, mac);
            let shares: Vec<String> = entries
                .iter()
                .filter(|e| e.spec.internal.ip() == addr)
                .map(|e| e.spec.id.to_string())
                .collect();
            let opened = entries
                .iter()
                .filter(|e| e.origin.client() == Some(*addr))
                .count();
            json!({
                "address": addr.to_string(),
                "mac": mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                "allowed": allowed,
                "permission": from,
                "shares": shares,
                "opened": opened,
            })
        })
        .collect();
    (StatusCode::OK, json!({ "devices": list }))
}

/// The event page a query asks for: `after`, `limit` (1 to [`MAX_PAGE`], 100 without it) and
/// `wait` (0 to [`MAX_WAIT`] seconds), the ranges the OpenAPI document gives; a value outside
/// them is a 400 naming it.
pub(super) fn events_query(query: &str) -> Result<(Option<u64>, usize, Duration), ApiError> {
    let mut after = None;
    let mut limit = 100;
    let mut wait = Duration::ZERO;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |field: &'static str, range: std::ops::RangeInclusive<u64>| {
            let n = value
                .parse::<u64>()
                .map_err(|_| ApiError::field(field, format!("`{value}` is not a number")))?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(ApiError::field(
                    field,
                    format!("{n} is out of range ({}-{})", range.start(), range.end()),
                ))
            }
        };
        match key {
            "after" => after = Some(number("after", 0..=u64::MAX)?),
            "limit" => {
                limit = usize::try_from(number("limit", 1..=MAX_PAGE as u64)?).unwrap_or(MAX_PAGE);
            }
            "wait" => wait = Duration::from_secs(number("wait", 0..=MAX_WAIT.as_secs())?),
            other => {
                return Err(ApiError::field(
                    "query",
                    format!("unknown parameter `{other}` (after, limit, wait)"),
                ));
            }
        }
    }
    Ok((after, limit, wait))
}

pub(super) async fn events(api: &Api, query: &str) -> Reply {
    let (after, limit, wait) = events_query(query)?;
    let (mut page, mut newest) = api
        .table
        .ask(move |t| (t.events().page(after, limit), t.events().subscribe()))
        .await
        .map_err(|e| table_error(&e))?;
    if page.is_empty() && !wait.is_zero() {
        let since = after.unwrap_or(0);
        let _ = tokio::time::timeout(wait, newest.wait_for(|id| *id > since)).await;
        page = api
            .table
            .ask(move |t| t.events().page(after, limit))
            .await
            .map_err(|e| table_error(&e))?;
    }
    let last_id = page.last().map(|e| e.id).or(after);
    let list: Vec<Value> = page
        .iter()
        .map(|e| {
            let mut value = serde_json::to_value(e).unwrap_or(Value::Null);
            value["at"] = json!(Civil::from_unix(e.time).rfc3339());
            value
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({ "events": list, "last_id": last_id }),
    ))
}

/// The `/api/v1/exposed-host` routes.
pub(super) async fn exposed_routes(
    api: &Api,
    method: &str,
    params: &[String],
    body: Map<String, Value>,
) -> Reply {
    match method {
        "GET" => exposed(api),
        "PUT" => {
            let mut fields = Fields::new(body);
            let addr: std::net::IpAddr = required(
                fields.parsed("address", "an IPv4 or IPv6 address")?,
                "address",
            )?;
            fields.done()?;
            api.table
                .change(move |t| t.set_exposed_host(addr))
                .await
                .map_err(|e| table_error(&e))?;
            exposed(api)
        }
        _ => {
            no_fields(&body)?;
            let addr = match params.first() {
                Some(text) => Some(text.parse::<std::net::IpAddr>().map_err(|_| {
                    ApiError::field("addr", format!("`{text}` is not an IP address"))
                })?),
                None => None,
            };
            api.table
                .change(move |t| t.clear_exposed_host(addr))
                .await
                .map_err(|e| table_error(&e))?;
            exposed(api)
        }
    }
}

/// `/api/v1/exposed-host`: the exposed hosts and their counters.
pub(super) fn exposed(api: &Api) -> Reply {
    let hosts = api.table.snapshot().settings_view().effective.exposed;
    let [v4, v6] = api
        .table
        .reader()
        .exposed_stats()
        .map_err(|e| table_error(&TableError::Dataplane(e)))?;
    let counters = |s: portfwd_common::ShareStats| {
        json!({
            "packets_in": s.packets_in,
            "bytes_in": s.bytes_in,
            "packets_out": s.packets_out,
            "bytes_out": s.bytes_out,
        })
    };
    Ok((
        StatusCode::OK,
        json!({
            "ipv4": hosts.v4.map(|a| a.to_string()),
            "ipv6": hosts.v6.map(|a| a.to_string()),
            "counters": { "ipv4": counters(v4), "ipv6": counters(v6) },
        }),
    ))
}

pub(super) fn status(api: &Api) -> (StatusCode, Value) {
    let snapshot = api.table.snapshot();
    let status = snapshot.status();
    let settings = snapshot.settings_view();
    let f = &api.facts;
    let total: usize = status.by_source.values().sum();
    (
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": f.started.elapsed().as_secs(),
            "wan": {
                "interface": f.wan,
                "link": if status.wan_up { "up" } else { "down" },
                "down_since": status.wan_down_since.map(|t| Civil::from_unix(t).rfc3339()),
                "external_address": status.external.map(|a| a.to_string()),
                "xdp_mode": f.wan_mode,
                "program_id": f.wan_program,
            },
            "lan": {
                "interface": f.lan,
                "address": f.lan_address.to_string(),
                "xdp_mode": f.lan_mode,
                "program_id": f.lan_program,
            },
            "shares": {
                "total": total,
                "active": status.active,
                "by_source": status.by_source,
            },
            "upnp": {
                "enabled": settings.effective.enabled,
                "url": f.upnp_url,
            },
            "exposed_host": {
                "ipv4": settings.effective.exposed.v4.map(|a| a.to_string()),
                "ipv6": settings.effective.exposed.v6.map(|a| a.to_string()),
            },
            "ddns": api.ddns.as_ref().map(|d| json!(*d.borrow())),
            "last_event": status.last_event,
        }),
    )
}

/// `/metrics`: one snapshot, one batch read of the counters.
pub(super) fn scrape(api: &Api) -> Result<String, TableError> {
    let snapshot = api.table.snapshot();
    let views = snapshot.share_views(api.table.reader(), now())?;
    let samples: Vec<ShareSample> = views
        .iter()
        .map(|v| ShareSample {
            share: v.entry.spec.id.to_string(),
            internal: v.entry.spec.internal.to_string(),
            source: v.entry.origin.source(),
            stats: v.stats,
            active: v.active,
        })
        .collect();
    let status = snapshot.status();
    let verdicts = api.table.reader().verdicts()?;
    let exposed = api.table.reader().exposed_stats()?;
    Ok(metrics::render(
        &api.metrics,
        &Snapshot {
            shares: &samples,
            by_source: &status.by_source,
            counters: status.counters,
            wan_up: status.wan_up,
            verdicts: &verdicts,
            interfaces: [&api.facts.wan, &api.facts.lan],
            uptime_secs: api.facts.started.elapsed().as_secs(),
            exposed,
        },
    ))
}
