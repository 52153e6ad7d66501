//! Unit tests of the table: the core with in-memory maps and a fake host, the owner task with
//! a paused clock, and the journal on a real directory.

mod admission;
mod changes;
mod durable;
mod properties;
mod ranges;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::*;
use crate::{
    dataplane::MemoryMaps,
    events::EventLog,
    host::{Host, WanStats},
    share::{Origin, Proto, ShareSpec},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

/// A host whose neighbours and listening ports a test sets.
#[derive(Default)]
struct FakeHost {
    listening: Mutex<Vec<(Option<Ipv4Addr>, u16)>>,
    macs: Mutex<Vec<(Ipv4Addr, [u8; 6])>>,
    macs6: Mutex<Vec<(Ipv6Addr, [u8; 6])>>,
}

impl Host for FakeHost {
    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        self.macs.lock().expect("lock").clone()
    }
    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
        self.macs6.lock().expect("lock").clone()
    }
    fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
        self.listening.lock().expect("lock").clone()
    }
    fn wan_up(&self) -> bool {
        true
    }
    fn wan_stats(&self) -> WanStats {
        WanStats::default()
    }
}

fn lan() -> Vec<LanSubnet> {
    vec![LanSubnet {
        addr: Ipv4Addr::new(10, 0, 0, 1),
        prefix_len: 24,
    }]
}

fn lan6() -> Vec<Prefix6> {
    vec![Prefix6 {
        addr: "2001:db8:77::1".parse().expect("addr"),
        prefix_len: 64,
    }]
}

/// A table with in-memory maps, a fake host and `settings`.
fn table_with(settings: Settings, host: Arc<FakeHost>) -> Table {
    Table::builder(lan(), Box::new(MemoryMaps::default()), host, 7, 8)
        .lan6(lan6())
        .settings(settings)
        .build(Instant::now())
        .expect("table")
}

fn new_table() -> Table {
    table_with(Settings::default(), Arc::default())
}

/// A table that records events.
fn armed() -> Table {
    let mut t = new_table();
    t.arm(EventLog::memory(100));
    t
}

fn memory(t: &Table) -> &MemoryMaps {
    t.maps()
        .as_any()
        .downcast_ref::<MemoryMaps>()
        .expect("in-memory maps")
}

fn spec(s: &str) -> ShareSpec {
    s.parse().expect("spec")
}

fn specs(list: &[&str]) -> Vec<ShareSpec> {
    list.iter().map(|s| spec(s)).collect()
}

fn kinds(t: &Table) -> Vec<&'static str> {
    t.events()
        .page(None, 100)
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

/// A UPnP AddPortMapping (`Hunt::Exact`) of `s` for `client` with a lease of `secs`.
fn upnp(s: &str, client: Ipv4Addr, secs: u32) -> Ask {
    Ask {
        origin: Origin::Upnp { client },
        mechanism: Mechanism::Upnp { v2: true },
        spec: spec(s),
        hunt: Hunt::Exact,
        lease: secs,
    }
}

/// Leases `s` for `client` as a UPnP client would, bypassing nothing: through admission.
fn lease(t: &mut Table, s: &str, client: Ipv4Addr, secs: u32) -> Result<Granted, TableError> {
    t.admit(upnp(s, client, secs))
}

fn entries(t: &Table) -> Vec<ShareEntry> {
    t.snapshot().entries(t.now).collect()
}

fn settings(toml_text: &str) -> Settings {
    toml::from_str::<crate::policy::UpnpConfig>(toml_text)
        .expect("toml")
        .compile()
        .expect("valid")
}

/// Seconds as a lease.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
