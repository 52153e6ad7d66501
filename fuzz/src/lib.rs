//! What the fuzz targets share: a box to ask (a quiet [`Host`]), a share table over in-memory
//! maps like the unit tests', and a runtime whose clock is paused, so a request that waits (a
//! long poll, a lease, a header timeout) ends at once instead of stalling the fuzzer.
//!
//! Every input starts from a pristine table, so a crash reproduces from its input alone; the
//! table (with its task) is kept for the next input unless the input changed it, because
//! building one per input would cost more than most inputs do.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Instant,
};

use portfwd::{
    dataplane::MemoryMaps,
    host::{Host, WanStats},
    pinhole::Prefix6,
    policy::Settings,
    share::{LanSubnet, Proto},
    table::{Table, TableHandle},
};

/// The router's LAN address; the LAN is `10.0.0.0/24` and `2001:db8:77::/64`.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The LAN client the requests come from.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x10);
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The owner's static share every table starts with.
pub const STATIC_SHARE: &str = "tcp:8080=10.0.0.20:80";

/// A box that listens on TCP and UDP 6500, knows the client's MAC over both families, and
/// whose WAN link is up.
pub struct Quiet;

impl Host for Quiet {
    fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        vec![(CLIENT, [2, 0, 0, 0, 0, 10])]
    }
    fn neighbours6(&self) -> Vec<(Ipv6Addr, [u8; 6])> {
        vec![(CLIENT6, [2, 0, 0, 0, 0, 10])]
    }
    fn listening(&self, _: Proto) -> Vec<(Option<Ipv4Addr>, u16)> {
        vec![(None, 6500)]
    }
    fn wan_up(&self) -> bool {
        true
    }
    fn wan_stats(&self) -> WanStats {
        WanStats::default()
    }
}

#[must_use]
pub fn lan() -> Vec<LanSubnet> {
    vec![LanSubnet {
        addr: ROUTER,
        prefix_len: 24,
    }]
}

#[must_use]
pub fn lan6() -> Vec<Prefix6> {
    vec![Prefix6 {
        addr: Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 1),
        prefix_len: 64,
    }]
}

/// A table over in-memory maps with `settings`, the external address set and
/// [`STATIC_SHARE`] in it.
#[must_use]
pub fn table(settings: Settings) -> Table {
    let mut table = Table::builder(
        lan(),
        Box::new(MemoryMaps::default()),
        Arc::new(Quiet),
        1,
        2,
    )
    .lan6(lan6())
    .settings(settings)
    .build(Instant::now())
    .expect("table");
    table.set_external(Some(EXTERNAL)).expect("external");
    table
        .replace_static(vec![STATIC_SHARE.parse().expect("spec")])
        .expect("static");
    table
}

/// The process's current-thread runtime, its clock paused (timers fire as soon as nothing
/// else can run). Made once: a runtime's I/O driver costs more to set up than most inputs take.
#[must_use]
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

/// A table task kept for the next input.
struct Kept {
    handle: TableHandle,
    task: tokio::task::JoinHandle<Table>,
}

thread_local! {
    /// The pristine tables, by settings flags.
    static KEPT: std::cell::RefCell<std::collections::HashMap<u8, Kept>> =
        std::cell::RefCell::default();
}

/// Runs `f` with a pristine table task whose settings are [`settings`]`(flags)` (inside the
/// runtime); a table `f` changed is stopped and replaced.
pub async fn with_table<T, F>(flags: u8, f: impl FnOnce(TableHandle) -> F) -> T
where
    F: Future<Output = T>,
{
    let kept = KEPT.with_borrow_mut(|kept| kept.remove(&flags));
    let kept = kept.unwrap_or_else(|| {
        let (handle, task) = portfwd::table::spawn(table(settings(flags)), None);
        Kept { handle, task }
    });
    let before = kept.handle.snapshot().version;
    let out = f(kept.handle.clone()).await;
    if kept.handle.snapshot().version == before {
        KEPT.with_borrow_mut(|k| k.insert(flags, kept));
    } else {
        // The last handle gone, the task hands the table back and ends.
        drop(kept.handle);
        let _ = kept.task.await;
    }
    out
}

/// Settings chosen by the bits of `flags`: secure mode off (bit 0), IGD:1 (bit 1), PCP third
/// party allowed (bit 2), UPnP and PCP off (bit 3).
#[must_use]
pub fn settings(flags: u8) -> Settings {
    let base = Settings::default();
    let off = flags & 8 != 0;
    Settings {
        secure_mode: flags & 1 == 0,
        igd_version: if flags & 2 == 0 {
            base.igd_version
        } else {
            portfwd::policy::IgdVersion::V1
        },
        enabled: base.enabled && !off,
        pcp: portfwd::policy::PcpSettings {
            third_party: flags & 4 != 0,
            enabled: base.pcp.enabled && !off,
            ..base.pcp
        },
        ..base
    }
}

/// A directory of this process's own for a target's files, emptied first: under
/// `$PORTFWD_FUZZ_SCRATCH` (`cargo xtask fuzz` points it at tmpfs and removes it afterwards),
/// else under the system's temporary directory.
#[must_use]
pub fn scratch_dir(target: &str) -> std::path::PathBuf {
    let base = std::env::var_os("PORTFWD_FUZZ_SCRATCH").map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("portfwd-fuzz-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// The API (and page) server's state over `table`, its token `token`.
#[must_use]
pub fn api(table: TableHandle, token: &str) -> portfwd::api::Api {
    portfwd::api::Api {
        table,
        token: token.into(),
        metrics: Arc::default(),
        metrics_auth: false,
        facts: portfwd::api::Facts {
            wan: "wan0".into(),
            lan: "lan0".into(),
            lan_address: ROUTER,
            wan_mode: "skb",
            lan_mode: "skb",
            wan_program: None,
            lan_program: None,
            upnp_url: "http://10.0.0.1:5000/rootDesc.xml".into(),
            started: Instant::now(),
        },
        lan: lan(),
        host: Arc::new(Quiet),
        ddns: None,
        page: portfwd::page::Page::default(),
    }
}
