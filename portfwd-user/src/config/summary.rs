//! What `portfwd check-config` prints: the configuration the daemon would run with, every
//! setting with its value (defaults included), in the order of the file.

use std::fmt::Write as _;

use super::{Config, Inbound6, XdpMode};
use crate::{
    ddns::Protocol,
    policy::{Device, Rule},
};

fn on(flag: bool) -> &'static str {
    if flag { "on" } else { "off" }
}

fn range(r: &std::ops::RangeInclusive<u16>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

fn rule(rule: &Rule) -> String {
    format!(
        "{} external ports {} to internal ports {} for clients {}",
        if rule.allow { "allow" } else { "deny" },
        range(&rule.external_ports),
        range(&rule.internal_ports),
        rule.clients,
    )
}

fn device(device: Device) -> String {
    match device {
        Device::Addr(cidr) if cidr.prefix_len == 32 => cidr.addr.to_string(),
        Device::Addr(cidr) => cidr.to_string(),
        Device::Mac(mac) => mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// The configuration as a person reads it.
#[must_use]
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let mode = match config.xdp_mode {
        XdpMode::Auto => "auto (native, generic where the driver refuses)",
        XdpMode::Native => "native",
        XdpMode::Skb => "skb (generic)",
    };
    let _ = writeln!(out, "interfaces   wan {}, lan {}", config.wan, config.lan);
    let _ = writeln!(out, "xdp mode     {mode}");
    let _ = writeln!(out, "state        {}", config.state_dir.display());
    let _ = writeln!(
        out,
        "log level    {}",
        config.log_level.as_deref().unwrap_or("info (default)")
    );
    let _ = writeln!(out, "shares       {}", config.shares.len());
    for share in &config.shares {
        let _ = write!(out, "  {} -> {}", share.id, share.internal);
        if let Some(name) = &share.name {
            let _ = write!(out, " \"{name}\"");
        }
        if !share.enabled {
            out.push_str(" (disabled: kept, not forwarded)");
        }
        if !share.hairpin {
            out.push_str(" (not reached through the external address from the LAN)");
        }
        out.push('\n');
    }
    let exposed = config.upnp.exposed;
    match (exposed.v4, exposed.v6) {
        (None, None) => {
            let _ = writeln!(
                out,
                "exposed host none: only the shares above, and what LAN clients open, are forwarded"
            );
        }
        (v4, v6) => {
            let show = |a: Option<String>| a.unwrap_or_else(|| "none".to_owned());
            let _ = writeln!(
                out,
                "exposed host ipv4 {}, ipv6 {}: what no share claims goes there (the box's own services excepted)",
                show(v4.map(|a| a.to_string())),
                show(v6.map(|a| a.to_string()))
            );
        }
    }
    let _ = writeln!(
        out,
        "hairpin      {}",
        if config.hairpin {
            "on: LAN hosts reach shares through the external address, from the box's LAN address"
        } else {
            "off: shares are reached from the internet only"
        }
    );
    upnp(&mut out, config);
    let _ = writeln!(
        out,
        "ipv6         inbound {}",
        match config.ipv6_inbound {
            Inbound6::Pass => "pass (without a pinhole, the kernel's firewall decides)",
            Inbound6::Deny => "deny (new TCP connections without a pinhole are dropped)",
        }
    );
    api(&mut out, config);
    if let Some(ddns) = &config.ddns {
        ddns_line(&mut out, ddns);
    }
    out
}

/// `[ddns]`: the name, where it is updated and how; never the key or the password.
fn ddns_line(out: &mut String, ddns: &crate::ddns::Ddns) {
    let how = match &ddns.protocol {
        Protocol::Rfc2136(server) => format!(
            "in {} at {} (RFC 2136, TSIG key {})",
            server.zone, server.addr, server.key.name
        ),
        Protocol::Dyndns2(account) => format!(
            "at {} (dyndns2 over {}, user {})",
            account.url,
            if account.url.tls {
                "https"
            } else {
                "plain http: the password crosses the network readable"
            },
            account.username
        ),
    };
    let _ = writeln!(
        out,
        "ddns         {} {how}, every {} s and on each change",
        ddns.name,
        ddns.interval.as_secs()
    );
}

/// `[upnp]`, its rules and `[pcp]`.
fn upnp(out: &mut String, config: &Config) {
    let u = &config.upnp;
    let _ = writeln!(
        out,
        "upnp         {}: IGD:{} on port {}, secure mode {}, leases {}, quotas {} per client / {} in all, ssdp:alive every {} s",
        if u.enabled {
            "on"
        } else {
            "off (clients may read, change nothing)"
        },
        u.igd_version.number(),
        u.port,
        on(u.secure_mode),
        u.max_lease.map_or_else(
            || "uncapped (IGD:2 at most a week)".to_owned(),
            |d| format!("at most {} s", d.as_secs())
        ),
        u.limits.per_client,
        u.limits.total,
        u.notify_interval.as_secs(),
    );
    let devices = u.devices.as_ref().map_or_else(
        || "every LAN host".to_owned(),
        |list| {
            list.iter()
                .copied()
                .map(device)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    let _ = writeln!(out, "  devices    {devices}");
    for (i, r) in u.rules.iter().enumerate() {
        let _ = writeln!(out, "  rule {}     {}", i + 1, rule(r));
    }
    let _ = writeln!(
        out,
        "  ports not matched by a rule are refused{}",
        if u.rules == crate::policy::default_rules() {
            " (default rule: ports below 1024 stay the owner's)"
        } else {
            ""
        }
    );
    let p = &u.pcp;
    let _ = writeln!(
        out,
        "nat-pmp/pcp  {}, third party {}, lifetimes {}-{} s{}",
        on(p.enabled),
        on(p.third_party),
        p.min_lifetime,
        p.max_lifetime,
        u.max_lease
            .map_or_else(String::new, |d| format!(" (capped at {} s)", d.as_secs())),
    );
}

/// `[api]` and `[wan_link]`.
fn api(out: &mut String, config: &Config) {
    let _ = writeln!(
        out,
        "api          {}{}, /metrics {}",
        config.api.listen,
        if config.api.listen.ip().is_loopback() {
            " (this box only)"
        } else {
            " (beyond this box: keep it off the WAN)"
        },
        if config.api.metrics_auth {
            "needs the token"
        } else {
            "open to whoever reaches the API"
        },
    );
    if let Some(webhook) = &config.api.webhook {
        let _ = writeln!(out, "  webhook    {webhook}");
    }
    let _ = writeln!(
        out,
        "wan link     outages under {} s are one event",
        config.flap_window.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::super::{Overrides, parse};
    use super::*;

    #[test]
    fn names_every_share_rule_and_setting() {
        let dir = std::env::temp_dir().join(format!("portfwd-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("portfwd.toml");
        let text = "wan = \"eth0\"\nlan = \"eth1\"\n[[share]]\nname = \"web\"\nproto = \"tcp\"\nexternal_port = 8080\ninternal = \"192.168.1.10:80\"\n[[share]]\nproto = \"udp\"\nexternal_port = 27015\ninternal = \"192.168.1.20:27015\"\nremote = \"198.51.100.7\"\nenabled = false\n[upnp]\nsecure_mode = false\ndevices = [\"192.168.1.64/28\", \"02:11:22:33:44:55\"]\n[[upnp.rule]]\naction = \"deny\"\nexternal_ports = \"6000-6999\"\n[pcp]\nenabled = false\n";
        parse(text).expect("valid");
        std::fs::write(&path, text).expect("write");
        let config = Config::load(Overrides {
            file: Some(path),
            ..Overrides::default()
        })
        .expect("valid");
        let text = summary(&config);
        for expected in [
            "wan eth0, lan eth1",
            "tcp:8080 -> 192.168.1.10:80 \"web\"",
            "udp:27015@198.51.100.7 -> 192.168.1.20:27015 (disabled",
            "secure mode off",
            "devices    192.168.1.64/28, 02:11:22:33:44:55",
            "rule 1     deny external ports 6000-6999 to internal ports 1-65535 for clients 0.0.0.0/0",
            "nat-pmp/pcp  off",
            "api          127.0.0.1:9780 (this box only)",
            "exposed host none",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn ddns_says_where_and_how_and_never_the_secret() {
        let dir = std::env::temp_dir().join(format!("portfwd-summary-ddns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("portfwd.toml");
        for (section, expected) in [
            (
                "provider = \"rfc2136\"\nserver = \"198.51.100.53\"\nzone = \"example.test\"\nname = \"home.example.test\"\nkey_name = \"portfwd\"\nkey_secret = \"c2VjcmV0IHNlY3JldA==\"\n",
                "ddns         home.example.test in example.test at 198.51.100.53:53 (RFC 2136, TSIG key portfwd), every 3600 s",
            ),
            (
                "provider = \"dyndns2\"\nserver = \"https://members.dyndns.org\"\nname = \"home.dyndns.test\"\nusername = \"owner\"\npassword = \"c2VjcmV0IHNlY3JldA==\"\ninterval = 600\n",
                "ddns         home.dyndns.test at https://members.dyndns.org/nic/update (dyndns2 over https, user owner), every 600 s",
            ),
        ] {
            std::fs::write(
                &path,
                format!("wan = \"eth0\"\nlan = \"eth1\"\n[ddns]\n{section}"),
            )
            .expect("write");
            let config = Config::load(Overrides {
                file: Some(path.clone()),
                ..Overrides::default()
            })
            .expect("valid");
            let text = summary(&config);
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
            assert!(!text.contains("c2VjcmV0"), "{text}");
            assert!(!format!("{config:?}").contains("c2VjcmV0"), "{config:?}");
        }
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
