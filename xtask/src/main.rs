//! `cargo xtask`: build, run, lab, test, lint and bench helpers for portfwd.
//!
//! Every command first makes sure the machine has what it needs (the nightly toolchain's
//! `rust-src`, LLVM's development packages and `bpf-linker` for the XDP programs; `iproute2`,
//! `ethtool`, `nftables` and friends for the lab), installs what is missing with rustup, apt and
//! cargo, and says so.

mod deb;
mod fuzz;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "portfwd's build, run, lab, test and bench helpers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Show everything the builds print (the eBPF build's cargo lines too).
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, then build everything (release).
    Build,
    /// With no arguments: the demo lab with a sample share. With `-- ARGS`: `portfwd run ARGS`.
    Run {
        /// Arguments for `portfwd run`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole test suite: unit tests, XDP packet tests and the end-to-end tests (root).
    Test,
    /// rustfmt and clippy (-D warnings) on the userspace, eBPF and fuzz crates.
    Lint,
    /// The Debian package: target/debian/portfwd_VERSION-1_ARCH.deb.
    Deb {
        /// Cross-build for this target (aarch64-unknown-linux-gnu for arm64 boards).
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
    },
    /// The cargo-fuzz targets (nightly; installs cargo-fuzz under target/tools): every target
    /// in turn, or TARGET, each for --time seconds from its seeds and the corpus kept in
    /// target/fuzz/corpus. `TARGET -- FILE...` runs TARGET on those inputs only (a crash's).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// One of soap, ssdp, pcp, http, config, api, store, ids, ddns, dyndns2, page.
        target: Option<String>,
        /// Inputs to run TARGET on, after `--`.
        #[arg(last = true)]
        inputs: Vec<String>,
    },
    /// Bring the netns lab up (until Ctrl-C) or clean up a leftover one.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Packets per second through portfwd, nftables DNAT and a bare XDP redirect, side by side,
    /// and nanoseconds per packet of the WAN program under `test_run`. `bench control`: the
    /// control plane instead (UPnP calls per second, portfwd and miniupnpd side by side).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        which: Option<BenchWhich>,
        /// Packets per measurement.
        #[arg(long, default_value_t = 8_000_000)]
        packets: u32,
        /// Append the results to BENCHMARKS.md.
        #[arg(long)]
        record: bool,
    },
}

#[derive(Subcommand)]
enum BenchWhich {
    /// UPnP AddPortMapping + DeletePortMapping per second and latency, portfwd and Debian's
    /// miniupnpd side by side, at 0, 1,000 and 10,000 mappings and with 50,000 TCP connections
    /// open on the box; daemon RSS. Installs miniupnpd-nftables. Takes up to about 10 minutes.
    Control {
        /// Append the results to BENCHMARKS.md.
        #[arg(long)]
        record: bool,
        /// Every part, small (100 and 2,000 mappings with 5 s per fill, 5,000 connections,
        /// 1 s measurements): for development, about a minute.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Create the lab and keep it (and the pass programs native mode needs) until Ctrl-C.
    Up,
    /// Delete the lab's namespaces.
    Down,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        // SAFETY: no other thread exists yet; the cargo runs below inherit it.
        unsafe { std::env::set_var("PORTFWD_EBPF_VERBOSE", "1") };
    }
    let result = match cli.command {
        Cmd::Build => {
            setup::toolchain().and_then(|()| cargo(&["build", "--release", "-p", "portfwd-user"]))
        }
        Cmd::Run { args } => run(&args),
        Cmd::Test => test(),
        Cmd::Lint => lint(),
        Cmd::Deb { target } => deb::build(target.as_deref()).map(|_| ()),
        Cmd::Fuzz {
            time,
            target,
            inputs,
        } => setup::toolchain().and_then(|()| {
            fuzz::fuzz(
                &root(),
                target.as_deref(),
                std::time::Duration::from_secs(time),
                &inputs,
            )
        }),
        Cmd::Lab {
            action: LabAction::Up,
        } => lab_driver(&["up"]),
        Cmd::Lab {
            action: LabAction::Down,
        } => lab_driver(&["down"]),
        Cmd::Bench {
            which: Some(BenchWhich::Control { record, quick }),
            ..
        } => {
            let mut args = vec!["bench-control"];
            if quick {
                args.push("--quick");
            }
            if record {
                args.push("--record");
            }
            setup::miniupnpd().and_then(|()| lab_driver(&args))
        }
        Cmd::Bench {
            which: None,
            packets,
            record,
        } => {
            let packets = packets.to_string();
            let mut args = vec!["bench", "--packets", &packets];
            if record {
                args.push("--record");
            }
            lab_driver(&args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs cargo (the toolchain xtask was started with) in the workspace root.
fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), |dir| root().join(dir))
}

/// Whether xtask runs as root.
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{what} needs root (network namespaces, XDP, BPF maps): run it as root, e.g. `sudo -E cargo xtask ...`"
        );
    }
    Ok(())
}

fn test() -> Result<()> {
    require_root("cargo xtask test")?;
    setup::toolchain()?;
    setup::lab_tools()?;
    setup::test_clients()?;
    setup::bpffs()?;
    let target = target_dir();
    let bin = target.join("debug/portfwd");
    // The upgrade tests' builds: another program (same maps), and maps of the next layout.
    // Each is built, then copied aside before the next build replaces the binary.
    let upgrades = target.join("upgrade");
    std::fs::create_dir_all(&upgrades).context("creating target/upgrade")?;
    for (feature, var) in [
        ("program-test", "PORTFWD_BIN_PROGRAM_TEST"),
        ("layout-test", "PORTFWD_BIN_LAYOUT_TEST"),
    ] {
        cargo(&[
            "build",
            "-p",
            "portfwd-user",
            "--bins",
            "--features",
            feature,
        ])?;
        let copy = upgrades.join(format!("portfwd-{feature}"));
        std::fs::copy(&bin, &copy).with_context(|| format!("copying {}", copy.display()))?;
        // SAFETY (of the environment): set before any thread exists; the tests read it.
        unsafe { std::env::set_var(var, &copy) };
    }
    // The end-to-end tests run the real binary; build it last so they test this tree.
    cargo(&["build", "-p", "portfwd-user", "--bins"])?;
    // The packages, for both architectures, and a Debian root to install them into: the
    // package tests (tests/tests/package.rs) check, install and boot them.
    setup::package_tests()?;
    let amd64 = deb::build(None)?;
    let arm64 = deb::build(Some(deb::AARCH64))?;
    let debian_root = setup::debian_root(&target)?;
    // SAFETY (of the environment): set before any thread exists; the tests read it.
    unsafe {
        std::env::set_var("PORTFWD_BIN", &bin);
        std::env::set_var("PORTFWD_DEB", &amd64);
        std::env::set_var("PORTFWD_DEB_ARM64", &arm64);
        std::env::set_var("PORTFWD_DEBIAN_ROOT", &debian_root);
    }
    // The schemathesis suite (tests/tests/schemathesis.rs) drives the API with it.
    let schemathesis = setup::schemathesis(&root())?;
    // SAFETY: as above.
    unsafe { std::env::set_var("PORTFWD_SCHEMATHESIS", &schemathesis) };
    // The default members (portfwd-ebpf only builds for the BPF target; its programs are
    // tested through the packet tests in `tests`).
    let tests = cargo(&["test", "--no-fail-fast"]);
    // Every fuzz target, briefly, from its seeds: a crash fails the run (whatever the tests
    // said: both are reported).
    let fuzzing = fuzz::smoke(&root(), FUZZ_SMOKE);
    match (tests, fuzzing) {
        (Err(tests), Err(fuzzing)) => bail!("{tests:#}\n{fuzzing:#}"),
        (tests, fuzzing) => tests.and(fuzzing),
    }
}

/// How long `cargo xtask test` fuzzes each target (after running its seeds).
const FUZZ_SMOKE: std::time::Duration = std::time::Duration::from_secs(10);

fn lint() -> Result<()> {
    setup::toolchain()?;
    cargo(&["fmt", "--all", "--check"])?;
    // The default members: everything but portfwd-ebpf, which is linted for its own target
    // below (on the host it cannot build: no_std without an unwinder).
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    // The eBPF crate: nightly, its own target, core built from source.
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "clippy", "-p", "portfwd-ebpf"])
        .args([
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .args(["--", "-D", "warnings"])
        .current_dir(root())
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("running clippy on portfwd-ebpf")?;
    if !status.success() {
        bail!("clippy on portfwd-ebpf failed ({status})");
    }
    // The fuzz crate: its own workspace, nightly (cargo-fuzz needs it), without the XDP
    // programs, in a target directory of its own (the fuzz builds' flags differ).
    cargo(&["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"])?;
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "clippy", "--manifest-path"])
        .arg("fuzz/Cargo.toml")
        .arg("--target-dir")
        .arg(root().join("target/fuzz-clippy"))
        .args(["--", "-D", "warnings"])
        .current_dir(root())
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("running clippy on the fuzz targets")?;
    if !status.success() {
        bail!("clippy on the fuzz targets failed ({status})");
    }
    Ok(())
}

/// Builds the release binaries and runs `portfwd-lab ARGS` (the lab, demo and bench driver in
/// the tests crate). xtask ignores Ctrl-C meanwhile: the driver catches it and tears its lab down.
fn lab_driver(args: &[&str]) -> Result<()> {
    require_root(&format!("cargo xtask {}", args[0]))?;
    setup::toolchain()?;
    setup::lab_tools()?;
    setup::bpffs()?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "portfwd-user",
        "-p",
        "portfwd-tests",
        "--bins",
    ])?;
    let driver = root().join("target/release/portfwd-lab");
    // SAFETY: SIG_IGN needs no handler; the driver installs its own on start.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let status = Command::new(&driver)
        .args(args)
        .env("PORTFWD_BIN", root().join("target/release/portfwd"))
        .current_dir(root())
        .status()
        .with_context(|| format!("running {}", driver.display()))?;
    if !status.success() {
        bail!("portfwd-lab {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    if args.is_empty() {
        setup::ensure_commands(&[("curl", "curl")], "the demo's suggested commands")?;
        return lab_driver(&["demo"]);
    }
    setup::toolchain()?;
    cargo(&["build", "--release", "-p", "portfwd-user"])?;
    let bin = root().join("target/release/portfwd");
    let status = Command::new(&bin)
        .arg("run")
        .args(args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("portfwd exited with {status}");
    }
    Ok(())
}
