//! What the systemd service relies on, tested on the real binary without systemd:
//! - the notify protocol: `READY=1` with a `STATUS=` once the daemon forwards, `STATUS=` again
//!   when the table changes, `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM,
//!   all on a `NOTIFY_SOCKET` this test listens on (as systemd does);
//! - `check-config`: without root and without a network, valid and invalid files, each error
//!   with its line.
//!
//! The booted-systemd version of the first (Type=notify, reload, Restart=) is in `package.rs`.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use portfwd_tests::{Lab, cli_ok, portfwd_bin, temp_dir};

/// The next datagram on `socket` that contains `what`, within `timeout`; every datagram read
/// on the way is returned too.
fn wait_for(socket: &UnixDatagram, what: &str, timeout: Duration) -> (Option<String>, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .expect("timeout");
        let Ok(n) = socket.recv(&mut buf) else { break };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.contains(what) {
            return (Some(message), seen);
        }
        seen.push(message);
    }
    (None, seen)
}

#[test]
fn tells_systemd_ready_status_watchdog_and_stopping() {
    let lab = Lab::fresh("sdn");
    portfwd_tests::serve_http(&lab.lan, 80, "hello from the LAN host");
    let dir = temp_dir("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let state = dir.join("state");
    let mut child = lab
        .router
        .command(portfwd_bin().to_str().expect("utf-8"))
        .args(["run", "--wan", "wan", "--lan", "lan", "--xdp-mode", "skb"])
        .args(["--share", "tcp:8080=10.77.0.10:80", "--state-dir"])
        .arg(&state)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portfwd");
    let stdout = child.stdout.take().expect("stdout");
    let (ready, before) = wait_for(&socket, "READY=1", Duration::from_secs(20));
    let ready = ready.unwrap_or_else(|| panic!("no READY=1; got {before:?}"));
    // READY comes with the first status, and at the point the ready line is printed.
    assert!(
        ready.contains(
            "STATUS=1 share(s), 1 active; wan wan link up; external address 198.51.100.1"
        ),
        "{ready}"
    );
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    assert!(line.contains("portfwd ready"), "{line}");
    assert!(
        portfwd_tests::tcp_reaches_lan(&lab, 8080),
        "forwarding at READY=1"
    );

    // Two pings within a second: WATCHDOG_USEC is 0.4 s, pinged every 0.2 s.
    let started = Instant::now();
    for _ in 0..2 {
        let (ping, _) = wait_for(&socket, "WATCHDOG=1", Duration::from_secs(1));
        assert!(ping.is_some(), "no WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    cli_ok(&lab, &state, &["share", "add", "udp:5300=10.77.0.10:5353"]);
    let (status, seen) = wait_for(&socket, "STATUS=2 share(s)", Duration::from_secs(5));
    assert!(status.is_some(), "no STATUS after a change: {seen:?}");

    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (stopping, seen) = wait_for(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(stopping.is_some(), "no STOPPING=1: {seen:?}");
    assert!(child.wait().expect("wait").success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_notify_socket_nothing_is_sent_and_a_bad_one_is_no_reason_to_stop() {
    let lab = Lab::fresh("sdx");
    let mut child = lab
        .router
        .command(portfwd_bin().to_str().expect("utf-8"))
        .args(["run", "--wan", "wan", "--lan", "lan", "--xdp-mode", "skb"])
        .arg("--state-dir")
        .arg(temp_dir("notify-bad"))
        .env("NOTIFY_SOCKET", "/nonexistent/notify")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portfwd");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    assert!(line.contains("portfwd ready"), "{line}");
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("READY=1") && log.contains("No such file"),
        "{log}"
    );
}

/// `portfwd check-config FILE` as user nobody in a namespace without a network.
fn check_config(text: &str) -> (bool, String, String) {
    let dir = temp_dir("check-config");
    let file = dir.join("portfwd.toml");
    std::fs::write(&file, text).expect("write");
    // nobody must be able to read it: temp_dir is root's.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status()
        .expect("chmod");
    let out = Command::new("unshare")
        .args([
            "--net",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(portfwd_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run check-config");
    let _ = std::fs::remove_dir_all(dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_what_a_valid_file_applies() {
    let (ok, out, err) = check_config(
        "wan = \"eth0\"\nlan = \"eth1\"\n\n[[share]]\nname = \"nas\"\nproto = \"tcp\"\nexternal_port = 8443\ninternal = \"192.168.1.10:443\"\n\n[upnp]\nmax_lease = 7200\n[[upnp.rule]]\naction = \"allow\"\nexternal_ports = \"20000-29999\"\nclients = \"192.168.1.0/24\"\n\n[pcp]\nthird_party = true\n",
    );
    assert!(ok, "{out}{err}");
    for expected in [
        "valid",
        "interfaces   wan eth0, lan eth1",
        "shares       1",
        "tcp:8443 -> 192.168.1.10:443 \"nas\"",
        "exposed host none",
        "upnp         on: IGD:2 on port 5000, secure mode on, leases at most 7200 s",
        "rule 1     allow external ports 20000-29999 to internal ports 1-65535 for clients 192.168.1.0/24",
        "nat-pmp/pcp  on, third party on, lifetimes 120-86400 s (capped at 7200 s)",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
}

#[test]
fn check_config_names_the_line_of_each_error() {
    for (text, line, words) in [
        (
            "wan = \"eth0\"\nlan = \"eth1\"\nxdp_mode = \"turbo\"\n",
            3,
            "turbo",
        ),
        (
            "wan = \"eth0\"\nlan = \"eth1\"\n\n[upnp]\nquota_total = -1\n",
            5,
            "-1",
        ),
        (
            "wan = \"eth0\"\nlan = \"eth1\"\n[pcp]\nmin_lifetime = 900\nmax_lifetime = 60\n",
            4,
            "min_lifetime",
        ),
        ("wan = \"eth0\"\nlan = \"eth0\"\n", 2, "both eth0"),
        (
            "wan = \"eth0\"\nlan = \"eth1\"\n[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.2:80\"\n[[share]]\nproto = \"tcp\"\nexternal_port = 80\ninternal = \"10.0.0.3:80\"\n",
            7,
            "tcp:80 is given twice",
        ),
        (
            "wan = \"eth0\"\nlan = \"eth1\"\nlog_level = \"loud\"\n",
            3,
            "loud",
        ),
    ] {
        let (ok, out, err) = check_config(text);
        assert!(!ok, "{text} passed: {out}");
        assert!(
            err.contains(&format!("line {line}:")) && err.contains(words),
            "{text}\n=> {err}(expected line {line} and {words:?})"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let (ok, _, err) = check_config("lan = \"eth1\"\n");
    assert!(!ok && err.contains("set `wan` in the config file"), "{err}");
}
