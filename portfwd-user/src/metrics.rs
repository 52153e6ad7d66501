//! Prometheus metrics, in the text exposition format (prometheus-client).
//!
//! Two kinds: counters the control plane bumps as things happen ([`Metrics`], shared with the
//! servers), and values read at scrape time from the share table and the kernel ([`Snapshot`]):
//! the per-share counters (per-CPU map, summed), the programs' verdict counters, shares by
//! source, the WAN link. Every label set is bounded: one per share (the table holds at most
//! `MAX_SHARES`), per verdict and interface, per known action and result code.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `portfwd_build_info` | info | `version` |
//! | `portfwd_share_packets_total`, `portfwd_share_bytes_total` | counter | `share`, `internal`, `source`, `direction` (`in`: WAN to LAN host, `out`: its replies) |
//! | `portfwd_share_active` | gauge | `share`, `internal`, `source` |
//! | `portfwd_shares` | gauge | `source` |
//! | `portfwd_xdp_packets_total` | counter | `interface`, `verdict` |
//! | `portfwd_control_requests_total` | counter | `protocol`, `action`, `result` (`ok` or the error code) |
//! | `portfwd_lease_expirations_total` | counter | |
//! | `portfwd_external_address_changes_total` | counter | |
//! | `portfwd_wan_link_changes_total` | counter | |
//! | `portfwd_wan_link_up` | gauge | |
//! | `portfwd_events_total` | counter | `kind` |
//! | `portfwd_uptime_seconds` | gauge | |

use portfwd_common::Verdict;
use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

use crate::events::EventKind;

/// Counts of what happened to the table, kept by it and exported here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub lease_expirations: u64,
    pub external_changes: u64,
    pub wan_link_changes: u64,
}

/// The content type of the OpenMetrics text [`render`] makes (what Prometheus asks for first).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text format [`classic`] makes (for everything else:
/// `curl`, `promtool check metrics`, older scrapers).
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The classic Prometheus text format (0.0.4) of an OpenMetrics text: counter families take
/// their samples' `_total` name, info families become gauges named `_info`, and the `# EOF`
/// and `# UNIT` lines go.
#[must_use]
pub fn classic(openmetrics: &str) -> String {
    let mut renamed = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => renamed.insert(name, (format!("{name}_total"), "counter")),
                "info" => renamed.insert(name, (format!("{name}_info"), "gauge")),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some(keyword @ ("HELP" | "TYPE")), Some(name), rest) => {
                if let Some((new_name, new_kind)) = renamed.get(name) {
                    let rest = if keyword == "TYPE" {
                        *new_kind
                    } else {
                        rest.unwrap_or("")
                    };
                    let _ = write!(out, "# {keyword} {new_name} {rest}");
                } else {
                    out.push_str(line);
                }
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    action: &'static str,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: &'static str,
}

/// Counters bumped as requests are answered and events recorded.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    events: Family<EventLabels, Counter>,
}

impl Metrics {
    /// Counts a control-plane request: `action` is one of the protocol's known actions (or
    /// `unknown`), `result` is `ok` or the error code.
    pub fn request(&self, protocol: &'static str, action: &'static str, result: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                protocol,
                action,
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts an event.
    pub fn event(&self, kind: EventKind) {
        self.events
            .get_or_create(&EventLabels { kind: kind.name() })
            .inc();
    }
}

/// One share at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSample {
    /// Its id, `tcp:8080`.
    pub share: String,
    /// Its internal endpoint.
    pub internal: String,
    /// Where it came from (`static`, `upnp`, `natpmp`, `pcp`).
    pub source: &'static str,
    pub stats: portfwd_common::ShareStats,
    pub active: bool,
}

/// What a scrape reads from the table and the kernel.
pub struct Snapshot<'a> {
    pub shares: &'a [ShareSample],
    /// Shares by source.
    pub by_source: &'a std::collections::BTreeMap<&'static str, usize>,
    pub counters: Counters,
    pub wan_up: bool,
    /// Per-direction verdict counters, the WAN program's first.
    pub verdicts: &'a [[u64; portfwd_common::VERDICT_COUNT as usize]; 2],
    /// The interfaces of the WAN and LAN programs, in `verdicts` order.
    pub interfaces: [&'a str; 2],
    pub uptime_secs: u64,
    /// The exposed hosts' counters: IPv4, IPv6.
    pub exposed: [portfwd_common::ShareStats; 2],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShareLabels {
    share: String,
    internal: String,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShareDirLabels {
    share: String,
    internal: String,
    source: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExposedLabels {
    family: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    interface: String,
    verdict: &'static str,
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

/// The exposition text for one scrape.
#[must_use]
#[expect(
    clippy::too_many_lines,
    reason = "one registration after another, in the order the table above lists them"
)]
pub fn render(metrics: &Metrics, snapshot: &Snapshot<'_>) -> String {
    let mut registry = Registry::with_prefix("portfwd");
    registry.register(
        "build",
        "The portfwd build",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register(
        "uptime_seconds",
        "Seconds since the daemon started",
        gauge(snapshot.uptime_secs),
    );

    let packets = Family::<ShareDirLabels, Counter>::default();
    let bytes = Family::<ShareDirLabels, Counter>::default();
    let active = Family::<ShareLabels, Gauge>::default();
    for view in snapshot.shares {
        let labels = ShareLabels {
            share: view.share.clone(),
            internal: view.internal.clone(),
            source: view.source,
        };
        let with = |direction| ShareDirLabels {
            share: labels.share.clone(),
            internal: labels.internal.clone(),
            source: labels.source,
            direction,
        };
        let stats = view.stats;
        packets.get_or_create(&with("in")).inc_by(stats.packets_in);
        packets
            .get_or_create(&with("out"))
            .inc_by(stats.packets_out);
        bytes.get_or_create(&with("in")).inc_by(stats.bytes_in);
        bytes.get_or_create(&with("out")).inc_by(stats.bytes_out);
        active.get_or_create(&labels).set(i64::from(view.active));
    }
    registry.register(
        "share_packets",
        "Packets rewritten for a share, per direction (in: from the WAN to the LAN host)",
        packets,
    );
    registry.register(
        "share_bytes",
        "IP bytes of the packets rewritten for a share, per direction",
        bytes,
    );
    registry.register(
        "share_active",
        "1 if the share is in the data plane (enabled and the WAN link is up)",
        active,
    );

    let by_source = Family::<SourceLabels, Gauge>::default();
    for source in ["static", "upnp", "natpmp", "pcp"] {
        let count = snapshot.by_source.get(source).copied().unwrap_or(0);
        by_source
            .get_or_create(&SourceLabels { source })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    registry.register("shares", "Shares in the table, by source", by_source);

    let verdicts = Family::<VerdictLabels, Counter>::default();
    for (interface, counts) in snapshot.interfaces.iter().zip(snapshot.verdicts) {
        for (verdict, count) in Verdict::ALL.iter().zip(counts) {
            verdicts
                .get_or_create(&VerdictLabels {
                    interface: (*interface).to_owned(),
                    verdict: verdict.name(),
                })
                .inc_by(*count);
        }
    }
    let exposed_packets = Family::<ExposedLabels, Counter>::default();
    let exposed_bytes = Family::<ExposedLabels, Counter>::default();
    for (family, stats) in ["ipv4", "ipv6"].into_iter().zip(snapshot.exposed) {
        for (direction, packets, bytes) in [
            ("in", stats.packets_in, stats.bytes_in),
            ("out", stats.packets_out, stats.bytes_out),
        ] {
            let labels = ExposedLabels { family, direction };
            exposed_packets.get_or_create(&labels).inc_by(packets);
            exposed_bytes.get_or_create(&labels).inc_by(bytes);
        }
    }
    registry.register(
        "exposed_host_packets",
        "Packets forwarded to and from the exposed host, per address family and direction",
        exposed_packets,
    );
    registry.register(
        "exposed_host_bytes",
        "IP bytes forwarded to and from the exposed host, per address family and direction",
        exposed_bytes,
    );

    registry.register(
        "xdp_packets",
        "Packets seen by the XDP program of an interface, by what it did with them",
        verdicts,
    );

    registry.register(
        "control_requests",
        "Requests of LAN clients (UPnP, NAT-PMP, PCP) by action and result",
        metrics.requests.clone(),
    );
    for kind in EventKind::ALL {
        // Every kind shows, at 0 until it happens: rate() needs the series to exist.
        drop(
            metrics
                .events
                .get_or_create(&EventLabels { kind: kind.name() }),
        );
    }
    registry.register(
        "events",
        "Events recorded in the event log, by kind",
        metrics.events.clone(),
    );
    let counters = snapshot.counters;
    registry.register(
        "lease_expirations",
        "Leased shares removed because their lease ran out",
        counter(counters.lease_expirations),
    );
    registry.register(
        "external_address_changes",
        "Changes of the WAN interface's external address",
        counter(counters.external_changes),
    );
    registry.register(
        "wan_link_changes",
        "Times the WAN link went up or down",
        counter(counters.wan_link_changes),
    );
    registry.register(
        "wan_link_up",
        "1 while the WAN link is up",
        gauge(u64::from(snapshot.wan_up)),
    );

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use portfwd_common::ShareStats;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let metrics = Metrics::default();
        metrics.request("upnp", "AddPortMapping", "ok");
        metrics.request("upnp", "AddPortMapping", "718");
        metrics.event(EventKind::ShareCreated);
        let shares = vec![ShareSample {
            share: "tcp:8080".into(),
            internal: "10.0.0.10:80".into(),
            source: "static",
            stats: ShareStats {
                packets_in: 3,
                bytes_in: 180,
                packets_out: 2,
                bytes_out: 120,
            },
            active: true,
        }];
        let by_source = [("static", 1)].into();
        let text = render(
            &metrics,
            &Snapshot {
                shares: &shares,
                by_source: &by_source,
                counters: Counters {
                    lease_expirations: 4,
                    ..Counters::default()
                },
                wan_up: true,
                verdicts: &[[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]],
                interfaces: ["wan0", "lan0"],
                uptime_secs: 9,
                exposed: [
                    ShareStats {
                        packets_in: 7,
                        ..ShareStats::default()
                    },
                    ShareStats::default(),
                ],
            },
        );
        for line in [
            r#"portfwd_share_packets_total{share="tcp:8080",internal="10.0.0.10:80",source="static",direction="in"} 3"#,
            r#"portfwd_share_bytes_total{share="tcp:8080",internal="10.0.0.10:80",source="static",direction="out"} 120"#,
            r#"portfwd_shares{source="upnp"} 0"#,
            r#"portfwd_xdp_packets_total{interface="lan0",verdict="not_matched"} 11"#,
            r#"portfwd_xdp_packets_total{interface="wan0",verdict="answered"} 6"#,
            r#"portfwd_exposed_host_packets_total{family="ipv4",direction="in"} 7"#,
            r#"portfwd_control_requests_total{protocol="upnp",action="AddPortMapping",result="718"} 1"#,
            r#"portfwd_events_total{kind="share_created"} 1"#,
            r#"portfwd_events_total{kind="wan_flap"} 0"#,
            "portfwd_lease_expirations_total 4",
            "portfwd_wan_link_up 1",
            r#"portfwd_build_info{version=""#,
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        let old = classic(&text);
        for line in [
            "# TYPE portfwd_share_packets_total counter",
            "# HELP portfwd_share_packets_total Packets rewritten",
            "# TYPE portfwd_build_info gauge",
            r#"portfwd_build_info{version=""#,
            "# TYPE portfwd_wan_link_up gauge",
        ] {
            assert!(old.contains(line), "missing {line} in:\n{old}");
        }
        assert!(!old.contains("# EOF") && !old.contains(" info\n"), "{old}");
    }
}
