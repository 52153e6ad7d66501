//! miniupnpd, the peer: Debian bookworm's `miniupnpd-nftables` (2.3.1), which `cargo xtask
//! bench control` installs. The bench runs it itself, in the lab's router namespace only.
//!
//! What it needs there:
//!
//! * **Its nftables table and chains, made beforehand.** miniupnpd 2.3.1 only adds rules to
//!   existing chains (without them every `AddPortMapping` fails with 501). The package's
//!   `/etc/miniupnpd/nft_init.sh` would make them, but it sources `miniupnpd_functions.sh`,
//!   which only the `miniupnpd` package ships, in its iptables flavour; so the bench loads the
//!   same structure itself ([`RULESET`]: miniupnpd's default names, table `inet filter`, chains
//!   `miniupnpd`, `prerouting_miniupnpd`, `postrouting_miniupnpd`), with an accepting forward
//!   policy where the script's is drop (the lab forwards), and deletes it afterwards.
//! * **A public-looking external address.** miniupnpd refuses reserved addresses for `ext_ip`
//!   (and the lab's WAN address is TEST-NET-2), so it is told [`EXT_IP`], just past TEST-NET-3;
//!   the address only appears in answers, no packet goes there.
//! * **Its normal log level.** With `-d` (foreground) miniupnpd logs at debug level, and 2.3.1
//!   logs a line per rule of its chain each time round its main loop ("rule with label ... is
//!   not a IGD pinhole"), several times per request: at 10,000 mappings that is tens of
//!   thousands of lines per call, which would measure logging, not miniupnpd. Without a syslog
//!   socket (there is none here), glibc even writes each line to `/dev/console`, a serial
//!   line at about 1.5 ms per line. So miniupnpd runs as it does in service: without `-d`
//!   (notice level), daemonized with its pid file in the bench's temporary directory, this
//!   process its subreaper (so it is still reaped here), and `/dev/console` bound to
//!   `/dev/null` in its own mount namespace (`ip netns exec` makes one), so that even its
//!   notices stay off the console.

use std::{
    fs,
    path::PathBuf,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::Lab;

use super::peer::{self, HTTP_PORT, Peer};

/// The binary of `miniupnpd-nftables`.
pub const BINARY: &str = "/usr/sbin/miniupnpd";
/// The external address miniupnpd answers with (not reserved, unlike the lab's WAN address).
const EXT_IP: &str = "203.0.114.1";

/// The table and chains miniupnpd 2.3.1 expects by default (as Debian's `nft_init.sh` makes
/// them, forward policy accept).
const RULESET: &str = "\
table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
";

/// The config: the lab's interfaces, secure mode, mappings by LAN hosts to ports 1024 and up
/// of their own, UPnP only (no NAT-PMP/PCP, no lease file).
fn config() -> String {
    format!(
        "\
ext_ifname=wan
ext_ip={EXT_IP}
listening_ip=lan
http_port={HTTP_PORT}
enable_upnp=yes
enable_natpmp=no
secure_mode=yes
system_uptime=yes
uuid=7c0a9d3e-5d0b-4c55-9d36-b3c1c0b1e001
allow 1024-65535 10.77.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"
    )
}

/// The running miniupnpd: stopped, reaped and cleaned up after when dropped.
struct Running {
    pid: u32,
    router: String,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = i32::try_from(self.pid).expect("pid");
        // SAFETY: kill and waitpid on miniupnpd, which this process reaps (subreaper).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == 0 {
                if Instant::now() > deadline {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "nft",
                "delete table inet filter",
            ])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts miniupnpd on the lab's router and waits until it answers.
pub fn start(lab: &Lab) -> Peer {
    assert!(
        std::path::Path::new(BINARY).exists(),
        "{BINARY} is missing: `cargo xtask bench control` installs Debian's miniupnpd-nftables"
    );
    let dir = portfwd_tests::temp_dir("miniupnpd");
    let (conf, pid_file, ruleset) = (
        dir.join("miniupnpd.conf"),
        dir.join("miniupnpd.pid"),
        dir.join("miniupnpd.nft"),
    );
    fs::write(&conf, config()).expect("miniupnpd's config");
    fs::write(&ruleset, RULESET).expect("miniupnpd's ruleset");
    lab.router
        .exec(&["nft", "-f", ruleset.to_str().expect("utf-8 path")]);
    // SAFETY: prctl with an integer argument; it changes this process's attributes only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    // The shell's arguments are passed as $0 and $1: no quoting of paths.
    let script =
        format!("mount --bind /dev/null /dev/console && exec {BINARY} -f \"$0\" -P \"$1\"");
    let out = lab
        .router
        .command("sh")
        .arg("-c")
        .arg(script)
        .arg(&conf)
        .arg(&pid_file)
        .stdin(Stdio::null())
        .output()
        .expect("run miniupnpd");
    assert!(
        out.status.success(),
        "miniupnpd did not start ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = wait_for_pid(&pid_file).unwrap_or_else(|| {
        panic!(
            "miniupnpd wrote no pid file within 10 s; to see why, run it in the foreground: \
             ip netns exec {} {BINARY} -d -f {}",
            lab.router.name,
            conf.display()
        )
    });
    let running = Running {
        pid,
        router: lab.router.name.clone(),
        dir,
    };
    let igd = peer::discover(lab).unwrap_or_else(|e| panic!("miniupnpd's IGD: {e}"));
    Peer {
        name: "miniupnpd",
        pid,
        igd,
        _running: Box::new(running),
    }
}

/// The pid miniupnpd writes to `path` once it has daemonized, within 10 s.
fn wait_for_pid(path: &std::path::Path) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}
