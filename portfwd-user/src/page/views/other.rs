//! The other pages: login, a share's edit form, ports opened by applications, settings,
//! events and status.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::{
    FieldOpts, Frame, Problems, Tab, button, bytes, checkbox, csrf, field, general, head, left,
    page, source, text,
};
use crate::{events::EventKind, page::form::Form};

/// The login form; `error` after a wrong token.
#[must_use]
pub fn login(login_csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body {
                main id="main" .login {
                    h1 { "portfwd" }
                    p { "Log in with the API token. It is in the file " code { "api-token" } " in the state directory (" code { "sudo cat /var/lib/portfwd/api-token" } ")." }
                    form.whole-page method="post" action="/login" {
                        input type="hidden" name="login_csrf" value=(login_csrf);
                        div.field {
                            label for="token" { "Token" }
                            input id="token" name="token" type="password" autocomplete="current-password" required
                                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                            @if let Some(error) = error {
                                p.error id="token-error" role="alert" { (error) }
                            }
                        }
                        div.submit { button type="submit" { "Log in" } }
                    }
                }
            }
        }
    }
}

/// A share's edit form.
#[must_use]
pub fn edit(frame: &Frame<'_>, id: &str, values: &Form, problems: &Problems) -> Markup {
    let port = FieldOpts {
        inputmode: Some("numeric"),
        required: true,
        ..FieldOpts::TEXT
    };
    let body = html! {
        form.grid method="post" action="/shares/edit" novalidate {
            (csrf(frame.csrf))
            input type="hidden" name="id" value=(id);
            @for key in ["was_name", "was_external_port", "was_internal_address", "was_internal_port", "was_hairpin", "was_enabled"] {
                @if values.checked(key) {
                    input type="hidden" name=(key) value=(values.value(key));
                }
            }
            (general(problems))
            (field("edit-name", "name", "Name", values.value("name"), problems, &FieldOpts::TEXT))
            (field("edit-external", "external_port", "External port", values.value("external_port"), problems, &port))
            (field("edit-internal", "internal_address", "Internal address", values.value("internal_address"), problems,
                &FieldOpts { required: true, ..FieldOpts::TEXT }))
            (field("edit-port", "internal_port", "Internal port", values.value("internal_port"), problems, &port))
            (checkbox("edit-hairpin", "hairpin", "Reachable from the LAN through the external address (hairpin)", values.checked("hairpin")))
            (checkbox("edit-enabled", "enabled", "On", values.checked("enabled")))
            div.submit {
                button type="submit" { "Save" }
                " " a href="/" { "Cancel" }
            }
        }
    };
    page(&format!("Edit share {id}"), Tab::Sharing, frame, &body)
}

/// Ports opened by applications: UPnP, NAT-PMP and PCP shares, and IPv6 pinholes.
#[must_use]
pub fn apps(frame: &Frame<'_>, shares: &[Value], pinholes: &[Value]) -> Markup {
    let shares: Vec<&Value> = shares.iter().filter(|s| s["client"].is_string()).collect();
    let pinholes: Vec<&Value> = pinholes
        .iter()
        .filter(|p| p["client"].is_string())
        .collect();
    let body = html! {
        p { "Devices open these ports themselves, where the owner lets them (see Port sharing). Each ends with its lease." }
        @if shares.is_empty() && pinholes.is_empty() {
            p { "No application has opened a port." }
        } @else {
            div.scroll {
                table {
                    caption.visually-hidden { "Ports opened by applications" }
                    thead { tr {
                        th scope="col" { "Port" } th scope="col" { "Internal" } th scope="col" { "Name" }
                        th scope="col" { "Source" } th scope="col" { "Client" } th scope="col" { "Lease left" }
                        th scope="col" { "Traffic in" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for s in &shares {
                            @let id = text(s, "id");
                            tr {
                                td { (id) } td { (text(s, "internal")) } td { (s["name"].as_str().unwrap_or("")) }
                                td { (source(s)) } td { (text(s, "client")) }
                                td { (left(s["lease_remaining"].as_u64())) }
                                td { (bytes(s["counters"]["bytes_in"].as_u64().unwrap_or(0))) }
                                td { (button(frame, "/shares/delete", &[("id", id), ("return", "/apps")], "Delete", &format!("Delete {id}"))) }
                            }
                        }
                        @for p in &pinholes {
                            @let id = text(p, "id");
                            tr {
                                td { (id) } td { "[" (text(p, "address")) "]:" (p["port"]) } td { (p["name"].as_str().unwrap_or("")) }
                                td { (source(p)) " (IPv6)" } td { (text(p, "client")) }
                                td { (left(p["expires_in"].as_u64())) }
                                td { (bytes(p["counters"]["bytes_in"].as_u64().unwrap_or(0))) }
                                td { (button(frame, "/pinholes/delete", &[("id", id), ("return", "/apps")], "Delete", &format!("Delete {id}"))) }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Opened by applications", Tab::Apps, frame, &body)
}

/// The UPnP switch, secure mode, quotas, and what dynamic DNS last did.
#[must_use]
pub fn settings(
    frame: &Frame<'_>,
    values: &Form,
    problems: &Problems,
    ddns: &Value,
    external: Option<&str>,
) -> Markup {
    let number = FieldOpts {
        kind: "number",
        inputmode: Some("numeric"),
        ..FieldOpts::TEXT
    };
    let body = html! {
        section aria-labelledby="sharing-h" {
            h2 id="sharing-h" { "Independent sharing" }
            form.grid method="post" action="/settings" novalidate {
                (csrf(frame.csrf))
                (general(problems))
                (checkbox("set-upnp", "upnp_enabled", "Devices may open ports (UPnP, NAT-PMP, PCP)", values.checked("upnp_enabled")))
                (checkbox("set-secure", "secure_mode", "Secure mode: a device opens ports only to itself", values.checked("secure_mode")))
                (field("set-quota-client", "quota_per_client", "Ports one device may open", values.value("quota_per_client"), problems, &number))
                (field("set-quota-total", "quota_total", "Ports all devices may open together", values.value("quota_total"), problems, &number))
                div.submit { button type="submit" { "Save settings" } }
            }
        }
        section aria-labelledby="ddns-h" {
            h2 id="ddns-h" { "Dynamic DNS" }
            @if ddns.is_null() {
                p { "Not set up. The " code { "[ddns]" } " section of the config file names the DNS server, the name and its key; shares are then shown under that name." }
                p { "Shares are called at the external address: " strong { (external.unwrap_or("none yet")) } }
            } @else {
                dl {
                    dt { "Name" } dd { (text(ddns, "name")) }
                    dt { "Server" } dd { (text(ddns, "server")) }
                    dt { "Address published" } dd { (ddns["address"].as_str().unwrap_or("none yet")) }
                    dt { "Last result" } dd { (ddns["result"].as_str().unwrap_or("not tried yet")) }
                }
                p { "Set in the " code { "[ddns]" } " section of the config file." }
            }
        }
    };
    page("Settings", Tab::Settings, frame, &body)
}

/// The event log, newest first, of one kind or all.
#[must_use]
pub fn events(frame: &Frame<'_>, events: &[Value], kind: Option<&str>) -> Markup {
    let body = html! {
        form.inline method="get" action="/events" {
            label for="kind" { "Kind" }
            " "
            select id="kind" name="kind" {
                option value="" selected[kind.is_none()] { "all" }
                @for k in EventKind::ALL {
                    option value=(k.name()) selected[kind == Some(k.name())] { (k.name().replace('_', " ")) }
                }
            }
            " "
            button type="submit" { "Show" }
        }
        @if events.is_empty() {
            p { "No events." }
        } @else {
            div.scroll {
                table {
                    caption.visually-hidden { "Events, newest first" }
                    thead { tr { th scope="col" { "Time" } th scope="col" { "What" } th scope="col" { "By" } th scope="col" { "Share" } th scope="col" { "Detail" } } }
                    tbody {
                        @for e in events {
                            tr {
                                td { time datetime=(text(e, "at")) { (text(e, "at").replace('T', " ")) } }
                                td { (text(e, "kind").replace('_', " ")) }
                                td { (text(e, "source")) }
                                td { (e["share"].as_str().unwrap_or("")) }
                                td { (text(e, "detail")) }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Events", Tab::Events, frame, &body)
}

/// The WAN link and address, the XDP modes, uptime and version.
#[must_use]
pub fn status(frame: &Frame<'_>, status: &Value) -> Markup {
    let wan = &status["wan"];
    let lan = &status["lan"];
    let uptime = status["uptime_secs"].as_u64().unwrap_or(0);
    let body = html! {
        dl {
            dt { "Internet link" } dd { (text(wan, "link")) " on " (text(wan, "interface")) }
            @if let Some(since) = wan["down_since"].as_str() { dt { "Down since" } dd { (since) } }
            dt { "External address" } dd { (wan["external_address"].as_str().unwrap_or("none")) }
            dt { "LAN" } dd { (text(lan, "address")) " on " (text(lan, "interface")) }
            dt { "XDP mode" } dd { "WAN " (text(wan, "xdp_mode")) ", LAN " (text(lan, "xdp_mode")) }
            dt { "Shares" } dd { (status["shares"]["active"]) " active of " (status["shares"]["total"]) }
            dt { "UPnP" } dd { (if status["upnp"]["enabled"] == true { "on" } else { "off" }) " · " (text(&status["upnp"], "url")) }
            dt { "Uptime" } dd { (left(Some(uptime))) }
            dt { "Version" } dd { (text(status, "version")) }
        }
    };
    page("Status", Tab::Status, frame, &body)
}
