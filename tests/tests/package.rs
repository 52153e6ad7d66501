//! The Debian packages `cargo xtask test` builds (`PORTFWD_DEB`, `PORTFWD_DEB_ARM64`):
//! - their contents and control fields, and lintian (no errors, no warnings);
//! - the arm64 binary under qemu-aarch64;
//! - installed into a fresh Debian root (`PORTFWD_DEBIAN_ROOT`, made by debootstrap and
//!   cached by xtask): `systemd-analyze verify` and `security`, `--version`, `check-config`,
//!   `man`; then that root booted with `systemd-nspawn -b`, WAN and LAN on veth pairs to two
//!   namespaces of the test's own: the service comes up through READY=1, a share from the
//!   config forwards, `systemctl reload` applies a changed one, `kill -9` brings it back
//!   through Restart=, the journal has its lines with their priorities, and remove keeps the
//!   state while purge deletes it.

#[path = "package/boot.rs"]
mod boot;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// What `cmd` printed, stdout and stderr, and whether it succeeded.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn ok(cmd: &mut Command) -> String {
    let (success, out) = run(cmd);
    assert!(success, "{cmd:?} failed:\n{out}");
    out
}

/// A package built by `cargo xtask deb`: from the variable xtask sets, or where xtask writes it.
fn package(variable: &str, arch: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../target/debian/portfwd_{}-1_{arch}.deb",
                env!("CARGO_PKG_VERSION")
            ))
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` builds it (or `cargo xtask deb`{})",
        path.display(),
        if arch == "arm64" {
            " --target aarch64-unknown-linux-gnu"
        } else {
            ""
        }
    );
    path
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_owned()
}

/// Every top-level subcommand has its page (and the nested ones theirs, e.g. share-add).
const PAGES: [&str; 10] = [
    "portfwd",
    "portfwd-run",
    "portfwd-check-config",
    "portfwd-share",
    "portfwd-share-add",
    "portfwd-device",
    "portfwd-events",
    "portfwd-status",
    "portfwd-settings",
    "portfwd-settings-set",
];

fn check_package(deb: &Path, arch: &str) {
    assert_eq!(field(deb, "Package"), "portfwd");
    assert_eq!(field(deb, "Architecture"), arch);
    assert_eq!(
        field(deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    // Only what it needs: libc, libgcc_s (unwinding) and procps (ExecReload's kill).
    let depends = field(deb, "Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["libc6", "libgcc-s1", "procps"], "{depends}");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");

    let listing = ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let mut wanted = vec![
        "./usr/bin/portfwd".to_owned(),
        "./usr/lib/systemd/system/portfwd.service".to_owned(),
        "./usr/lib/sysusers.d/portfwd.conf".to_owned(),
        "./etc/portfwd/portfwd.toml".to_owned(),
        "./usr/share/bash-completion/completions/portfwd".to_owned(),
        "./usr/share/zsh/vendor-completions/_portfwd".to_owned(),
        "./usr/share/fish/vendor_completions.d/portfwd.fish".to_owned(),
        "./usr/share/doc/portfwd/README.md.gz".to_owned(),
        "./usr/share/doc/portfwd/changelog.gz".to_owned(),
        "./usr/share/doc/portfwd/changelog.Debian.gz".to_owned(),
        "./usr/share/doc/portfwd/copyright".to_owned(),
    ];
    wanted.extend(PAGES.map(|p| format!("./usr/share/man/man1/{p}.1.gz")));
    for path in &wanted {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} is not in {}:\n{listing}",
            deb.display()
        );
    }
    for line in listing.lines() {
        assert!(line.contains(" root/root "), "not root's: {line}");
    }
    let control = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(deb)
        .arg("conffiles"));
    assert_eq!(control.trim(), "/etc/portfwd/portfwd.toml");
    for script in ["postinst", "prerm", "postrm"] {
        let text = ok(Command::new("dpkg-deb").arg("--info").arg(deb).arg(script));
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
    }

    // lintian: no errors, and no warnings (the one that does not apply is overridden in the
    // package, with the reason). Information-level tags are allowed.
    let (_, report) = run(Command::new("lintian")
        .args(["--no-tag-display-limit"])
        .arg(deb));
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        findings.is_empty(),
        "lintian on {}:\n{report}",
        deb.display()
    );
}

#[test]
fn both_packages_hold_what_they_should_and_lintian_agrees() {
    check_package(&package("PORTFWD_DEB", "amd64"), "amd64");
    check_package(&package("PORTFWD_DEB_ARM64", "arm64"), "arm64");
}

/// The package's files, unpacked into a directory of their own.
fn unpack(deb: &Path, tag: &str) -> PathBuf {
    let dir = portfwd_tests::temp_dir(tag);
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&dir));
    dir
}

/// The shipped config with the owner's interfaces filled in.
fn filled_config(shipped: &str, wan: &str, lan: &str) -> String {
    let text = shipped
        .replace("#wan = \"eth0\"", &format!("wan = \"{wan}\""))
        .replace("#lan = \"eth1\"", &format!("lan = \"{lan}\""));
    assert_ne!(
        text, shipped,
        "the shipped config has `#wan = ...` to fill in"
    );
    text
}

#[test]
fn the_arm64_binary_runs_under_qemu() {
    let dir = unpack(&package("PORTFWD_DEB_ARM64", "arm64"), "arm64");
    let bin = dir.join("usr/bin/portfwd");
    let header = ok(Command::new("readelf").arg("-h").arg(&bin));
    assert!(header.contains("AArch64"), "{header}");
    // Debian's arm64 libc for the cross compiler is where the binary's loader and libraries
    // are; qemu-aarch64 -L makes it the root it looks them up in.
    let qemu = |args: &[&str]| {
        run(Command::new("qemu-aarch64")
            .args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(&bin)
            .args(args))
    };
    let (success, version) = qemu(&["--version"]);
    assert!(success, "{version}");
    assert_eq!(
        version.trim(),
        format!("portfwd {}", env!("CARGO_PKG_VERSION"))
    );
    let shipped = fs::read_to_string(dir.join("etc/portfwd/portfwd.toml")).expect("config");
    let config = dir.join("filled.toml");
    fs::write(&config, filled_config(&shipped, "eth0", "eth1")).expect("write");
    let (success, out) = qemu(&["check-config", config.to_str().expect("utf-8")]);
    assert!(
        success && out.contains("interfaces   wan eth0, lan eth1"),
        "{out}"
    );
    let (success, out) = qemu(&[
        "check-config",
        dir.join("etc/portfwd/portfwd.toml")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(
        !success && out.contains("set `wan` in the config file"),
        "{out}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn installs_into_a_fresh_debian_and_runs_under_systemd() {
    let deb = package("PORTFWD_DEB", "amd64");
    let Some(cached) = std::env::var_os("PORTFWD_DEBIAN_ROOT").map(PathBuf::from) else {
        panic!("PORTFWD_DEBIAN_ROOT is not set: `cargo xtask test` makes the Debian root");
    };
    let machine = boot::Root::copy_of(&cached);
    machine.install(&deb);
    machine.check_installed();
    machine.boot_and_run();
}
