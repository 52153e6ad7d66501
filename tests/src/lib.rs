//! The network-namespace lab: a remote host, the router running portfwd, and a LAN host, joined
//! by veth pairs. Used by the end-to-end tests, `cargo xtask run` (the demo) and
//! `cargo xtask bench`. Everything here needs root.
//!
//! ```text
//!  {p}-remote                 {p}-router                        {p}-lan
//!  eth0 198.51.100.2/24 ── wan 198.51.100.1/24   lan 10.77.0.1/24 ── eth0 10.77.0.10/24
//!                          (external address)                      (default via 10.77.0.1)
//! ```
//!
//! Namespaces are deleted when the [`Lab`] is dropped; names carry a prefix so that labs of
//! parallel tests never meet.
#![allow(
    clippy::must_use_candidate,
    reason = "test support: callers use what they need"
)]

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

mod clients;
pub use clients::*;

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};

/// The router's WAN address: the external address shares are reached at.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The remote host's address.
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The router's LAN address.
pub const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The router's IPv6 address on the WAN side.
pub const EXTERNAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
/// The remote host's IPv6 address.
pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2);
/// The router's IPv6 address on the LAN side.
pub const ROUTER_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 1);
/// The LAN host's IPv6 address.
pub const LAN_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x10);

/// The LAN host's address.
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

/// Runs a command to completion; panics with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace (replacing a leftover of the same name) with loopback up.
    pub fn add(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip netns exec NAME ARGS...`
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A command that runs inside the namespace.
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(&self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Like [`Netns::run`], but returns at once with the thread's handle.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    /// Moves the calling thread into this namespace for good.
    pub fn enter(&self) {
        enter(&PathBuf::from("/run/netns").join(&self.name));
    }

    /// The MAC address of `interface` in this namespace.
    pub fn mac(&self, interface: &str) -> [u8; 6] {
        let text = self.exec(&["cat", &format!("/sys/class/net/{interface}/address")]);
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
            *byte = u8::from_str_radix(part, 16).expect("hex MAC");
        }
        mac
    }

    /// The interface index of `interface` in this namespace.
    pub fn ifindex(&self, interface: &str) -> u32 {
        self.exec(&["cat", &format!("/sys/class/net/{interface}/ifindex")])
            .trim()
            .parse()
            .expect("ifindex")
    }
}

impl Netns {
    /// The inode of the namespace: what portfwd names its pinned instance after
    /// (`WAN-INODE`).
    #[must_use]
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(PathBuf::from("/run/netns").join(&self.name)).map_or(0, |m| m.ino())
    }

    /// The pin directory of the portfwd instance on WAN interface `wan` in this namespace.
    #[must_use]
    pub fn pins(&self, wan: &str) -> PathBuf {
        PathBuf::from(BPFFS)
            .join("portfwd")
            .join(format!("{wan}-{}", self.inode()))
    }
}

/// `portfwd down --wan wan --lan lan` in the lab's router: the daemon's pins go, and with them
/// its programs; whether it worked, and what it printed.
pub fn portfwd_down(lab: &Lab) -> (bool, String) {
    let out = lab
        .router
        .command(portfwd_bin().to_str().expect("utf-8"))
        .args(["down", "--wan", "wan", "--lan", "lan", "--bpffs", BPFFS])
        .output()
        .expect("portfwd down");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The bpffs the daemons under test pin in (`--bpffs`): `cargo xtask test` mounts it. Not
/// `/sys/fs/bpf`, which `ip netns exec` hides behind the namespace's own sysfs.
pub const BPFFS: &str = "/run/portfwd-test-bpffs";

/// Removes pinned objects under `dir` (links, maps, their directories): what `portfwd down`
/// does, for tests that end without it.
pub fn remove_pins(dir: &std::path::Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_pins(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A daemon that ran here left its objects pinned (that is the point); they go with
        // the namespace, or they would pile up in the kernel across tests.
        let suffix = format!("-{}", self.inode());
        if let Ok(entries) = fs::read_dir(PathBuf::from(BPFFS).join("portfwd")) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(&suffix) {
                    remove_pins(&entry.path());
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &std::path::Path) {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: setns on a valid namespace fd; it only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// The three-namespace lab.
pub struct Lab {
    // XDP programs the lab attached itself (the pass programs native mode needs on the hosts'
    // ends of the veth pairs, the bench's sink); dropped, and so detached, before the
    // namespaces go.
    pub attached: Vec<Ebpf>,
    pub remote: Netns,
    pub router: Netns,
    pub lan: Netns,
}

impl Lab {
    /// Brings up the lab with namespaces `{prefix}-remote`, `{prefix}-router`, `{prefix}-lan`.
    /// The router forwards IPv4 in the kernel too (`ip_forward=1`), so that packets portfwd
    /// hands to the kernel are forwarded as on a real router.
    pub fn up(prefix: &str) -> Self {
        let lab = Self {
            attached: Vec::new(),
            remote: Netns::add(&format!("{prefix}-remote")),
            router: Netns::add(&format!("{prefix}-router")),
            lan: Netns::add(&format!("{prefix}-lan")),
        };
        lab.router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.router
            .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        lab.add_wan();
        lab.add_lan();
        lab
    }

    /// Deletes the router's WAN interface (and so the remote host's end) and makes the pair
    /// again, as a `PPPoE` reconnect does: same names and addresses, a new interface index.
    pub fn recreate_wan(&self) {
        self.router.ip(&["link", "del", "wan"]);
        self.add_wan();
    }

    /// The router's `wan` and the remote host's `eth0`, a veth pair: `198.51.100.1` and `.2/24`,
    /// `2001:db8:ff::1` and `::2/64` (without duplicate address detection, so usable at once),
    /// up, and the remote's route to the LAN's IPv6 prefix through the router.
    fn add_wan(&self) {
        self.router_veth("wan", &self.remote);
        pair_addresses(
            (&self.router, "wan", "198.51.100.1/24", "2001:db8:ff::1/64"),
            (&self.remote, "198.51.100.2/24", "2001:db8:ff::2/64"),
        );
        self.remote.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:77::/64",
            "via",
            "2001:db8:ff::1",
        ]);
    }

    /// A veth pair: the router's `name` and `eth0` in `host`.
    fn router_veth(&self, name: &str, host: &Netns) {
        self.router.ip(&[
            "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", &host.name,
        ]);
    }

    /// The router's `lan` and the LAN host's `eth0`: `10.77.0.1` and `.10/24`, `2001:db8:77::1`
    /// and `::10/64`, up, and the LAN host's default routes through the router.
    fn add_lan(&self) {
        self.router_veth("lan", &self.lan);
        pair_addresses(
            (&self.router, "lan", "10.77.0.1/24", "2001:db8:77::1/64"),
            (&self.lan, "10.77.0.10/24", "2001:db8:77::10/64"),
        );
        self.lan
            .ip(&["route", "add", "default", "via", "10.77.0.1"]);
        self.lan
            .ip(&["-6", "route", "add", "default", "via", "2001:db8:77::1"]);
    }

    /// A lab with a name of its own (the process id, a counter and `tag`), so that tests
    /// running in parallel, and leftovers of earlier runs, never meet. Panics unless root.
    pub fn fresh(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        assert!(is_root(), "the lab needs root (network namespaces, XDP)");
        let n = N.fetch_add(1, Ordering::Relaxed);
        Self::up(&format!("pf{}{n}{tag}", std::process::id() % 10_000))
    }

    /// Makes the router's firewall drop everything the kernel forwards (an nftables forward
    /// chain with policy drop). Packets portfwd redirects in XDP never reach netfilter, so from
    /// then on only the XDP path carries traffic between the sides. (Turning `ip_forward` off
    /// would not do: `bpf_fib_lookup` honours it and refuses too.)
    pub fn block_kernel_forwarding(&self) {
        self.router.exec(&[
            "nft",
            "add table inet lab; add chain inet lab forward { type filter hook forward priority 0; policy drop; }",
        ]);
    }

    /// Undoes [`Lab::block_kernel_forwarding`].
    pub fn unblock_kernel_forwarding(&self) {
        self.router.exec(&["nft", "delete table inet lab"]);
    }

    /// Masquerades LAN traffic leaving through the WAN, as a home router does.
    pub fn masquerade(&self) {
        self.router.exec(&[
            "nft",
            "add table ip labnat; add chain ip labnat post { type nat hook postrouting priority 100; } ; add rule ip labnat post oifname wan masquerade",
        ]);
    }

    /// Attaches `lab_pass` to the hosts' ends of both veth pairs. On veth in native mode, a
    /// frame redirected into a veth is only delivered when its peer has an XDP program.
    pub fn attach_host_pass_programs(&mut self) {
        for ns in [&self.remote, &self.lan] {
            let ifindex = ns.ifindex("eth0");
            let ebpf = ns.run(move || {
                let mut ebpf = load_lab_object();
                let prog: &mut Xdp = ebpf
                    .program_mut("lab_pass")
                    .expect("lab_pass")
                    .try_into()
                    .expect("xdp");
                prog.load().expect("load lab_pass");
                prog.attach_to_if_index(ifindex, XdpMode::Driver)
                    .expect("attach lab_pass");
                ebpf
            });
            self.attached.push(ebpf);
        }
    }

    /// A second LAN host, namespace `{lan}2` at 10.77.0.11: a macvlan on the LAN host's link,
    /// so the router sees a second MAC address and host on its LAN port. Dropping it removes
    /// the namespace.
    pub fn second_lan_host(&self) -> Netns {
        let host = Netns::add(&format!("{}2", self.lan.name));
        self.lan.ip(&[
            "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge",
        ]);
        self.lan.ip(&["link", "set", "mv0", "netns", &host.name]);
        host.ip(&["link", "set", "mv0", "name", "eth0"]);
        host.ip(&["addr", "add", "10.77.0.11/24", "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["route", "add", "default", "via", "10.77.0.1"]);
        host.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        host
    }

    /// Makes the router forget the LAN host's MAC address, so the next packet to it needs ARP.
    pub fn forget_lan_neighbour(&self) {
        self.router.ip(&["neigh", "flush", "dev", "lan"]);
    }

    /// Tells the router the LAN host's MAC address, so no ARP is needed.
    pub fn learn_lan_neighbour(&self) {
        self.learn_neighbour(&self.lan, "10.77.0.10", "lan");
        self.learn_neighbour(&self.lan, "2001:db8:77::10", "lan");
    }

    /// Tells the router the remote host's MAC address.
    pub fn learn_remote_neighbour(&self) {
        self.learn_neighbour(&self.remote, "198.51.100.2", "wan");
        self.learn_neighbour(&self.remote, "2001:db8:ff::2", "wan");
    }

    fn learn_neighbour(&self, host: &Netns, addr: &str, dev: &str) {
        let mac = host.mac("eth0").map(|b| format!("{b:02x}")).join(":");
        self.router.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac,
            "dev",
            dev,
            "nud",
            "reachable",
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.attached.clear();
    }
}

/// Addresses and brings up both ends of a router-to-host veth pair (the host's end is
/// `eth0`).
fn pair_addresses(router: (&Netns, &str, &str, &str), host: (&Netns, &str, &str)) {
    let (ns, dev, v4, v6) = router;
    ns.ip(&["addr", "add", v4, "dev", dev]);
    ns.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]);
    ns.ip(&["link", "set", dev, "up"]);
    let (host, v4, v6) = host;
    host.ip(&["addr", "add", v4, "dev", "eth0"]);
    host.ip(&["-6", "addr", "add", v6, "dev", "eth0", "nodad"]);
    host.ip(&["link", "set", "eth0", "up"]);
    // Locally generated packets on veth carry partial checksums (CHECKSUM_PARTIAL) that
    // only the kernel completes; XDP sees them unfinished. Real NICs' peers send complete
    // ones, so the traffic sources send complete checksums too.
    host.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
}

/// Loads the lab's helper object (`portfwd-ebpf/src/bin/lab.rs`).
pub fn load_lab_object() -> Ebpf {
    let object = portfwd::dataplane::lab_object();
    assert!(
        !object.is_empty(),
        "built with AYA_BUILD_SKIP: the lab programs are missing"
    );
    Ebpf::load(object).expect("load the lab object")
}

/// The `portfwd` binary under test: `$PORTFWD_BIN`, or the one cargo built next to this test.
pub fn portfwd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTFWD_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/portfwd
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("portfwd"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p portfwd-user) or set PORTFWD_BIN",
        bin.display()
    );
    bin
}

/// A running `portfwd run` inside a namespace; stopped with SIGTERM on drop.
pub struct Daemon {
    child: Child,
    /// What it printed on stderr, collected in the background.
    log: mpsc::Receiver<String>,
    pub ready_line: String,
    /// The state directory made for this daemon (removed with it), unless the test gave one.
    own_state_dir: Option<PathBuf>,
}

/// A fresh, empty directory under the system's temporary directory.
#[must_use]
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portfwd-test-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Daemon {
    /// Starts `portfwd run ARGS` in `ns` and waits for its `ready` line.
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        match Self::try_start(ns, args) {
            Ok(daemon) => daemon,
            Err(output) => panic!("portfwd did not get ready: {output}"),
        }
    }

    /// Starts `portfwd run` on the lab's router (`--wan wan --lan lan --xdp-mode MODE`, then
    /// `extra`) and waits for its `ready` line.
    pub fn in_lab(lab: &Lab, mode: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--wan", "wan", "--lan", "lan", "--xdp-mode", mode];
        args.extend_from_slice(extra);
        Self::start(&lab.router, &args)
    }

    /// Starts `portfwd run ARGS` and waits for `ready`; on failure, returns what it printed.
    /// Without `--state-dir` in `ARGS` the daemon gets a fresh one of its own, so tests never
    /// share leases through the default directory.
    pub fn try_start(ns: &Netns, args: &[&str]) -> Result<Self, String> {
        Self::try_start_bin(&portfwd_bin(), ns, args)
    }

    /// [`Self::try_start`] with another build of portfwd (an upgrade test's).
    pub fn try_start_bin(bin: &std::path::Path, ns: &Netns, args: &[&str]) -> Result<Self, String> {
        let own_state_dir = (!args.contains(&"--state-dir")).then(|| temp_dir("state"));
        let mut command = ns.command(bin.to_str().expect("utf-8 path"));
        command.arg("run").args(args).args(["--bpffs", BPFFS]);
        if let Some(dir) = &own_state_dir {
            command.arg("--state-dir").arg(dir);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portfwd");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (log_tx, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if log_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = ready_tx.send(line);
                }
            }
        });
        let mut daemon = Self {
            child,
            log,
            ready_line: String::new(),
            own_state_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                daemon.ready_line = line;
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                return Err(format!("exited with {status}: {}", daemon.stderr()));
            }
        }
        Err(format!("no ready line within 20 s: {}", daemon.stderr()))
    }

    /// The state directory the harness made for this daemon (`None` if the test gave one).
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.own_state_dir.as_deref()
    }

    /// The daemon's process id (`ip netns exec` execs it, so this is portfwd itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon with SIGKILL (nothing of its own runs after) and waits for it.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        wait_timeout(&mut self.child, Duration::from_secs(10));
        // Keep the state directory: the test restarts from it.
        self.own_state_dir = None;
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the daemon printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // `ip netns exec` execs the program, so the child is portfwd itself.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
    }

    /// Stops the daemon with SIGTERM and returns its exit status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait after kill");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            wait_timeout(&mut self.child, Duration::from_secs(10));
        }
        if let Some(dir) = &self.own_state_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}
