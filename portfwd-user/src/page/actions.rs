//! What each page shows (`GET`) and what each form does (`POST`): the API call it stands
//! for, then a redirect to the page it came from, or that page again with the API's error
//! next to the field it names and everything typed kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header::CONTENT_TYPE, header::HeaderValue};
use serde_json::{Map, Value, json};

use super::{
    Form, LIVE_WAIT, Problems, error_page, error_status, frame, html, read, redirect,
    session::Session,
    views::{self, sharing::Returned, sharing::Sharing},
};
use crate::{
    api::{Api, ApiError, call},
    page::form::escape,
};

/// Events the events page shows.
const EVENT_PAGE: u64 = 200;

pub(super) async fn get(
    api: &Api,
    session: &Session,
    path: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    let params = Form::parse(query.as_bytes()).unwrap_or_default();
    let notice = params.get("done").and_then(notice);
    let frame = frame(api, session, notice);
    let result = match path {
        "/" => return sharing(api, session, notice, None, StatusCode::OK).await,
        "/share" => {
            let Some(id) = params.get("id") else {
                return redirect("/");
            };
            let share = match read(api, &format!("/api/v1/shares/{}", escape(id)), "").await {
                Ok(share) => share,
                Err(err) => return error_status(err.status, &err.message),
            };
            Ok(views::edit(
                &frame,
                id,
                &share_form(&share),
                &Problems::default(),
            ))
        }
        "/apps" => {
            async {
                let shares = read(api, "/api/v1/shares", "").await?;
                let pinholes = read(api, "/api/v1/pinholes", "").await?;
                Ok(views::apps(
                    &frame,
                    list(&shares, "shares"),
                    list(&pinholes, "pinholes"),
                ))
            }
            .await
        }
        "/settings" => settings(api, &frame, None).await,
        "/events" => {
            async {
                let kind = params.get("kind");
                let after = frame.last_event.saturating_sub(1000);
                let page =
                    read(api, "/api/v1/events", &format!("after={after}&limit=1000")).await?;
                let mut events: Vec<Value> = list(&page, "events")
                    .iter()
                    .filter(|e| kind.is_none_or(|k| e["kind"] == k))
                    .cloned()
                    .collect();
                events.reverse();
                events.truncate(usize::try_from(EVENT_PAGE).unwrap_or(usize::MAX));
                Ok(views::events(&frame, &events, kind))
            }
            .await
        }
        "/status" => read(api, "/api/v1/status", "")
            .await
            .map(|status| views::status(&frame, &status)),
        "/live" => return live(api, &params).await,
        _ => return error_status(StatusCode::NOT_FOUND, "There is no such page."),
    };
    match result {
        Ok(markup) => html(StatusCode::OK, &markup),
        Err(err) => error_status(err.status, &err.message),
    }
}

/// `/live?after=ID`: answers once an event newer than `ID` is logged, or after [`LIVE_WAIT`],
/// with the newest id: `{"last_id": N}`.
async fn live(api: &Api, params: &Form) -> Response<Full<Bytes>> {
    let after: u64 = params
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let query = format!("after={after}&limit=1&wait={}", LIVE_WAIT.as_secs());
    if let Err(err) = read(api, "/api/v1/events", &query).await {
        return error_status(err.status, &err.message);
    }
    // The newest, not the next: a burst of events is one redraw.
    let last = api.table.snapshot().last_event.max(after);
    let mut response = Response::new(Full::new(Bytes::from(
        json!({ "last_id": last }).to_string(),
    )));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(super) async fn post(
    api: &Api,
    session: &Session,
    path: &str,
    form: &Form,
) -> Response<Full<Bytes>> {
    let back = match form.get("return") {
        Some("/apps") => "/apps",
        _ => "/",
    };
    let done = |code: &str| redirect(&format!("{back}?done={code}"));
    if path == "/devices/permission"
        && !matches!(form.get("allowed"), Some("allow" | "deny" | "default"))
    {
        return error_status(StatusCode::BAD_REQUEST, "Choose Allow, Deny or Default.");
    }
    if let Some((method, route, body, code)) = one_call(path, form) {
        return match call(api, method, &route, "", body).await {
            Ok(_) => done(code),
            Err(err) => refused_action(api, session, back, &err).await,
        };
    }
    match path {
        "/shares/add" => add_share(api, session, form).await,
        "/shares/edit" => edit_share(api, session, form).await,
        "/exposed-host/set" => {
            let mut problems = Problems::default();
            match form.get("address").map(str::parse::<IpAddr>) {
                Some(Ok(address)) => {
                    let body = object(&[("address", json!(address.to_string()))]);
                    match call(api, "PUT", "/api/v1/exposed-host", "", body).await {
                        Ok(_) => return done("exposed"),
                        Err(err) => {
                            problems.fields.insert("address", explain(&err));
                        }
                    }
                }
                _ => {
                    problems.fields.insert(
                        "address",
                        "Enter the device's IPv4 or IPv6 address, like 192.168.1.20.".to_owned(),
                    );
                }
            }
            send_back(api, session, "exposed", form, &problems).await
        }
        "/settings" => save_settings(api, session, form).await,
        _ => error_status(StatusCode::NOT_FOUND, "There is no such form."),
    }
}

/// The API call a one-button form stands for: method, route, body, and what the redirect
/// says was done.
fn one_call(
    path: &str,
    form: &Form,
) -> Option<(&'static str, String, Map<String, Value>, &'static str)> {
    let id = escape(form.value("id"));
    let address = escape(form.value("address"));
    Some(match path {
        "/shares/delete" => (
            "DELETE",
            format!("/api/v1/shares/{id}"),
            Map::new(),
            "deleted",
        ),
        "/shares/enable" => (
            "POST",
            format!("/api/v1/shares/{id}/enable"),
            Map::new(),
            "enabled",
        ),
        "/shares/disable" => (
            "POST",
            format!("/api/v1/shares/{id}/disable"),
            Map::new(),
            "disabled",
        ),
        "/pinholes/delete" => (
            "DELETE",
            format!("/api/v1/pinholes/{id}"),
            Map::new(),
            "deleted",
        ),
        "/devices/permission" => {
            let allowed = match form.get("allowed") {
                Some("allow") => Value::Bool(true),
                Some("deny") => Value::Bool(false),
                _ => Value::Null,
            };
            (
                "PUT",
                format!("/api/v1/devices/{address}"),
                object(&[("allowed", allowed)]),
                "permission",
            )
        }
        "/devices/revoke-unused" => (
            "POST",
            "/api/v1/devices/revoke-unused".to_owned(),
            Map::new(),
            "revoked",
        ),
        "/exposed-host/clear" if address.is_empty() => (
            "DELETE",
            "/api/v1/exposed-host".to_owned(),
            Map::new(),
            "cleared",
        ),
        "/exposed-host/clear" => (
            "DELETE",
            format!("/api/v1/exposed-host/{address}"),
            Map::new(),
            "cleared",
        ),
        _ => return None,
    })
}

/// The port-sharing page, with a refused form sent back.
async fn sharing(
    api: &Api,
    session: &Session,
    notice: Option<&str>,
    returned: Option<Returned<'_>>,
    status: StatusCode,
) -> Response<Full<Bytes>> {
    let data = async {
        Ok::<_, ApiError>((
            read(api, "/api/v1/shares", "").await?,
            read(api, "/api/v1/devices", "").await?,
            read(api, "/api/v1/pinholes", "").await?,
            read(api, "/api/v1/exposed-host", "").await?,
            read(api, "/api/v1/status", "").await?,
        ))
    }
    .await;
    let (shares, devices, pinholes, exposed, status_value) = match data {
        Ok(data) => data,
        Err(err) => return error_page(&err.message),
    };
    let data = Sharing {
        shares: list(&shares, "shares"),
        devices: list(&devices, "devices"),
        pinholes: list(&pinholes, "pinholes"),
        exposed: &exposed,
        status: &status_value,
    };
    html(
        status,
        &views::sharing(&frame(api, session, notice), &data, returned),
    )
}

/// A one-button action the API refused: the page it came from, with the reason on top.
async fn refused_action(
    api: &Api,
    session: &Session,
    back: &str,
    err: &ApiError,
) -> Response<Full<Bytes>> {
    let problems = Problems::general(explain(err));
    if back == "/apps" {
        return error_status(err.status, &explain(err));
    }
    let empty = Form::default();
    let returned = Returned {
        form: "device",
        values: &empty,
        problems: &problems,
    };
    sharing(api, session, None, Some(returned), err.status).await
}

async fn add_share(api: &Api, session: &Session, form: &Form) -> Response<Full<Bytes>> {
    let mut problems = Problems::default();
    let proto = form.get("proto").unwrap_or_default();
    if !matches!(proto, "tcp" | "udp") {
        problems
            .fields
            .insert("proto", "Choose TCP or UDP.".to_owned());
    }
    let internal = internal(form, &mut problems);
    let ipv6 = match form.get("ipv6_address").map(str::parse::<Ipv6Addr>) {
        None => None,
        Some(Ok(v6)) => Some(v6),
        Some(Err(_)) => {
            problems.fields.insert(
                "ipv6_address",
                "Enter an IPv6 address, like 2001:db8::20, or leave it empty.".to_owned(),
            );
            None
        }
    };
    let ext = form.get("external_port").unwrap_or_default();
    if ext.is_empty() {
        problems.fields.insert(
            "external_port",
            "Enter the external port, or a range like 27015-27030.".to_owned(),
        );
    }
    if problems.is_empty()
        && let Some((addr, port)) = internal
    {
        let mut body = object(&[
            ("proto", json!(proto)),
            ("external_port", json!(ext)),
            ("internal", json!(format!("{addr}:{port}"))),
            ("hairpin", json!(form.checked("hairpin"))),
        ]);
        if let Some(name) = form.get("name") {
            body.insert("name".into(), json!(name));
        }
        match call(api, "POST", "/api/v1/shares", "", body).await {
            Ok(_) => match ipv6 {
                None => return redirect("/?done=added"),
                Some(v6) => {
                    let mut body = object(&[
                        ("proto", json!(proto)),
                        ("internal", json!(format!("[{v6}]:{port}"))),
                    ]);
                    if let Some(name) = form.get("name") {
                        body.insert("name".into(), json!(name));
                    }
                    match call(api, "POST", "/api/v1/pinholes", "", body).await {
                        Ok(_) => return redirect("/?done=added"),
                        Err(err) => {
                            problems.general = Some(
                                "The IPv4 share was added; the IPv6 opening was not.".to_owned(),
                            );
                            problems.fields.insert("ipv6_address", explain(&err));
                        }
                    }
                }
            },
            Err(err) => place(&err, &mut problems),
        }
    }
    send_back(api, session, "add", form, &problems).await
}

/// The port-sharing page with form `name` sent back refused: what was typed, and why.
async fn send_back(
    api: &Api,
    session: &Session,
    name: &str,
    values: &Form,
    problems: &Problems,
) -> Response<Full<Bytes>> {
    let returned = Returned {
        form: name,
        values,
        problems,
    };
    sharing(
        api,
        session,
        None,
        Some(returned),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

async fn edit_share(api: &Api, session: &Session, form: &Form) -> Response<Full<Bytes>> {
    let id = form.value("id");
    let mut problems = Problems::default();
    let internal = internal(form, &mut problems);
    let ext = form.get("external_port").unwrap_or_default();
    if ext.is_empty() {
        problems
            .fields
            .insert("external_port", "Enter the external port.".to_owned());
    }
    if problems.is_empty()
        && let Some((addr, port)) = internal
    {
        // Only what the owner changed on the form (its `was_` fields hold the share as it
        // was shown): saving an untouched config-file share pins nothing, and a stale form
        // does not undo a switch made since.
        let changed = |key: &str, now: &str| {
            let was = format!("was_{key}");
            !form.checked(&was) || form.value(&was) != now
        };
        let flag = |key: &str| if form.checked(key) { "on" } else { "off" };
        let mut body = Map::new();
        let name = form.get("name").unwrap_or_default();
        if changed("name", name) {
            body.insert(
                "name".into(),
                if name.is_empty() {
                    Value::Null
                } else {
                    json!(name)
                },
            );
        }
        if changed("external_port", ext) {
            body.insert("external_port".into(), json!(ext));
        }
        if changed("internal_address", &addr.to_string())
            || changed("internal_port", &port.to_string())
        {
            body.insert("internal".into(), json!(format!("{addr}:{port}")));
        }
        for key in ["hairpin", "enabled"] {
            if changed(key, flag(key)) {
                body.insert(key.into(), json!(form.checked(key)));
            }
        }
        if body.is_empty() {
            return redirect("/?done=saved");
        }
        match call(
            api,
            "PATCH",
            &format!("/api/v1/shares/{}", escape(id)),
            "",
            body,
        )
        .await
        {
            Ok(_) => return redirect("/?done=saved"),
            Err(err) => place(&err, &mut problems),
        }
    }
    let frame = frame(api, session, None);
    html(
        StatusCode::UNPROCESSABLE_ENTITY,
        &views::edit(&frame, id, form, &problems),
    )
}

async fn settings(
    api: &Api,
    frame: &views::Frame<'_>,
    returned: Option<(&Form, &Problems)>,
) -> Result<maud::Markup, ApiError> {
    let current = read(api, "/api/v1/settings", "").await?;
    let status = read(api, "/api/v1/status", "").await?;
    let mut values = Form::default();
    for key in ["upnp_enabled", "secure_mode"] {
        if current[key] == true {
            values.set(key, "on");
        }
    }
    for key in ["quota_per_client", "quota_total"] {
        values.set(key, current[key].to_string());
    }
    let none = Problems::default();
    let (values, problems) = returned.unwrap_or((&values, &none));
    Ok(views::settings(
        frame,
        values,
        problems,
        &status["ddns"],
        status["wan"]["external_address"].as_str(),
    ))
}

async fn save_settings(api: &Api, session: &Session, form: &Form) -> Response<Full<Bytes>> {
    let mut problems = Problems::default();
    let mut body = object(&[
        ("upnp_enabled", json!(form.checked("upnp_enabled"))),
        ("secure_mode", json!(form.checked("secure_mode"))),
    ]);
    for key in ["quota_per_client", "quota_total"] {
        match form.get(key).map(str::parse::<u64>) {
            None => {}
            Some(Ok(n)) => {
                body.insert(key.into(), json!(n));
            }
            Some(Err(_)) => {
                problems.fields.insert(key, "Enter a number.".to_owned());
            }
        }
    }
    if problems.is_empty() {
        match call(api, "PATCH", "/api/v1/settings", "", body).await {
            Ok(_) => return redirect("/settings?done=settings"),
            Err(err) => place(&err, &mut problems),
        }
    }
    let frame = frame(api, session, None);
    match settings(api, &frame, Some((form, &problems))).await {
        Ok(markup) => html(StatusCode::UNPROCESSABLE_ENTITY, &markup),
        Err(err) => error_status(err.status, &err.message),
    }
}

/// The internal address and port of a share form.
fn internal(form: &Form, problems: &mut Problems) -> Option<(Ipv4Addr, u16)> {
    let addr = form.get("internal_address").map(str::parse::<Ipv4Addr>);
    let port = form.get("internal_port").map(str::parse::<u16>);
    if !matches!(addr, Some(Ok(_))) {
        problems.fields.insert(
            "internal_address",
            "Enter the device's IPv4 address, like 192.168.1.20.".to_owned(),
        );
    }
    if !matches!(port, Some(Ok(1..))) {
        problems
            .fields
            .insert("internal_port", "Enter a port from 1 to 65535.".to_owned());
    }
    match (addr, port) {
        (Some(Ok(addr)), Some(Ok(port @ 1..))) => Some((addr, port)),
        _ => None,
    }
}

/// Puts an API error next to the form field it names.
fn place(err: &ApiError, problems: &mut Problems) {
    let field = match (err.field, err.conflict) {
        (Some("internal"), _)
            if err.message.contains("port") && !err.message.contains("subnet") =>
        {
            "internal_port"
        }
        (Some("internal"), _) => "internal_address",
        (Some(field @ ("proto" | "name" | "quota_per_client" | "quota_total")), _) => field,
        (Some("external_port"), _) | (_, Some(_)) => "external_port",
        _ => {
            problems.general = Some(explain(err));
            return;
        }
    };
    problems.fields.insert(field, explain(err));
}

/// An API error in words for the page.
fn explain(err: &ApiError) -> String {
    let lead = match err.status {
        StatusCode::CONFLICT => "This port is taken: ",
        StatusCode::FORBIDDEN => "Not allowed: ",
        StatusCode::NOT_FOUND => "It is gone already: ",
        StatusCode::INSUFFICIENT_STORAGE => "There is no room for more: ",
        s if s.is_server_error() => "The box could not do it: ",
        _ => "",
    };
    if !lead.is_empty() {
        return format!("{lead}{}", err.message);
    }
    // The message alone starts the sentence.
    let mut chars = err.message.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A share as the edit form shows it.
fn share_form(share: &Value) -> Form {
    let mut form = Form::default();
    if let Some(name) = share["name"].as_str() {
        form.set("name", name);
    }
    form.set("external_port", views::external_ports(share));
    let internal = share["internal"].as_str().unwrap_or("");
    if let Some((addr, port)) = internal.rsplit_once(':') {
        form.set("internal_address", addr);
        form.set("internal_port", port);
    }
    for key in ["hairpin", "enabled"] {
        let on = share[key] == true;
        if on {
            form.set(key, "on");
        }
        form.set(&format!("was_{key}"), if on { "on" } else { "off" });
    }
    for key in ["name", "external_port", "internal_address", "internal_port"] {
        let value = form.value(key).to_owned();
        form.set(&format!("was_{key}"), value);
    }
    form
}

/// What a redirect's `done=` says happened.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "added" => "Share added.",
        "saved" => "Share saved.",
        "deleted" => "Deleted.",
        "enabled" => "Share switched on.",
        "disabled" => "Share switched off.",
        "permission" => "Permission changed.",
        "revoked" => "Independent sharing revoked for every device without shares.",
        "exposed" => "Exposed host set.",
        "cleared" => "Exposed host cleared.",
        "settings" => "Settings saved.",
        _ => return None,
    })
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], Vec::as_slice)
}

fn object(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
