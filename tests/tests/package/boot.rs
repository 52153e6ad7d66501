//! A copy of the cached Debian root with the package installed, and that root booted by
//! `systemd-nspawn -b` with WAN and LAN interfaces whose other ends are in two network
//! namespaces of the test's own (a remote host and a LAN host, as in the lab).

use std::{
    fmt::Write as _,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{Netns, http_get};

use super::{filled_config, ok, run};

/// The worst `systemd-analyze security` exposure the service may have (issue 16: "OK").
const MAX_EXPOSURE: f64 = 2.5;

/// A copy of the cached root, removed on drop.
pub struct Root {
    dir: PathBuf,
    bpffs: PathBuf,
}

impl Root {
    pub fn copy_of(cached: &Path) -> Self {
        let base = cached.parent().expect("the cache's directory");
        let dir = base.join(format!("test-{}", std::process::id()));
        let bpffs = base.join(format!("bpffs-{}", std::process::id()));
        let root = Self { dir, bpffs };
        let _ = fs::remove_dir_all(&root.dir);
        ok(Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(cached)
            .arg(&root.dir));
        root
    }

    /// `CMD` in the root, not booted (`systemd-nspawn` without `-b`: /proc, /sys and /dev are
    /// there, as `systemd-analyze` and `man` want).
    fn exec(&self, args: &[&str]) -> (bool, String) {
        let (success, out) = run(Command::new("systemd-nspawn")
            .args(["-q", "--register=no", "--keep-unit", "--console=pipe", "-D"])
            .arg(&self.dir)
            .args([
                "-E",
                "MANPAGER=cat",
                "-E",
                "LANG=C.UTF-8",
                "-E",
                "SYSTEMD_COLORS=0",
            ])
            .args(["-E", "SYSTEMD_URLIFY=0"])
            .args(args));
        // nspawn's own note on leaving (it cleans up a directory it did not make here).
        let out: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("Attempted to remove disk file system"))
            .collect();
        (success, out.join("\n"))
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let (success, out) = self.exec(args);
        assert!(success, "{args:?} in the Debian root failed:\n{out}");
        out
    }

    pub fn install(&self, deb: &Path) {
        // Not /tmp: nspawn mounts a fresh tmpfs there.
        fs::copy(deb, self.dir.join("root/portfwd.deb")).expect("copy the package in");
        let out = self.exec_ok(&["dpkg", "-i", "/root/portfwd.deb"]);
        assert!(
            !out.contains("Created symlink"),
            "not enabled at install: {out}"
        );
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("etc/portfwd/portfwd.toml")
    }

    pub fn check_installed(&self) {
        self.exec_ok(&["getent", "passwd", "portfwd"]);
        let (success, out) = self.exec(&[
            "systemd-analyze",
            "verify",
            "/usr/lib/systemd/system/portfwd.service",
        ]);
        assert!(
            success && out.trim().is_empty(),
            "systemd-analyze verify:\n{out}"
        );
        let out = self.exec_ok(&[
            "systemd-analyze",
            "security",
            "--offline=true",
            "--no-pager",
            "portfwd.service",
        ]);
        let figure = out
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for portfwd.service: ")
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no overall exposure in:\n{out}"))
            .to_owned();
        let exposure: f64 = figure.parse().expect("a number");
        assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}:\n{out}");
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!("rates it {figure} (")),
            "README should quote the exposure, {figure}"
        );
        println!("systemd-analyze security portfwd.service: {figure}");

        let version = self.exec_ok(&["portfwd", "--version"]);
        assert_eq!(
            version.trim(),
            format!("portfwd {}", env!("CARGO_PKG_VERSION"))
        );
        let (success, out) = self.exec(&["portfwd", "check-config", "/etc/portfwd/portfwd.toml"]);
        assert!(
            !success && out.contains("set `wan` in the config file"),
            "{out}"
        );
        let shipped = fs::read_to_string(self.config_path()).expect("shipped config");
        fs::write(self.config_path(), filled_config(&shipped, "wan", "lan")).expect("write");
        let out = self.exec_ok(&["portfwd", "check-config", "/etc/portfwd/portfwd.toml"]);
        assert!(out.contains("interfaces   wan wan, lan lan"), "{out}");
        let page = self.exec_ok(&["man", "portfwd"]);
        assert!(
            page.contains("portfwd - Port sharing") && page.contains("portfwd-check-config(1)"),
            "{page}"
        );
        let page = self.exec_ok(&["man", "portfwd-share-add"]);
        assert!(page.contains("--remote6"), "{page}");
    }

    /// The config the booted service runs with: the shipped one with the interfaces, generic
    /// XDP (veth) and `shares`.
    fn configure(&self, shares: &[(u16, &str)]) {
        let original = self.dir.with_extension("filled.toml");
        if !original.exists() {
            fs::copy(self.config_path(), &original).expect("keep the filled-in config");
        }
        let mut text = fs::read_to_string(&original)
            .expect("config")
            .replace("#xdp_mode = \"auto\"", "xdp_mode = \"skb\"");
        let mut blocks = String::new();
        for (port, internal) in shares {
            let _ = write!(
                blocks,
                "[[share]]\nproto = \"tcp\"\nexternal_port = {port}\ninternal = \"{internal}\"\n\n"
            );
        }
        // Before the first section, where top-level arrays of tables may stand.
        let at = text.find("\n[upnp]\n").expect("[upnp]") + 1;
        text.insert_str(at, &blocks);
        fs::write(self.config_path(), text).expect("write config");
    }

    pub fn boot_and_run(&self) {
        self.configure(&[(8080, "10.77.0.10:80")]);
        // The router's addresses, set before portfwd starts (as a real box's network config).
        fs::write(
            self.dir.join("etc/systemd/system/lab-net.service"),
            "[Unit]\nDescription=the test's WAN and LAN addresses\nBefore=portfwd.service\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart=/usr/sbin/ip addr add 198.51.100.1/24 dev wan\n\
             ExecStart=/usr/sbin/ip addr add 10.77.0.1/24 dev lan\n\
             ExecStart=/usr/sbin/ip link set wan up\nExecStart=/usr/sbin/ip link set lan up\n\
             ExecStart=/usr/sbin/sysctl -w net.ipv4.ip_forward=1\n\
             [Install]\nWantedBy=multi-user.target\n",
        )
        .expect("lab-net unit");
        self.exec_ok(&["systemctl", "enable", "lab-net.service", "portfwd.service"]);
        fs::create_dir_all(&self.bpffs).expect("bpffs dir");
        ok(Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&self.bpffs));

        let tag = std::process::id() % 10_000;
        let (wan_host, lan_host) = (format!("pfdw{tag}"), format!("pfdl{tag}"));
        let log = self.dir.with_extension("boot.log");
        let mut nspawn = Command::new("systemd-nspawn")
            .args([
                "-q",
                "-b",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "-D",
            ])
            .arg(&self.dir)
            .arg(format!("--network-veth-extra={wan_host}:wan"))
            .arg(format!("--network-veth-extra={lan_host}:lan"))
            .args([
                "--capability=CAP_BPF,CAP_PERFMON",
                "--system-call-filter=bpf perf_event_open",
            ])
            .arg(format!("--bind={}:/sys/fs/bpf", self.bpffs.display()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("log"))
            .stderr(Stdio::from(
                fs::File::options().append(true).open(&log).expect("log"),
            ))
            .spawn()
            .expect("systemd-nspawn");
        let machine = match Machine::boot(&mut nspawn) {
            Ok(machine) => machine,
            Err(why) => {
                let _ = nspawn.kill();
                let _ = nspawn.wait();
                println!(
                    "SKIPPED the booted-systemd part: systemd-nspawn -b cannot boot the root here ({why}); its log:\n{}\n\
                     The notify protocol (READY, STATUS, WATCHDOG, STOPPING) is tested through a NOTIFY_SOCKET in service.rs; \
                     Restart= after kill -9 is untested here.",
                    fs::read_to_string(&log).unwrap_or_default()
                );
                return;
            }
        };
        let remote = Netns::add(&format!("pfdeb{tag}-remote"));
        let lan = Netns::add(&format!("pfdeb{tag}-lan"));
        for (host_end, ns, addr) in [
            (&wan_host, &remote, "198.51.100.2/24"),
            (&lan_host, &lan, "10.77.0.10/24"),
        ] {
            ok(Command::new("ip").args(["link", "set", host_end, "netns", &ns.name]));
            ns.ip(&["link", "set", host_end, "name", "eth0"]);
            ns.ip(&["addr", "add", addr, "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            // Complete checksums from the traffic sources, as real NICs' peers send (the lab
            // does the same).
            ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
        }
        lan.ip(&["route", "add", "default", "via", "10.77.0.1"]);
        portfwd_tests::serve_http(&lan, 80, "hello from the LAN host");
        portfwd_tests::serve_http(&lan, 8000, "the second server");

        machine.running_service(&remote, self);
        machine.remove_and_purge(self);
        shutdown(&mut nspawn);
        drop(lan);
    }
}

/// Stops the container (SIGTERM: nspawn powers it off), then kills it if it hangs.
fn shutdown(nspawn: &mut Child) {
    let pid = i32::try_from(nspawn.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = nspawn.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = nspawn.kill();
    let _ = nspawn.wait();
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = fs::remove_dir(&self.bpffs);
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.dir.with_extension("boot.log"));
        let _ = fs::remove_file(self.dir.with_extension("filled.toml"));
    }
}

/// The booted container, reached through its init's namespaces.
struct Machine {
    leader: u32,
}

impl Machine {
    /// Waits for the container's init and for `is-system-running` to settle.
    fn boot(nspawn: &mut Child) -> Result<Self, String> {
        let deadline = Instant::now() + Duration::from_mins(1);
        let leader = loop {
            if let Ok(Some(status)) = nspawn.try_wait() {
                return Err(format!("systemd-nspawn exited with {status}"));
            }
            let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", nspawn.id()))
                .unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
            {
                break pid;
            }
            if Instant::now() > deadline {
                return Err("no init process within 60 s".into());
            }
            thread::sleep(Duration::from_millis(50));
        };
        let machine = Self { leader };
        loop {
            let (_, state) = machine.exec(&["systemctl", "is-system-running"]);
            let state = state.trim();
            if state == "running" || state == "degraded" {
                return Ok(machine);
            }
            if let Ok(Some(status)) = nspawn.try_wait() {
                return Err(format!("systemd-nspawn exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("the system is still `{state}` after 60 s"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn exec(&self, args: &[&str]) -> (bool, String) {
        run(Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a"])
            .args(args))
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let (success, out) = self.exec(args);
        assert!(success, "{args:?} in the container failed:\n{out}");
        out
    }

    /// `systemctl show portfwd -p KEY --value`.
    fn show(&self, key: &str) -> String {
        self.exec_ok(&["systemctl", "show", "portfwd.service", "-p", key, "--value"])
            .trim()
            .to_owned()
    }

    fn journal(&self) -> String {
        self.exec(&["journalctl", "-u", "portfwd", "-o", "cat", "--no-pager"])
            .1
    }

    fn running_service(&self, remote: &Netns, root: &Root) {
        // Enabled and ordered after the addresses: it started at boot, and Type=notify means
        // active only after READY=1.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.show("ActiveState") != "active" && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            self.show("ActiveState"),
            "active",
            "journal:\n{}",
            self.journal()
        );
        assert_eq!(self.show("Type"), "notify");
        let status = self.show("StatusText");
        assert!(
            status.starts_with("1 share(s), "),
            "STATUS= from the daemon: {status}"
        );
        let pid = self.show("MainPID");
        // Its own user, with exactly CAP_NET_ADMIN (12), CAP_PERFMON (38) and CAP_BPF (39).
        let proc_status = self.exec_ok(&["cat", &format!("/proc/{pid}/status")]);
        let field = |name: &str| {
            proc_status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let uid = self.exec_ok(&["id", "-u", "portfwd"]);
        assert!(field("Uid:").starts_with(uid.trim()), "{proc_status}");
        assert_eq!(field("CapEff:"), "000000c000001000", "{proc_status}");
        assert_eq!(
            self.exec_ok(&["stat", "-c", "%U", "/sys/fs/bpf/portfwd"])
                .trim(),
            "portfwd"
        );

        let get = |port: u16| {
            let addr = SocketAddr::from(([198, 51, 100, 1], port));
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match http_get(remote, addr, Duration::from_secs(2)) {
                    Ok(body) => return body,
                    Err(err) if Instant::now() > deadline => {
                        panic!("{addr}: {err}\njournal:\n{}", self.journal())
                    }
                    Err(_) => thread::sleep(Duration::from_millis(300)),
                }
            }
        };
        assert!(get(8080).contains("hello from the LAN host"));

        // A changed share, applied by `systemctl reload` (SIGHUP).
        root.configure(&[(8080, "10.77.0.10:80"), (8081, "10.77.0.10:8000")]);
        self.exec_ok(&["systemctl", "reload", "portfwd"]);
        assert!(get(8081).contains("the second server"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.show("StatusText").starts_with("2 share(s)") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        assert!(self.show("StatusText").starts_with("2 share(s)"));

        // The journal: the daemon's lines without times of their own, at their priorities.
        let journal = self.journal();
        assert!(journal.contains("reloaded shares"), "{journal}");
        assert!(
            !journal.contains("<6>") && !journal.contains(" INFO "),
            "{journal}"
        );
        let warnings = self
            .exec(&[
                "journalctl",
                "-u",
                "portfwd",
                "-p",
                "warning",
                "-o",
                "cat",
                "--no-pager",
            ])
            .1;
        assert!(
            !warnings.contains("reloaded shares"),
            "info is not a warning:\n{warnings}"
        );

        // kill -9: Restart=on-failure brings it back, and with it the shares.
        self.exec_ok(&["kill", "-9", &pid]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while (self.show("MainPID") == pid || self.show("ActiveState") != "active")
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(self.show("ActiveState"), "active", "{}", self.journal());
        assert_ne!(self.show("MainPID"), pid);
        assert_eq!(self.show("NRestarts"), "1");
        assert!(get(8080).contains("hello from the LAN host"));
        assert!(get(8081).contains("the second server"));
    }

    fn remove_and_purge(&self, root: &Root) {
        // remove keeps the state and the pinned objects' directory; purge deletes them.
        self.exec_ok(&["dpkg", "-r", "portfwd"]);
        assert_ne!(self.show("ActiveState"), "active");
        self.exec_ok(&["test", "-f", "/var/lib/portfwd/api-token"]);
        self.exec_ok(&["test", "-d", "/sys/fs/bpf/portfwd"]);
        self.exec_ok(&["test", "-f", "/etc/portfwd/portfwd.toml"]);
        self.exec_ok(&["dpkg", "-P", "portfwd"]);
        let (kept, _) = self.exec(&["test", "-e", "/var/lib/portfwd"]);
        assert!(!kept, "purge leaves /var/lib/portfwd");
        let (kept, _) = self.exec(&["test", "-e", "/sys/fs/bpf/portfwd"]);
        assert!(!kept, "purge leaves /sys/fs/bpf/portfwd");
        assert!(!root.bpffs.join("portfwd").exists());
    }
}
