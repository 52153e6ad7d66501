//! `cargo xtask bench`: forwarding rates side by side, and the WAN program's cost per packet.
//!
//! **Rates.** There is no pktgen here (no kernel modules), so the traffic comes from `lab_gen`
//! run through `BPF_PROG_TEST_RUN` with live frames on the remote host's veth: every frame is
//! transmitted (`XDP_TX`) to the router, in one continuous call (many short calls halve the
//! rate). The router forwards 64-byte UDP frames to the LAN host, where `lab_sink` counts and
//! drops them; the rate is frames counted per second of the generator's call. Three router
//! configurations are measured in turn on the same lab, each several times (median):
//!
//! * portfwd: the real daemon, native XDP, one share;
//! * nftables: a DNAT rule in prerouting and kernel forwarding, what miniupnpd programs (a pass
//!   program on the router's WAN veth, which native veth needs to accept `XDP_TX` frames);
//! * bare redirect: `lab_redirect`, every frame to the LAN with fixed MACs: the ceiling.
//!
//! The generator shares a CPU with the path under test, so the rates are the machine's
//! combined cost, comparable with each other rather than with a NIC's line rate.
//!
//! **Cost per packet.** The WAN program under plain `test_run` (no traffic), for a packet that
//! hits a share and one that misses, with 1, 1,000 and 65,536 shares. A hit rewrites the frame,
//! so repeated runs of the same frame go through `lab_reset`, which restores the header and
//! tail-calls the program; the same wrapper around a pass program is measured too and
//! subtracted.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, ProgramArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use portfwd::{
    dataplane::Dataplane,
    share::{LanSubnet, ShareSpec},
    table::Table,
};
use portfwd_common::PROG_WAN;
use portfwd_tests::{Daemon, EXTERNAL, LAN_HOST, Lab, Netns, REMOTE, load_lab_object, sh};

const FRAME_LEN: usize = 64;
const BENCH_PORT: u16 = 9000;
const ROUNDS: usize = 5;

/// A 64-byte Ethernet/IPv4/UDP frame from the remote host to the external address, UDP
/// checksum 0 (none).
fn frame(dmac: [u8; 6], smac: [u8; 6], dport: u16) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = u16::try_from(FRAME_LEN - 14).expect("small");
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&REMOTE.octets());
    ip[16..20].copy_from_slice(&EXTERNAL.octets());
    let check = portfwd_tests::checksum(ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// `struct xdp_md` for `test_run`: `data` 0, `data_end` the frame length, the ingress interface.
fn xdp_md(ingress_ifindex: u32) -> [u8; 24] {
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&u32::try_from(FRAME_LEN).expect("small").to_ne_bytes());
    md[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    md
}

fn header(frame: &[u8; FRAME_LEN]) -> [u8; 42] {
    let mut h = [0u8; 42];
    h.copy_from_slice(&frame[..42]);
    h
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("no program {name}"))
        .try_into()
        .expect("xdp");
    program
        .load()
        .unwrap_or_else(|e| panic!("load {name}: {e}"));
    program
}

/// Loads `name` from the lab object and attaches it natively to `ifname` in `ns`.
fn attach_lab_program(ns: &Netns, ifname: &str, name: &'static str, setup: fn(&mut Ebpf)) -> Ebpf {
    let ifindex = ns.ifindex(ifname);
    ns.run(move || {
        let mut ebpf = load_lab_object();
        setup(&mut ebpf);
        program(&mut ebpf, name)
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .unwrap_or_else(|e| panic!("attach {name}: {e}"));
        ebpf
    })
}

/// The traffic source: `lab_gen`, run from the bench's main thread, which has entered the
/// remote host's namespace (the live-frame `test_run` looks the ingress interface up there).
struct Generator {
    ebpf: Ebpf,
    ifindex: u32,
    frame: [u8; FRAME_LEN],
}

impl Generator {
    /// Transmits `packets` frames in one call; returns how long it took.
    fn send(&self, packets: u32) -> Duration {
        let program: &Xdp = self
            .ebpf
            .program("lab_gen")
            .expect("lab_gen")
            .try_into()
            .expect("xdp");
        let md = xdp_md(self.ifindex);
        let start = Instant::now();
        program
            .test_run(TestRunOptions {
                data_in: Some(&self.frame),
                ctx_in: Some(&md),
                repeat: packets,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            })
            .expect("live-frame test_run");
        start.elapsed()
    }
}

/// Frames counted by the sink so far.
fn sunk(sink: &PerCpuArray<&MapData, u64>) -> u64 {
    sink.get(&0, 0).expect("sink counter").iter().sum()
}

/// The router configurations compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Portfwd,
    Nftables,
    Bare,
}

impl Path {
    const ALL: [Self; 3] = [Self::Portfwd, Self::Nftables, Self::Bare];

    const fn name(self) -> &'static str {
        match self {
            Self::Portfwd => "portfwd (XDP DNAT)",
            Self::Nftables => "nftables DNAT + forwarding",
            Self::Bare => "bare XDP redirect (ceiling)",
        }
    }
}

/// Deletes the DNAT table, then (field order) detaches the pass program.
struct Nft {
    router: String,
    _pass: Ebpf,
}
impl Drop for Nft {
    fn drop(&mut self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "delete table ip bench",
        ]);
    }
}

/// The daemon for the portfwd path. Stopped, it leaves its programs pinned and attached
/// (that is the point of pinning); the next path needs the interface back, as `portfwd down`
/// gives it.
struct Portfwd {
    daemon: Option<Daemon>,
    pins: std::path::PathBuf,
}

impl Drop for Portfwd {
    fn drop(&mut self) {
        drop(self.daemon.take());
        portfwd_tests::remove_pins(&self.pins);
    }
}

/// Sets the router up for `path`; dropping the result takes it down again.
fn set_up(path: Path, lab: &Lab) -> Box<dyn std::any::Any> {
    match path {
        Path::Portfwd => {
            let share = format!("udp:{BENCH_PORT}={LAN_HOST}:{BENCH_PORT}");
            Box::new(Portfwd {
                daemon: Some(Daemon::in_lab(lab, "native", &["--share", &share])),
                pins: lab.router.pins("wan"),
            })
        }
        Path::Nftables => {
            let pass = attach_lab_program(&lab.router, "wan", "lab_pass", |_| {});
            lab.router.exec(&[
                "nft",
                &format!(
                    "add table ip bench; add chain ip bench pre {{ type nat hook prerouting priority dstnat; }}; \
                     add rule ip bench pre iifname wan udp dport {BENCH_PORT} dnat to {LAN_HOST}:{BENCH_PORT}"
                ),
            ]);
            Box::new(Nft {
                router: lab.router.name.clone(),
                _pass: pass,
            })
        }
        Path::Bare => {
            let mut target = [0u8; 16];
            target[..4].copy_from_slice(&lab.router.ifindex("lan").to_ne_bytes());
            target[4..10].copy_from_slice(&lab.lan.mac("eth0"));
            target[10..16].copy_from_slice(&lab.router.mac("lan"));
            Box::new(attach_redirect(&lab.router, target))
        }
    }
}

/// Packets per second delivered to the sink during one generator call.
fn one_run(generator: &Generator, sink: &PerCpuArray<&MapData, u64>, packets: u32) -> f64 {
    let before = sunk(sink);
    let elapsed = generator.send(packets);
    thread::sleep(Duration::from_millis(100));
    let delivered = sunk(sink) - before;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = delivered as f64 / elapsed.as_secs_f64();
    rate
}

/// Keeps the generator (and so the softirq work it triggers, which runs where it runs) on one
/// CPU for every path, so that no path is measured with a different placement.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(packets: u32, record: bool) {
    let prefix = "pfbench";
    crate::lab_down(prefix);
    let lab = Lab::up(prefix);
    lab.learn_lan_neighbour();
    lab.learn_remote_neighbour();
    // The LAN host counts and drops.
    let sink_program = attach_lab_program(&lab.lan, "eth0", "lab_sink", |_| {});
    let sink: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(sink_program.map("SINK").expect("SINK")).expect("per-cpu array");
    let frame = frame(lab.router.mac("wan"), lab.remote.mac("eth0"), BENCH_PORT);
    let gen_ifindex = lab.remote.ifindex("eth0");
    lab.remote.enter();
    pin_to_cpu(0);
    let mut ebpf = load_lab_object();
    let mut template: Array<_, [u8; 42]> =
        Array::try_from(ebpf.map_mut("TEMPLATE").expect("TEMPLATE")).expect("array");
    template.set(0, header(&frame), 0).expect("template");
    program(&mut ebpf, "lab_gen");
    let generator = Generator {
        ebpf,
        ifindex: gen_ifindex,
        frame,
    };

    println!(
        "portfwd bench: {packets} frames of {FRAME_LEN} bytes per run, {ROUNDS} rounds of the three paths in turn, kernel {}",
        sh(&["uname", "-r"]).trim()
    );
    let mut rates: Vec<[f64; 3]> = Vec::new();
    for round in 1..=ROUNDS {
        let mut row = [0.0; 3];
        for (i, path) in Path::ALL.into_iter().enumerate() {
            let guard = set_up(path, &lab);
            // Warm up: next-hop caches, conntrack, page pools.
            generator.send(100_000);
            thread::sleep(Duration::from_millis(100));
            row[i] = one_run(&generator, &sink, packets);
            drop(guard);
        }
        println!(
            "  round {round}: portfwd {:.2}, nftables {:.2}, bare redirect {:.2} Mpps",
            row[0] / 1e6,
            row[1] / 1e6,
            row[2] / 1e6
        );
        rates.push(row);
    }
    let per_path = |i: usize| median(rates.iter().map(|r| r[i]).collect());
    let ratio = |a: usize, b: usize| median(rates.iter().map(|r| r[a] / r[b]).collect());
    let (portfwd, nftables, bare) = (per_path(0), per_path(1), per_path(2));

    let mut report = String::new();
    let _ = writeln!(
        report,
        "| path | Mpps (median) | vs nftables | vs bare redirect |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|");
    for (i, rate) in [(2, bare), (0, portfwd), (1, nftables)] {
        let _ = writeln!(
            report,
            "| {} | {:.2} | {:.2}x | {:.2} |",
            Path::ALL[i].name(),
            rate / 1e6,
            ratio(i, 1),
            ratio(i, 2)
        );
    }
    let _ = writeln!(
        report,
        "\nRatios are medians of the per-round ratios. portfwd / nftables = {:.2}x (bar: at least 4x); portfwd / bare redirect = {:.2} (bar: at least 0.85).",
        ratio(0, 1),
        ratio(0, 2)
    );
    println!("\n{report}");

    let cost = per_packet_cost(&lab);
    println!("{cost}");
    drop(sink_program);
    drop(generator);
    drop(lab);

    if record {
        record_results(packets, &report, &cost);
    }
}

fn attach_redirect(router: &Netns, target: [u8; 16]) -> Ebpf {
    let ifindex = router.ifindex("wan");
    router.run(move || {
        let mut ebpf = load_lab_object();
        let mut map: Array<_, [u8; 16]> =
            Array::try_from(ebpf.map_mut("REDIRECT").expect("REDIRECT")).expect("array");
        map.set(0, target, 0).expect("redirect target");
        program(&mut ebpf, "lab_redirect")
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .expect("attach lab_redirect");
        ebpf
    })
}

/// Nanoseconds per packet of the WAN program under `test_run`, as a Markdown table.
fn per_packet_cost(lab: &Lab) -> String {
    let wan_ifindex = lab.router.ifindex("wan");
    let ifindexes = (wan_ifindex, lab.router.ifindex("lan"));
    let hit = frame(lab.router.mac("wan"), lab.remote.mac("eth0"), BENCH_PORT);
    let miss = frame(
        lab.router.mac("wan"),
        lab.remote.mac("eth0"),
        BENCH_PORT + 1,
    );
    lab.router.run(move || {
        let mut out = String::from(
            "| shares | hit (ns/packet) | miss (ns/packet) |\n|---:|---:|---:|\n",
        );
        for shares in [1usize, 1_000, 65_536] {
            let (hit_ns, miss_ns) = cost_with(shares, ifindexes, &hit, &miss);
            let _ = writeln!(out, "| {shares} | {hit_ns:.1} | {miss_ns:.1} |");
        }
        out.push_str(
            "\n(hit: the header-restoring tail-call wrapper's own cost, measured around a pass program, is subtracted)\n",
        );
        out.push_str(&range_cost(ifindexes));
        out
    })
}

fn specs(count: usize) -> Vec<ShareSpec> {
    let mut specs = vec![
        format!("udp:{BENCH_PORT}={LAN_HOST}:{BENCH_PORT}")
            .parse::<ShareSpec>()
            .expect("spec"),
    ];
    specs.extend((1..count).map(|i| {
        format!("tcp:{i}={LAN_HOST}:{i}")
            .parse::<ShareSpec>()
            .expect("spec")
    }));
    specs
}

fn time_run(program: &Xdp, frame: &[u8; FRAME_LEN], md: &[u8; 24], expect: u32) -> f64 {
    const REPEAT: u32 = 2_000_000;
    let mut out = [0u8; FRAME_LEN];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(md),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })
        .expect("test_run");
    assert_eq!(result.return_value, expect, "unexpected XDP action");
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
    let ns = result.duration.as_nanos() as f64;
    ns
}

/// (hit, miss) nanoseconds per packet with `shares` shares installed.
fn cost_with(
    shares: usize,
    (wan_ifindex, lan_ifindex): (u32, u32),
    hit: &[u8; FRAME_LEN],
    miss: &[u8; FRAME_LEN],
) -> (f64, f64) {
    let table = table_with(shares, (wan_ifindex, lan_ifindex));
    let wan = table
        .maps()
        .as_any()
        .downcast_ref::<Dataplane>()
        .expect("the kernel's maps")
        .program(PROG_WAN)
        .expect("wan program");
    let md = xdp_md(wan_ifindex);

    let miss_ns = time_run(wan, miss, &md, aya_xdp::PASS);

    let mut wrapper = load_lab_object();
    let mut template: Array<_, [u8; 42]> =
        Array::try_from(wrapper.map_mut("TEMPLATE").expect("TEMPLATE")).expect("array");
    template.set(0, header(hit), 0).expect("template");
    program(&mut wrapper, "lab_pass");
    program(&mut wrapper, "lab_reset");
    let pass_fd = {
        let pass: &Xdp = wrapper
            .program("lab_pass")
            .expect("pass")
            .try_into()
            .expect("xdp");
        pass.fd().expect("fd").try_clone().expect("dup")
    };
    let wan_fd = wan.fd().expect("fd").try_clone().expect("dup");
    let mut next =
        ProgramArray::try_from(wrapper.take_map("NEXT").expect("NEXT")).expect("prog array");
    let reset: &Xdp = wrapper
        .program("lab_reset")
        .expect("reset")
        .try_into()
        .expect("xdp");

    next.set(0, &pass_fd, 0).expect("pass into NEXT");
    let overhead = time_run(reset, hit, &md, aya_xdp::PASS);
    next.set(0, &wan_fd, 0).expect("wan into NEXT");
    let hit_ns = time_run(reset, hit, &md, aya_xdp::REDIRECT) - overhead;
    (hit_ns, miss_ns)
}

/// The real data plane and share table in the router's namespace, with `shares` shares.
fn table_with(shares: usize, (wan_ifindex, lan_ifindex): (u32, u32)) -> Table {
    let dataplane = Dataplane::load(None).expect("load portfwd");
    let lan = vec![LanSubnet {
        addr: Ipv4Addr::new(10, 77, 0, 1),
        prefix_len: 24,
    }];
    let host = std::sync::Arc::new(portfwd::host::SystemHost::new(
        "wan".into(),
        wan_ifindex,
        lan_ifindex,
    ));
    let mut table = Table::builder(lan, Box::new(dataplane), host, wan_ifindex, lan_ifindex)
        .build(Instant::now())
        .expect("table");
    table.forwarding_changed().expect("generation");
    table.set_external(Some(EXTERNAL)).expect("external");
    table.replace_static(specs(shares)).expect("shares");
    table
}

/// Milliseconds to add and to remove a 1,000-port range through the table's owner into the
/// kernel maps (one element per port and one reply entry per internal port), medians of five.
fn range_cost(ifindexes: (u32, u32)) -> String {
    let mut table = table_with(1, ifindexes);
    let spec: ShareSpec = "udp:40000-40999=10.77.0.20:40000".parse().expect("range");
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        table.create(spec.clone()).expect("add the range");
        add.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        table
            .remove(spec.id, portfwd::table::By::Operator)
            .expect("remove the range");
        remove.push(started.elapsed().as_secs_f64() * 1e3);
    }
    format!(
        "\n| 1,000-port range | add (ms) | remove (ms) |\n|---|---:|---:|\n| through the table into the kernel maps | {:.1} | {:.1} |\n",
        median(add),
        median(remove)
    )
}

/// XDP action numbers (`enum xdp_action`).
mod aya_xdp {
    pub const PASS: u32 = 2;
    pub const REDIRECT: u32 = 4;
}

fn record_results(packets: u32, rates: &str, cost: &str) {
    let path = std::path::Path::new("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nRecorded by `cargo xtask bench --record`; see `tests/src/bin/portfwd-lab/bench.rs` for the method.\n"
            .to_owned()
    });
    let date = sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu = sh(&[
        "sh",
        "-c",
        "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2",
    ]);
    let _ = write!(
        text,
        "\n## {}\n\n`cargo xtask bench --packets {packets} --record`; kernel {}, {} CPUs ({}), generator pinned to CPU 0.\n\n{rates}\n{cost}",
        date.trim(),
        sh(&["uname", "-r"]).trim(),
        // Not available_parallelism: the bench thread is pinned to one CPU by now.
        sh(&["nproc", "--all"]).trim(),
        cpu.trim()
    );
    std::fs::write(path, text).expect("write BENCHMARKS.md");
    println!("recorded in BENCHMARKS.md");
}
