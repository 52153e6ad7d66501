//! The daemons under test, each running in the lab's router namespace and reached from the LAN
//! host like a real client: portfwd here, miniupnpd in [`super::miniupnpd`].

use std::{
    any::Any,
    fs,
    net::{SocketAddr, SocketAddrV4},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{Daemon, Lab, ROUTER_LAN};

use super::soap::Igd;

/// The port both daemons serve UPnP on (their default).
pub const HTTP_PORT: u16 = 5000;

/// A running daemon; dropping it stops it.
pub struct Peer {
    pub name: &'static str,
    pub pid: u32,
    pub igd: Igd,
    /// What stops the daemon (and cleans up after it) when dropped.
    pub(super) _running: Box<dyn Any>,
}

impl Peer {
    /// The daemon's resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// Where the LAN host reaches the daemons' UPnP server.
pub fn http_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ROUTER_LAN, HTTP_PORT))
}

/// Finds the IGD's control point from the LAN host, retrying for up to 10 s while the daemon
/// comes up.
pub fn discover(lab: &Lab) -> Result<Igd, String> {
    lab.lan.run(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Igd::discover(http_addr()) {
                Ok(igd) => return Ok(igd),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

/// portfwd's config for the bench: quotas raised so that the largest table fits, secure mode
/// (the default, written out).
const PORTFWD_CONFIG: &str = "\
# cargo xtask bench control: quotas raised so that 10,000 mappings of one client fit.
[upnp]
secure_mode = true
quota_per_client = 20000
quota_total = 20000
";

/// Starts the real portfwd binary on the lab's router, its config and state directory (fresh)
/// under `dir`.
pub fn portfwd(lab: &Lab, dir: &Path) -> Peer {
    let config = dir.join("portfwd.toml");
    let state = dir.join("portfwd-state");
    let _ = fs::remove_dir_all(&state);
    fs::create_dir_all(&state).expect("portfwd's state directory");
    fs::write(&config, PORTFWD_CONFIG).expect("portfwd's config");
    // Generic XDP: the bench measures the control plane, and skb mode needs no pass programs
    // on the hosts' ends of the veth pairs.
    let daemon = Daemon::in_lab(
        lab,
        "skb",
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--state-dir",
            state.to_str().expect("utf-8 path"),
            "--upnp-port",
            &HTTP_PORT.to_string(),
        ],
    );
    let pid = daemon.pid();
    let igd = discover(lab).unwrap_or_else(|e| panic!("portfwd's IGD: {e}"));
    Peer {
        name: "portfwd",
        pid,
        igd,
        _running: Box::new(daemon),
    }
}

/// Whether `path` is on a tmpfs (where fsync costs nothing, unlike on a router's flash).
pub fn on_tmpfs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs with a NUL-terminated path and a zeroed statfs to fill.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &raw mut fs) == 0 && fs.f_type == libc::TMPFS_MAGIC
    }
}
