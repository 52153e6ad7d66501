//! "Port sharing", the first page: every device with its shares, the form to add one, the
//! exposed host.

use maud::{Markup, html};
use serde_json::Value;

use super::{
    Frame, Problems, Tab, button, bytes, checkbox, csrf, field, general, left, page, source, text,
};
use crate::page::form::{Form, escape};

/// What the page shows: the API's answers.
#[derive(Debug)]
pub struct Sharing<'a> {
    pub shares: &'a [Value],
    pub devices: &'a [Value],
    pub pinholes: &'a [Value],
    pub exposed: &'a Value,
    pub status: &'a Value,
}

/// A form sent back with what was typed and what is wrong with it.
#[derive(Clone, Copy, Debug)]
pub struct Returned<'a> {
    /// `add` or `exposed`.
    pub form: &'a str,
    pub values: &'a Form,
    pub problems: &'a Problems,
}

#[must_use]
pub fn sharing(frame: &Frame<'_>, data: &Sharing<'_>, returned: Option<Returned<'_>>) -> Markup {
    let empty = Form::default();
    let none = Problems::default();
    let (add_values, add_problems) = match returned {
        Some(r) if r.form == "add" => (r.values, r.problems),
        _ => (&empty, &none),
    };
    let (exposed_values, exposed_problems) = match returned {
        Some(r) if r.form == "exposed" => (r.values, r.problems),
        _ => (&empty, &none),
    };
    let body = html! {
        @if data.status["wan"]["link"] == "down" {
            p.warning role="status" {
                "The internet link is down: every share is off until it is back."
            }
        }
        @if let Some(r) = returned.filter(|r| r.form == "device") {
            (general(r.problems))
        }
        @if data.devices.is_empty() {
            p { "No device is known yet: add a share below, or wait for devices to talk on the LAN." }
        }
        @for device in data.devices {
            (device_section(frame, device, data))
        }
        section aria-labelledby="revoke-h" {
            h2 id="revoke-h" { "Independent sharing" }
            p { "Take back the permission to open ports (UPnP, NAT-PMP, PCP) from every device that has not opened any." }
            (button(frame, "/devices/revoke-unused", &[], "Revoke unused", "Revoke independent sharing for every device without shares"))
        }
        (add_form(frame, data, add_values, add_problems))
        (exposed_section(frame, data, exposed_values, exposed_problems))
    };
    page("Port sharing", Tab::Sharing, frame, &body)
}

fn device_section(frame: &Frame<'_>, device: &Value, data: &Sharing<'_>) -> Markup {
    let address = text(device, "address");
    let heading = format!("dev-{}", address.replace('.', "-"));
    let shares: Vec<&Value> = data
        .shares
        .iter()
        .filter(|s| text(s, "device") == address)
        .collect();
    let permission = text(device, "permission");
    let allowed = device["allowed"].as_bool() == Some(true);
    let setting = match (permission, allowed) {
        ("device", true) => "allow",
        ("device", false) => "deny",
        _ => "default",
    };
    html! {
        section.device aria-labelledby=(heading) {
            h2 id=(heading) {
                (address)
                @if let Some(mac) = device["mac"].as_str() { " " small { (mac) } }
            }
            p {
                "May open ports itself: "
                strong { @if allowed { "yes" } @else { "no" } }
                " (" (match setting { "allow" => "allowed for this device", "deny" => "denied for this device", _ => "the default" }) ")"
                " · opened by it: " (device["opened"].as_u64().unwrap_or(0))
            }
            form.inline method="post" action="/devices/permission" aria-label=(format!("Permission of {address}")) {
                (csrf(frame.csrf))
                input type="hidden" name="address" value=(address);
                @for (value, label) in [("allow", "Allow"), ("deny", "Deny"), ("default", "Default")] {
                    button type="submit" name="allowed" value=(value) aria-pressed=(if setting == value { "true" } else { "false" })
                        aria-label=(format!("{label} independent sharing for {address}")) { (label) }
                }
            }
            @if shares.is_empty() {
                p { "No shares." }
            } @else {
                div.scroll {
                    table {
                        caption.visually-hidden { "Shares of " (address) }
                        thead { tr {
                            th scope="col" { "On" } th scope="col" { "Name" } th scope="col" { "Protocol" }
                            th scope="col" { "IPv4 port" } th scope="col" { "IPv6" } th scope="col" { "Internal" }
                            th scope="col" { "Source" } th scope="col" { "Lease left" } th scope="col" { "Traffic" }
                            th scope="col" { "From the internet" } th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for share in &shares { (share_row(frame, share, data.pinholes)) }
                        }
                    }
                }
            }
        }
    }
}

fn share_row(frame: &Frame<'_>, share: &Value, pinholes: &[Value]) -> Markup {
    let id = text(share, "id");
    let name = share["name"].as_str().unwrap_or("");
    let label = if name.is_empty() { id } else { name };
    let enabled = share["enabled"].as_bool() == Some(true);
    let active = share["active"].as_bool() == Some(true);
    let ports = super::external_ports(share);
    let internal_port = text(share, "internal").rsplit(':').next().unwrap_or("");
    let v6: Vec<String> = pinholes
        .iter()
        .filter(|p| {
            p["proto"] == share["proto"] && internal_port.parse::<u64>().ok() == p["port"].as_u64()
        })
        .map(|p| format!("[{}]:{}", text(p, "address"), p["port"]))
        .collect();
    let c = &share["counters"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    html! {
        tr {
            td {
                span class=(if active { "led on" } else { "led off" }) aria-hidden="true" {}
                (if !enabled { "off" } else if active { "on" } else { "on, waiting" })
            }
            td { (name) }
            td { (text(share, "proto").to_uppercase()) }
            td {
                (ports)
                @if let Some(remote) = share["remote"].as_str() { br; small { "only from " (remote) } }
                @if share["hairpin"].as_bool() == Some(false) { br; small { "no hairpin" } }
            }
            td { @if v6.is_empty() { "—" } @else { (v6.join(", ")) } }
            td { (text(share, "internal")) }
            td {
                (source(share))
                @if let Some(client) = share["client"].as_str() { br; small { "by " (client) } }
            }
            td { (left(share["lease_remaining"].as_u64())) }
            td.traffic {
                "in " (n("packets_in")) " pkts, " (bytes(n("bytes_in")))
                br;
                "out " (n("packets_out")) " pkts, " (bytes(n("bytes_out")))
            }
            td {
                @match share["from_internet"].as_str() {
                    Some(reach) => code { (reach) },
                    None => "no external address yet",
                }
            }
            td.actions {
                @if enabled {
                    (button(frame, "/shares/disable", &[("id", id)], "Disable", &format!("Disable {label}")))
                } @else {
                    (button(frame, "/shares/enable", &[("id", id)], "Enable", &format!("Enable {label}")))
                }
                a href=(format!("/share?id={}", escape(id))) aria-label=(format!("Edit {label}")) { "Edit" }
                (button(frame, "/shares/delete", &[("id", id)], "Delete", &format!("Delete {label}")))
            }
        }
    }
}

fn add_form(frame: &Frame<'_>, data: &Sharing<'_>, values: &Form, problems: &Problems) -> Markup {
    let proto = values.get("proto").unwrap_or("tcp");
    let hairpin = values.checked("hairpin") || values == &Form::default();
    let port = super::FieldOpts {
        inputmode: Some("numeric"),
        required: true,
        ..super::FieldOpts::TEXT
    };
    html! {
        section #add aria-labelledby="add-h" {
            h2 id="add-h" { "Add share" }
            form.grid method="post" action="/shares/add" novalidate {
                (csrf(frame.csrf))
                (general(problems))
                div.field {
                    label for="add-proto" { "Protocol" }
                    select id="add-proto" name="proto" {
                        @for (value, label) in [("tcp", "TCP"), ("udp", "UDP")] {
                            option value=(value) selected[proto == value] { (label) }
                        }
                    }
                }
                (field("add-external", "external_port", "External port", values.value("external_port"), problems,
                    &super::FieldOpts { placeholder: Some("8080 or 27015-27030"), ..port }))
                (field("add-internal", "internal_address", "Internal address", values.value("internal_address"), problems,
                    &super::FieldOpts { list: Some("known-devices"), placeholder: Some("192.168.1.20"), required: true, ..super::FieldOpts::TEXT }))
                datalist id="known-devices" {
                    @for device in data.devices { option value=(text(device, "address")) {} }
                }
                (field("add-port", "internal_port", "Internal port", values.value("internal_port"), problems, &port))
                (field("add-name", "name", "Name", values.value("name"), problems, &super::FieldOpts::TEXT))
                (field("add-ipv6", "ipv6_address", "Also open for IPv6 at (optional)", values.value("ipv6_address"), problems,
                    &super::FieldOpts { placeholder: Some("2001:db8::20"), ..super::FieldOpts::TEXT }))
                (checkbox("add-hairpin", "hairpin", "Reachable from the LAN through the external address (hairpin)", hairpin))
                div.submit { button type="submit" { "Add share" } }
            }
        }
    }
}

fn exposed_section(
    frame: &Frame<'_>,
    data: &Sharing<'_>,
    values: &Form,
    problems: &Problems,
) -> Markup {
    let hosts: Vec<&str> = ["ipv4", "ipv6"]
        .iter()
        .filter_map(|family| data.exposed[*family].as_str())
        .collect();
    html! {
        section aria-labelledby="exposed-h" {
            h2 id="exposed-h" { "Exposed host" }
            p { "An exposed host gets everything from the internet that no share takes. Use it only for a device that is secured for it." }
            @if hosts.is_empty() {
                p { "No device is exposed." }
            }
            @for host in &hosts {
                p {
                    "Exposed: " strong { (host) } " "
                    (button(frame, "/exposed-host/clear", &[("address", host)], "Clear", &format!("Stop exposing {host}")))
                }
            }
            form.grid method="post" action="/exposed-host/set" novalidate {
                (csrf(frame.csrf))
                (general(problems))
                (field("exposed-address", "address", "Exposed host address", values.value("address"), problems,
                    &super::FieldOpts { list: Some("known-devices"), required: true, ..super::FieldOpts::TEXT }))
                div.submit { button type="submit" { "Expose" } }
            }
        }
    }
}
