//! Installing what the build and the lab need on a fresh machine, and saying so.
//!
//! The XDP programs need the `nightly` toolchain with `rust-src` (core is built from source for
//! the bpfel target) and `bpf-linker`, which is built against Debian's LLVM 22 (the LLVM that
//! rustc 1.97 uses). The lab needs `ip`, `ethtool`, `nft` and `setpriv`; the control-plane
//! bench needs miniupnpd; the API's schemathesis suite needs schemathesis (from the Python Package Index, in a venv
//! under `target/`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The LLVM whose development packages bpf-linker links against.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_PACKAGES: [&str; 3] = ["llvm-22-dev", "libpolly-22-dev", "libzstd-dev"];
const BPF_LINKER_VERSION: &str = "0.13.0";

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(what: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    println!("xtask: {what}: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("{what}: cannot run {program}"))?;
    if !status.success() {
        bail!("{what}: `{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Debian packages not installed yet, of `packages`.
fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "{why} needs the Debian packages {}: install them (apt-get install {}) or run as root",
            packages.join(", "),
            packages.join(" ")
        );
    }
    println!("xtask: installing {} ({why})", packages.join(", "));
    run("apt package lists", "apt-get", &["update", "-qq"], &[])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    run(
        "installing packages",
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
}

/// Makes sure `commands` exist, installing their Debian packages where they do not.
pub fn ensure_commands(commands: &[(&str, &str)], why: &str) -> Result<()> {
    let missing: Vec<&str> = commands
        .iter()
        .filter(|(command, _)| !succeeds("sh", &["-c", &format!("command -v {command}")]))
        .map(|(_, package)| *package)
        .collect();
    apt_install(&missing, why)
}

/// The toolchain for the XDP programs.
pub fn toolchain() -> Result<()> {
    if !succeeds("rustup", &["run", "nightly", "rustc", "--version"]) {
        bail!(
            "the `nightly` Rust toolchain is missing; the XDP programs need it (rustup toolchain install nightly --component rust-src)"
        );
    }
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("listing the nightly toolchain's components")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("rust-src") {
        run(
            "adding rust-src to nightly (core is built from source for the BPF target)",
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
            &[],
        )?;
    }
    if !succeeds("bpf-linker", &["--version"]) {
        apt_install(
            &missing_packages(&LLVM_PACKAGES),
            "bpf-linker is built against LLVM 22",
        )?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        run(
            "installing bpf-linker (links the XDP programs; takes several minutes)",
            &cargo,
            &[
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ],
            &[("LLVM_PREFIX", LLVM_PREFIX)],
        )?;
        if !succeeds("bpf-linker", &["--version"]) {
            bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
        }
    }
    Ok(())
}

/// The commands the netns lab, its tests and the benchmark use.
pub fn lab_tools() -> Result<()> {
    ensure_commands(
        &[
            ("ip", "iproute2"),
            ("ethtool", "ethtool"),
            ("nft", "nftables"),
            ("setpriv", "util-linux"),
        ],
        "the netns lab",
    )
}

/// The real clients the end-to-end tests drive portfwd with.
pub fn test_clients() -> Result<()> {
    ensure_commands(
        &[
            ("upnpc", "miniupnpc"),
            ("natpmpc", "natpmpc"),
            ("promtool", "prometheus"),
            ("curl", "curl"),
            ("ping", "iputils-ping"),
            ("named", "bind9"),
            ("dig", "bind9-dnsutils"),
            ("chromium", "chromium"),
            ("chromedriver", "chromium-driver"),
        ],
        "the UPnP, NAT-PMP, metrics, exposed-host, dynamic DNS and page tests and the demo's steps (upnpc, natpmpc, promtool, curl, ping, a BIND server and dig, Chromium and chromedriver)",
    )
}

/// miniupnpd, the peer of `cargo xtask bench control`: Debian's nftables build, alone.
///
/// `miniupnpd-nftables` holds the binary (and nft helper scripts); the service (init script,
/// systemd unit, debconf questions, `/etc/default/miniupnpd`) belongs to the `miniupnpd`
/// package, which this does not install, so nothing starts a miniupnpd on the host: the bench
/// runs its own, inside the lab's router namespace only, with a config of its own.
pub fn miniupnpd() -> Result<()> {
    apt_install(
        &missing_packages(&["miniupnpd-nftables"]),
        "the control-plane bench's peer, miniupnpd (the binary only, without the miniupnpd package's service)",
    )?;
    if missing_packages(&["miniupnpd"]).is_empty() {
        println!(
            "xtask: note: the `miniupnpd` package (its service) is installed too; the bench does not use it and runs its own miniupnpd in the lab's namespace"
        );
    }
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf if it is not (a box with systemd has it mounted at boot): the
/// daemon pins its maps and links there, and the tests check that they outlive it.
pub fn bpffs() -> Result<()> {
    // /sys/fs/bpf for daemons run as on a box; /run/portfwd-test-bpffs for those the tests run
    // with `ip netns exec`, which hides the host's /sys behind the namespace's own sysfs.
    for dir in ["/sys/fs/bpf", "/run/portfwd-test-bpffs"] {
        let mounted = Command::new("stat")
            .args(["-f", "-c", "%T", dir])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "bpf_fs");
        if mounted {
            continue;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        run(
            "mounting bpffs for the pinned maps and links",
            "mount",
            &["-t", "bpf", "bpf", dir],
            &[],
        )?;
    }
    Ok(())
}

/// What `cargo xtask deb` runs besides cargo: dpkg-deb, readelf and strip, gzip.
pub fn packaging() -> Result<()> {
    ensure_commands(
        &[
            ("dpkg-deb", "dpkg"),
            ("readelf", "binutils"),
            ("strip", "binutils"),
            ("gzip", "gzip"),
        ],
        "building the Debian package",
    )
}

/// The arm64 cross build: rustup's target and Debian's cross compiler (the linker) with
/// arm64's libc to link against.
pub fn cross_aarch64() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("listing rustup's installed targets")?;
    if !String::from_utf8_lossy(&installed.stdout).contains(crate::deb::AARCH64) {
        run(
            "adding the arm64 target (the package for arm64 boards)",
            "rustup",
            &["target", "add", crate::deb::AARCH64],
            &[],
        )?;
    }
    apt_install(
        &missing_packages(&["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]),
        "linking the arm64 build (Debian's cross compiler and arm64 libc)",
    )
}

/// What the package tests use: lintian, debootstrap for a fresh Debian root, systemd-nspawn to
/// boot it, qemu-user to run the arm64 binary.
pub fn package_tests() -> Result<()> {
    apt_install(
        &missing_packages(&["lintian", "debootstrap", "systemd-container", "qemu-user"]),
        "the package tests (lintian, debootstrap, systemd-nspawn, qemu-aarch64)",
    )
}

/// The Debian release the package tests install into.
pub const DEBIAN_SUITE: &str = "bookworm";

/// A minimal Debian root with systemd (and what the package depends on, so that `dpkg -i`
/// needs no network), made once with debootstrap and kept under `target/`: the tests copy it.
pub fn debian_root(target: &Path) -> Result<PathBuf> {
    let root = target.join("debian-root").join(DEBIAN_SUITE);
    let done = root.with_extension("done");
    if done.exists() {
        return Ok(root);
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).context("removing a half-made Debian root")?;
    }
    std::fs::create_dir_all(root.parent().context("root's parent")?)?;
    let root_arg = root.to_str().context("utf-8 path")?;
    run(
        &format!(
            "making a fresh Debian {DEBIAN_SUITE} root for the package tests (once; cached in target/debian-root, about a minute)"
        ),
        "debootstrap",
        &[
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus,iproute2,man-db,procps,libgcc-s1",
            DEBIAN_SUITE,
            root_arg,
            "http://deb.debian.org/debian",
        ],
        &[],
    )?;
    std::fs::write(&done, "")?;
    Ok(root)
}

/// The schemathesis `cargo xtask test` drives the REST API with (pinned, so that what it
/// checks does not change under the suite).
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// schemathesis in a virtual environment under `target/` (installed there if missing): the
/// path of its command.
pub fn schemathesis(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/schemathesis");
    let bin = venv.join("bin/schemathesis");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS_VERSION));
    if installed {
        return Ok(bin);
    }
    if !succeeds("python3", &["-m", "venv", "--help"])
        || !succeeds("python3", &["-m", "ensurepip", "--version"])
    {
        apt_install(
            &missing_packages(&["python3", "python3-venv"]),
            "the API's schemathesis suite runs schemathesis in a Python virtual environment",
        )?;
    }
    let venv_text = venv.to_string_lossy();
    run(
        "making a Python virtual environment for schemathesis",
        "python3",
        &["-m", "venv", "--clear", &venv_text],
        &[],
    )?;
    let pip = venv.join("bin/pip");
    let requirement = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    run(
        &format!(
            "installing schemathesis {SCHEMATHESIS_VERSION} from PyPI (drives the REST API from its OpenAPI document)"
        ),
        &pip.to_string_lossy(),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &requirement,
        ],
        &[],
    )?;
    Ok(bin)
}
