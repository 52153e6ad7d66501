//! Forwarding never stops: the maps and links are pinned, so packets through a share go on
//! while the daemon is killed, stopped, restarted or upgraded, and a lease ends at its
//! deadline even with no daemon running. Each case is measured with a sequence-numbered UDP
//! stream from the remote host through a share, counted at the LAN host, with the kernel's own
//! forwarding blocked (only XDP forwards). Needs root and a mounted bpffs (`cargo xtask test`
//! mounts it).

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, UdpSocket},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::{
    Daemon, Lab, external, http_get, http_request, portfwd_bin, serve_http, tcp_reaches_lan,
    temp_dir, upnpc,
};

/// Datagrams per second of the stream.
const RATE: u32 = 1000;
/// The share the stream goes through, and the LAN host's port behind it.
const SHARE: &str = "udp:5300=10.77.0.10:5400";

/// A sequence-numbered UDP stream through the lab's router to the LAN host.
struct Stream {
    received: Arc<Mutex<Vec<(u32, Instant)>>>,
    sent: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

/// What the LAN host got of a stream.
struct Count {
    sent: u32,
    lost: Vec<u32>,
    received: Vec<(u32, Instant)>,
    started: Instant,
}

impl Stream {
    /// To the stream's share, [`SHARE`].
    fn start(lab: &Lab) -> Self {
        Self::start_to(lab, 5300)
    }

    /// To external port `port`, which must lead to the LAN host's port 5400.
    fn start_to(lab: &Lab, port: u16) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let listener = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            lab.lan.spawn(move || {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5400)).expect("bind");
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((4, _)) = socket.recv_from(&mut buf) {
                        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        received.lock().expect("lock").push((seq, Instant::now()));
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("receiver up");
        let sender = {
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            lab.remote.spawn(move || {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
                let start = Instant::now();
                let mut seq = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    // Paced by the clock: RATE per second however late a wakeup is.
                    let due = u32::try_from(start.elapsed().as_millis() * u128::from(RATE) / 1000)
                        .unwrap_or(u32::MAX);
                    while seq < due {
                        let _ = socket.send_to(&seq.to_be_bytes(), external(port));
                        seq += 1;
                    }
                    sent.store(seq, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self {
            received,
            sent,
            stop,
            threads: vec![sender, listener],
            started: Instant::now(),
        }
    }

    /// Stops sending, lets the last datagrams arrive, and counts.
    fn finish(self) -> Count {
        let sent_before = self.sent.load(Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("stream thread");
        }
        let sent = self.sent.load(Ordering::SeqCst).max(sent_before);
        let received = self.received.lock().expect("lock").clone();
        let got: BTreeSet<u32> = received.iter().map(|(s, _)| *s).collect();
        let lost = (0..sent).filter(|s| !got.contains(s)).collect();
        Count {
            sent,
            lost,
            received,
            started: self.started,
        }
    }
}

impl Count {
    fn assert_none_lost(&self, what: &str) {
        // Shown with --nocapture: the figures BENCHMARKS.md records.
        println!(
            "{what}: {} of {} datagrams lost ({RATE}/s)",
            self.lost.len(),
            self.sent
        );
        assert!(self.sent >= RATE, "{what}: only {} sent", self.sent);
        assert!(
            self.lost.is_empty(),
            "{what}: {} of {} datagrams lost (first {:?})",
            self.lost.len(),
            self.sent,
            &self.lost[..self.lost.len().min(10)]
        );
    }
}

/// A lab whose router forwards the share only through XDP, with the LAN host's HTTP server
/// for the UPnP lease.
fn lab(tag: &str) -> Lab {
    let lab = Lab::fresh(tag);
    serve_http(&lab.lan, 80, "hello from the LAN host");
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    lab.block_kernel_forwarding();
    lab
}

fn args(state: &std::path::Path) -> Vec<String> {
    [
        "--wan",
        "wan",
        "--lan",
        "lan",
        "--xdp-mode",
        "skb",
        "--share",
        SHARE,
        "--state-dir",
        state.to_str().expect("utf-8"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(lab: &Lab, bin: &std::path::Path, state: &std::path::Path) -> Daemon {
    let args = args(state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::try_start_bin(bin, &lab.router, &args).unwrap_or_else(|e| panic!("{e}"))
}

/// The UPnP lease every case keeps: TCP 8080 to the LAN host's web server for an hour.
fn lease(lab: &Lab) {
    let out = upnpc(
        lab,
        &[
            "-e",
            "lease",
            "-a",
            "10.77.0.10",
            "80",
            "8080",
            "TCP",
            "3600",
        ],
    );
    assert!(out.contains("is redirected to internal"), "{out}");
}

/// The UPnP lease is still there, forwarding, with about an hour left.
fn lease_kept(lab: &Lab) {
    assert!(tcp_reaches_lan(lab, 8080), "the UPnP lease forwards");
    let out = upnpc(lab, &["-l"]);
    let line = out
        .lines()
        .find(|l| l.contains("8080->10.77.0.10:80"))
        .unwrap_or_else(|| panic!("lease listed: {out}"));
    let left: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("lease time in {line}"));
    assert!((3500..=3600).contains(&left), "time kept: {line}");
}

/// The id of the XDP program on the router's `dev` (`ip -d link` says `prog/xdp id N`).
fn xdp_id(lab: &Lab, dev: &str) -> Option<u32> {
    let out = lab.router.ip(&["-d", "link", "show", dev]);
    let at = out.find("prog/xdp id ")?;
    out[at + 12..].split_whitespace().next()?.parse().ok()
}

/// A build of portfwd made for the upgrade tests (`cargo xtask test` builds them).
fn test_build(var: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run the suite with `cargo xtask test`, which builds it")
    }))
}

/// A daemon started on a fresh lab, the UPnP lease made, and the stream flowing for half a
/// second: where each restart case begins.
struct Running {
    lab: Lab,
    state: PathBuf,
    daemon: Daemon,
    stream: Stream,
}

fn running(tag: &str) -> Running {
    let lab = lab(tag);
    let state = temp_dir(tag);
    let daemon = start(&lab, &portfwd_bin(), &state);
    lease(&lab);
    let stream = Stream::start(&lab);
    thread::sleep(Duration::from_millis(500));
    Running {
        lab,
        state,
        daemon,
        stream,
    }
}

/// Starts `bin` on the case's state again and gives it half a second to take over.
fn restart(lab: &Lab, bin: &std::path::Path, state: &std::path::Path) -> Daemon {
    let daemon = start(lab, bin, state);
    thread::sleep(Duration::from_millis(500));
    daemon
}

#[test]
fn kill_9_and_a_2_second_pause_lose_nothing() {
    let Running {
        lab,
        state,
        daemon,
        stream,
    } = running("k9");
    daemon.kill();
    thread::sleep(Duration::from_secs(2));
    let _daemon = restart(&lab, &portfwd_bin(), &state);
    stream.finish().assert_none_lost("kill -9, 2 s, restart");
    lease_kept(&lab);
}

#[test]
fn sigterm_and_an_immediate_restart_lose_nothing() {
    let Running {
        lab,
        state,
        daemon,
        stream,
    } = running("st");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("forwarding goes on"), "{log}");
    let _daemon = restart(&lab, &portfwd_bin(), &state);
    stream.finish().assert_none_lost("SIGTERM and restart");
    lease_kept(&lab);
}

#[test]
fn an_upgrade_to_another_program_replaces_it_in_place_losing_nothing() {
    let Running {
        lab,
        state,
        daemon,
        stream,
    } = running("up");
    let before = (xdp_id(&lab, "wan"), xdp_id(&lab, "lan"));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    let _daemon = restart(&lab, &test_build("PORTFWD_BIN_PROGRAM_TEST"), &state);
    stream
        .finish()
        .assert_none_lost("upgrade to another program");
    let after = (xdp_id(&lab, "wan"), xdp_id(&lab, "lan"));
    assert!(after.0.is_some() && after.1.is_some(), "{after:?}");
    assert_ne!(before, after, "the new program runs");
    lease_kept(&lab);
    assert!(
        lab.router.pins("wan").join("maps-v4").exists(),
        "the same maps"
    );
}

#[test]
fn a_layout_change_migrates_the_maps_losing_nothing_and_a_newer_layout_is_refused() {
    let Running {
        lab,
        state,
        daemon,
        stream,
    } = running("ly");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    let upgraded = restart(&lab, &test_build("PORTFWD_BIN_LAYOUT_TEST"), &state);
    let pins = lab.router.pins("wan");
    assert!(pins.join("maps-v5").exists(), "new maps beside the old");
    assert!(
        !pins.join("maps-v4").exists(),
        "the old ones removed once replaced"
    );
    lease_kept(&lab);
    let (status, log) = upgraded.stop();
    assert!(status.success(), "{log}");
    // Back to the older build: refused, and what runs is left as it is.
    let args = args(&state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = Daemon::try_start(&lab.router, &args)
        .err()
        .expect("refused");
    assert!(refused.contains("newer than this portfwd's"), "{refused}");
    thread::sleep(Duration::from_millis(300));
    stream
        .finish()
        .assert_none_lost("layout migration, and a refused downgrade");
}

#[test]
fn with_the_daemon_stopped_a_lease_ends_at_its_deadline() {
    let lab = lab("dl");
    // No static share: the LAN host's port 5400 is the lease's alone.
    let daemon = Daemon::in_lab(&lab, "skb", &[]);
    // A 3 s lease for the stream's port, made by the LAN host.
    let out = upnpc(
        &lab,
        &[
            "-e",
            "short",
            "-a",
            "10.77.0.10",
            "5400",
            "5301",
            "UDP",
            "3",
        ],
    );
    assert!(out.contains("is redirected to internal"), "{out}");
    let leased = Instant::now();
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    // The stream goes to the leased port this time.
    let stream = Stream::start_to(&lab, 5301);
    thread::sleep(Duration::from_secs(4));
    let count = stream.finish();
    let deadline = leased + Duration::from_secs(3);
    let before = count
        .received
        .iter()
        .filter(|(_, at)| *at < deadline)
        .count();
    let late = count
        .received
        .iter()
        .filter(|(_, at)| *at > deadline + Duration::from_millis(200))
        .count();
    assert!(before > 500, "forwarded until the deadline: {before}");
    assert_eq!(
        late, 0,
        "nothing after it ({} since {:?})",
        late, count.started
    );
}

#[test]
fn down_detaches_both_programs_and_removes_the_pins() {
    let lab = lab("dn");
    let daemon = Daemon::in_lab(&lab, "skb", &["--share", SHARE]);
    let pins = lab.router.pins("wan");
    assert!(pins.exists(), "pinned in {}", pins.display());
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(
        xdp_id(&lab, "wan").is_some(),
        "still forwarding after SIGTERM"
    );
    let (ok, out) = portfwd_tests::portfwd_down(&lab);
    assert!(ok, "{out}");
    assert!(out.contains("detached"), "{out}");
    assert_eq!(xdp_id(&lab, "wan"), None, "no program on the WAN");
    assert_eq!(xdp_id(&lab, "lan"), None, "none on the LAN");
    assert!(!pins.exists(), "no pins left");
}

#[test]
fn a_wan_interface_made_again_gets_the_programs_back() {
    let lab = lab("re");
    let daemon = Daemon::in_lab(&lab, "skb", &["--share", "tcp:8080=10.77.0.10:80"]);
    assert!(tcp_reaches_lan(&lab, 8080));
    let old = xdp_id(&lab, "wan");
    lab.recreate_wan();
    lab.learn_remote_neighbour();
    let back = (0..50).any(|_| {
        thread::sleep(Duration::from_millis(100));
        http_get(&lab.remote, external(8080), Duration::from_millis(500))
            .is_ok_and(|b| b.starts_with("hello from the LAN host"))
    });
    assert!(back, "the share forwards again: {}", daemon.stderr());
    assert!(
        xdp_id(&lab, "wan").is_some(),
        "attached to the new interface"
    );
    let _ = old;
    let (_, log) = daemon.stop();
    assert!(log.contains("interface_attached"), "{log}");
}

#[test]
fn sigterm_with_a_long_poll_open_exits_within_2_seconds() {
    let lab = lab("lp");
    let daemon = Daemon::in_lab(&lab, "skb", &[]);
    let token =
        std::fs::read_to_string(daemon.state_dir().expect("own").join("api-token")).expect("token");
    let auth = format!("Bearer {}", token.trim());
    thread::scope(|scope| {
        let poll = scope.spawn(|| {
            http_request(
                &lab.router,
                "127.0.0.1:9780".parse().expect("addr"),
                "GET",
                "/api/v1/events?after=999999&wait=60",
                &[("Authorization", &auth)],
                "",
            )
        });
        thread::sleep(Duration::from_millis(500));
        let stopping = Instant::now();
        let (status, log) = daemon.stop();
        let took = stopping.elapsed();
        assert!(status.success(), "{log}");
        assert!(took < Duration::from_secs(2), "took {took:?}: {log}");
        let _ = poll.join();
    });
}
