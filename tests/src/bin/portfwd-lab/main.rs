//! `portfwd-lab`: the demo, the standing lab and the benchmarks, run by `cargo xtask run`,
//! `cargo xtask lab`, `cargo xtask bench` and `cargo xtask bench control` once xtask has
//! installed the toolchain. Needs root.

mod bench;
mod control;

use std::{
    process::{Command, ExitCode},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use portfwd_tests::{Daemon, Lab, portfwd_bin};

/// Lab prefix of `cargo xtask lab up`.
const LAB: &str = "pflab";
/// Lab prefix of the `cargo xtask run` demo.
const DEMO: &str = "pfdemo";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !portfwd_tests::is_root() {
        eprintln!("portfwd-lab: needs root (network namespaces, XDP)");
        return ExitCode::FAILURE;
    }
    catch_interrupts();
    match args.as_slice() {
        ["demo"] => demo(),
        ["up"] => up(),
        ["down"] => {
            lab_down(LAB);
            lab_down(DEMO);
            println!("removed the lab namespaces ({LAB}-*, {DEMO}-*), if there were any");
        }
        ["bench", "--packets", packets, rest @ ..] => {
            let Ok(packets) = packets.parse() else {
                eprintln!("portfwd-lab: --packets takes a number");
                return ExitCode::FAILURE;
            };
            bench::run(packets, rest == ["--record"]);
        }
        ["bench-control", flags @ ..]
            if flags.iter().all(|f| matches!(*f, "--record" | "--quick")) =>
        {
            control::run(&control::Options {
                record: flags.contains(&"--record"),
                quick: flags.contains(&"--quick"),
            });
        }
        ["hold-connections", count, seconds] => {
            let (Ok(count), Ok(seconds)) = (count.parse(), seconds.parse()) else {
                eprintln!("portfwd-lab: hold-connections COUNT SECONDS");
                return ExitCode::FAILURE;
            };
            control::hold_connections(count, Duration::from_secs(seconds));
        }
        _ => {
            eprintln!(
                "usage: portfwd-lab demo | up | down | bench --packets N [--record] | bench-control [--quick] [--record]"
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C or SIGTERM came: long loops end early, and the lab still comes down.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set [`INTERRUPTED`] instead of ending the process, so that the lab is
/// always taken down.
fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn wait_for_interrupt() {
    while !interrupted() {
        thread::sleep(Duration::from_millis(100));
    }
}

fn lab_down(prefix: &str) {
    for ns in ["remote", "router", "lan"] {
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{prefix}-{ns}")])
            .output();
    }
}

/// A lab with the pass programs native mode needs and the LAN host's servers.
fn serving_lab(prefix: &str) -> Lab {
    lab_down(prefix);
    let mut lab = Lab::up(prefix);
    lab.attach_host_pass_programs();
    portfwd_tests::serve_http(&lab.lan, 80, "hello from the LAN host");
    portfwd_tests::serve_udp_echo(&lab.lan, 5353);
    lab
}

fn up() {
    let lab = serving_lab(LAB);
    println!(
        "lab up: namespaces {LAB}-remote (198.51.100.2), {LAB}-router (wan 198.51.100.1, lan 10.77.0.1), {LAB}-lan (10.77.0.10).\n\
         The LAN host serves HTTP on :80 and UDP echo on :5353. Start portfwd in the router:\n  \
         ip netns exec {LAB}-router {} run --wan wan --lan lan --share tcp:8080=10.77.0.10:80\n\
         then: ip netns exec {LAB}-remote curl http://198.51.100.1:8080/\n\
         Ctrl-C here takes the lab down.",
        portfwd_bin().display()
    );
    wait_for_interrupt();
    drop(lab);
    println!("lab down");
}

fn demo() {
    let lab = serving_lab(DEMO);
    // A second page for the share the next steps add: port 80 is shared already, and one
    // internal port is shared under one external port only (409 otherwise).
    portfwd_tests::serve_http(&lab.lan, 8000, "hello from the LAN host's second server");
    let daemon = Daemon::start(
        &lab.router,
        &[
            "--wan",
            "wan",
            "--lan",
            "lan",
            "--share",
            "tcp:8080=10.77.0.10:80",
            "--share",
            "udp:5300=10.77.0.10:5353",
        ],
    );
    println!("{}", daemon.ready_line);
    let cli = format!("ip netns exec {DEMO}-router {}", portfwd_bin().display());
    let dir = daemon
        .state_dir()
        .map_or_else(String::new, |d| format!(" --state-dir {}", d.display()));
    println!(
        "\nThe demo lab is up:\n  \
         {DEMO}-remote 198.51.100.2  --  {DEMO}-router: portfwd, external address 198.51.100.1  --  {DEMO}-lan 10.77.0.10\n\
         Shares: tcp:8080 -> 10.77.0.10:80 (HTTP), udp:5300 -> 10.77.0.10:5353 (echo); the LAN host\n  \
         also serves HTTP on :8000, not shared yet.\n\n\
         Try, from another terminal:\n  \
         ip netns exec {DEMO}-remote curl http://198.51.100.1:8080/\n  \
         ip -n {DEMO}-router link show wan        # prog/xdp portfwd_wan is attached\n  \
         {cli} share list{dir}\n  \
         {cli} share add tcp:8081=10.77.0.10:8000 --name web2{dir}\n  \
         ip netns exec {DEMO}-remote curl http://198.51.100.1:8081/\n  \
         {cli} events --follow{dir}\n  \
         ip netns exec {DEMO}-router curl -s http://127.0.0.1:9780/metrics | grep share_packets\n\n\
         Ctrl-C stops portfwd and takes the lab down."
    );
    wait_for_interrupt();
    let (status, log) = daemon.stop();
    if !log.is_empty() {
        println!("{log}");
    }
    drop(lab);
    println!("portfwd stopped ({status}); lab down");
}
