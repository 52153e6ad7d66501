//! What the CLI prints for people: tables and summaries of the API's JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

pub(super) fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// `tcp:8080 -> 10.0.0.10:80 "web"`.
pub(super) fn share_line(share: &Value) -> String {
    let mut line = format!(
        "{} -> {}",
        share["id"].as_str().unwrap_or("?"),
        share["internal"].as_str().unwrap_or("?")
    );
    if let Some(name) = share["name"].as_str() {
        let _ = write!(line, " \"{name}\"");
    }
    if share["enabled"] == json!(false) {
        line.push_str(" (disabled)");
    }
    line
}

/// Rows as aligned columns, the first row the header.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn shares_table(list: &Value) -> String {
    let shares = list["shares"].as_array().cloned().unwrap_or_default();
    let pinholes = list["pinholes"].as_array().cloned().unwrap_or_default();
    if shares.is_empty() && pinholes.is_empty() {
        return "no shares\n".to_owned();
    }
    let mut rows = vec![
        [
            "SHARE",
            "TARGET",
            "NAME",
            "SOURCE",
            "STATE",
            "LEASE",
            "IN",
            "OUT",
            "FROM THE INTERNET",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in &shares {
        let state = match (s["enabled"].as_bool(), s["active"].as_bool()) {
            (Some(false), _) => "disabled",
            (_, Some(false)) => "inactive",
            _ => "active",
        };
        let source = match (s["source"].as_str(), s["client"].as_str()) {
            (Some(source), Some(client)) => format!("{source} {client}"),
            (Some("static"), None) if s["from_config"] == json!(true) => "config".to_owned(),
            (Some(source), None) => source.to_owned(),
            _ => "?".to_owned(),
        };
        let lease = s["lease_remaining"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |secs| format!("{secs}s"));
        let c = &s["counters"];
        rows.push(vec![
            text(&s["id"]),
            text(&s["internal"]),
            text(&s["name"]),
            source,
            state.to_owned(),
            lease,
            format!("{}p/{}B", text(&c["packets_in"]), text(&c["bytes_in"])),
            format!("{}p/{}B", text(&c["packets_out"]), text(&c["bytes_out"])),
            text(&s["from_internet"]),
        ]);
    }
    for p in &pinholes {
        let state = match (p["enabled"].as_bool(), p["active"].as_bool()) {
            (Some(false), _) => "disabled",
            (_, Some(false)) => "inactive",
            _ => "active",
        };
        let c = &p["counters"];
        rows.push(vec![
            text(&p["id"]),
            match p["remote"].as_str() {
                Some(remote) => format!("IPv6, from {remote}"),
                None => "IPv6".to_owned(),
            },
            text(&p["name"]),
            text(&p["source"]),
            state.to_owned(),
            "-".to_owned(),
            format!("{}p/{}B", text(&c["packets_in"]), text(&c["bytes_in"])),
            format!("{}p/{}B", text(&c["packets_out"]), text(&c["bytes_out"])),
            // A pinhole is called by the host's own address.
            format!("[{}]:{}", text(&p["address"]), text(&p["port"])),
        ]);
    }
    table(&rows)
}

pub(super) fn devices_table(list: &Value) -> String {
    let devices = list["devices"].as_array().cloned().unwrap_or_default();
    if devices.is_empty() {
        return "no devices known\n".to_owned();
    }
    let mut rows = vec![
        ["DEVICE", "MAC", "MAY SHARE", "BY", "SHARES", "OPENED"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for d in &devices {
        let shares: Vec<&str> = d["shares"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        rows.push(vec![
            text(&d["address"]),
            text(&d["mac"]),
            if d["allowed"] == json!(true) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            text(&d["permission"]),
            if shares.is_empty() {
                "-".to_owned()
            } else {
                shares.join(",")
            },
            text(&d["opened"]),
        ]);
    }
    table(&rows)
}

pub(super) fn status_text(s: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "portfwd {}, up {} s",
        text(&s["version"]),
        text(&s["uptime_secs"])
    );
    let wan = &s["wan"];
    let _ = write!(
        out,
        "wan  {} link {}, external address {}, XDP {} (program {})",
        text(&wan["interface"]),
        text(&wan["link"]),
        text(&wan["external_address"]),
        text(&wan["xdp_mode"]),
        text(&wan["program_id"])
    );
    if let Some(since) = wan["down_since"].as_str() {
        let _ = write!(out, ", down since {since}");
    }
    out.push('\n');
    let lan = &s["lan"];
    let _ = writeln!(
        out,
        "lan  {} {}, XDP {} (program {})",
        text(&lan["interface"]),
        text(&lan["address"]),
        text(&lan["xdp_mode"]),
        text(&lan["program_id"])
    );
    let shares = &s["shares"];
    let _ = write!(
        out,
        "shares {} ({} active)",
        text(&shares["total"]),
        text(&shares["active"]),
    );
    if let Some(by_source) = shares["by_source"].as_object().filter(|m| !m.is_empty()) {
        let parts: Vec<String> = by_source
            .iter()
            .map(|(source, n)| format!("{} {source}", text(n)))
            .collect();
        let _ = write!(out, ": {}", parts.join(", "));
    }
    out.push('\n');
    let upnp = &s["upnp"];
    let _ = writeln!(
        out,
        "upnp {} at {}",
        if upnp["enabled"] == json!(true) {
            "on"
        } else {
            "off"
        },
        text(&upnp["url"])
    );
    let ddns = &s["ddns"];
    if ddns.is_object() {
        let _ = writeln!(
            out,
            "ddns {} at {}: {} ({})",
            text(&ddns["name"]),
            text(&ddns["server"]),
            or_none(&ddns["address"]),
            text(&ddns["result"])
        );
    }
    let exposed = &s["exposed_host"];
    let _ = writeln!(
        out,
        "exposed host ipv4 {}, ipv6 {}",
        or_none(&exposed["ipv4"]),
        or_none(&exposed["ipv6"])
    );
    out
}

fn or_none(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| "none".to_owned(), ToOwned::to_owned)
}

/// `portfwd exposed-host`: each family's exposed host and its counters.
pub(super) fn exposed_text(e: &Value) -> String {
    let mut out = String::new();
    for family in ["ipv4", "ipv6"] {
        let c = &e["counters"][family];
        let _ = writeln!(
            out,
            "{family} {}  in {} packets {} bytes, out {} packets {} bytes",
            or_none(&e[family]),
            text(&c["packets_in"]),
            text(&c["bytes_in"]),
            text(&c["packets_out"]),
            text(&c["bytes_out"])
        );
    }
    out
}

pub(super) fn settings_text(s: &Value) -> String {
    let mut out = String::new();
    for key in [
        "upnp_enabled",
        "secure_mode",
        "quota_per_client",
        "quota_total",
        "igd_version",
        "max_lease",
        "new_devices",
    ] {
        let _ = writeln!(out, "{key:<17} {}", text(&s[key]));
    }
    out
}
