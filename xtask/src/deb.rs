//! `cargo xtask deb [--target aarch64-unknown-linux-gnu]`: the Debian package, built here with
//! `dpkg-deb` (no cargo-deb: the package is a handful of files, and the maintainer scripts,
//! the unit and the config file are ours to write anyway).
//!
//! Writes `target/debian/portfwd_<version>-1_<arch>.deb` with:
//!
//! | path | from |
//! |---|---|
//! | `/usr/bin/portfwd` | `cargo build --release` (the XDP object embedded), stripped |
//! | `/usr/lib/systemd/system/portfwd.service` | `packaging/debian/portfwd.service` |
//! | `/usr/lib/sysusers.d/portfwd.conf` | `packaging/debian/portfwd.sysusers` |
//! | `/etc/portfwd/portfwd.toml` (conffile) | `packaging/debian/portfwd.toml` |
//! | `/usr/share/man/man1/portfwd*.1.gz` | `portfwd-docs` (`clap_mangen`) |
//! | bash, zsh, fish completions | `portfwd-docs` (`clap_complete`) |
//! | `/usr/share/doc/portfwd/` | README, CHANGELOG, `copyright`, `changelog.Debian` |
//! | `/usr/share/lintian/overrides/portfwd` | `packaging/debian/lintian-overrides` |
//!
//! `Depends` is read from the binary: each shared library it needs (`readelf -d`) maps to its
//! Debian package, at the newest symbol version it uses (`readelf -V`), as dpkg-shlibdeps would
//! say, but for either architecture without the foreign libc installed. procps is added for
//! the unit's `ExecReload=/bin/kill`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, root, setup, target_dir};

/// The Debian revision of the package.
const REVISION: &str = "1";
/// The cross target for arm64 boards.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// An architecture the package is built for.
struct Arch {
    /// Rust's target triple, `None` for the host.
    triple: Option<&'static str>,
    /// Debian's name.
    debian: &'static str,
    strip: &'static str,
}

fn arch(target: Option<&str>) -> Result<Arch> {
    match target {
        None | Some("x86_64-unknown-linux-gnu") => Ok(Arch {
            triple: None,
            debian: "amd64",
            strip: "strip",
        }),
        Some(AARCH64) => Ok(Arch {
            triple: Some(AARCH64),
            debian: "arm64",
            strip: "aarch64-linux-gnu-strip",
        }),
        Some(other) => bail!("no package for {other}: x86_64-unknown-linux-gnu or {AARCH64}"),
    }
}

/// Builds the package for `target` (the host without one); returns its path.
pub fn build(target: Option<&str>) -> Result<PathBuf> {
    let arch = arch(target)?;
    setup::toolchain()?;
    setup::packaging()?;
    let version = env!("CARGO_PKG_VERSION");
    let target_dir = target_dir();
    let binary = match arch.triple {
        None => {
            cargo(&[
                "build",
                "--release",
                "-p",
                "portfwd-user",
                "--bin",
                "portfwd",
            ])?;
            target_dir.join("release/portfwd")
        }
        Some(triple) => {
            setup::cross_aarch64()?;
            // SAFETY (of the environment): xtask is single-threaded; cargo inherits it.
            unsafe {
                std::env::set_var(
                    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                    "aarch64-linux-gnu-gcc",
                );
            }
            cargo(&[
                "build",
                "--release",
                "-p",
                "portfwd-user",
                "--bin",
                "portfwd",
                "--target",
                triple,
            ])?;
            target_dir.join(triple).join("release/portfwd")
        }
    };
    // The pages and completions come from the host's build: they are the same everywhere.
    cargo(&[
        "build",
        "--release",
        "-p",
        "portfwd-user",
        "--bin",
        "portfwd-docs",
    ])?;
    let work = target_dir.join("debian").join(arch.debian);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let tree = work.join("root");
    let docs = work.join("docs");
    run(Command::new(target_dir.join("release/portfwd-docs")).arg(&docs))?;
    stage(&tree, &binary, &arch, &docs)?;
    let control = control(&tree, &binary, &arch, version)?;
    let out = target_dir
        .join("debian")
        .join(format!("portfwd_{version}-{REVISION}_{}.deb", arch.debian));
    write_control(&tree, &control)?;
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&out))?;
    println!("xtask: built {}", out.display());
    Ok(out)
}

/// Lays out the package's files under `tree`.
fn stage(tree: &Path, binary: &Path, arch: &Arch, docs: &Path) -> Result<()> {
    let packaging = root().join("packaging/debian");
    let bin = tree.join("usr/bin/portfwd");
    install(binary, &bin, 0o755)?;
    // Symbols out (lintian: unstripped-binary-or-object); the XDP object is data, untouched.
    run(Command::new(arch.strip)
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
        ])
        .arg(&bin))?;
    install(
        &packaging.join("portfwd.service"),
        &tree.join("usr/lib/systemd/system/portfwd.service"),
        0o644,
    )?;
    install(
        &packaging.join("portfwd.sysusers"),
        &tree.join("usr/lib/sysusers.d/portfwd.conf"),
        0o644,
    )?;
    install(
        &packaging.join("portfwd.toml"),
        &tree.join("etc/portfwd/portfwd.toml"),
        0o644,
    )?;
    let man = tree.join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = fs::read_dir(docs.join("man"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    for page in pages {
        let name = page.file_name().context("page name")?.to_string_lossy();
        gzip(&page, &man.join(format!("{name}.gz")))?;
    }
    for (from, to) in [
        (
            "portfwd.bash",
            "usr/share/bash-completion/completions/portfwd",
        ),
        ("_portfwd", "usr/share/zsh/vendor-completions/_portfwd"),
        (
            "portfwd.fish",
            "usr/share/fish/vendor_completions.d/portfwd.fish",
        ),
    ] {
        install(&docs.join("completions").join(from), &tree.join(to), 0o644)?;
    }
    install(
        &packaging.join("lintian-overrides"),
        &tree.join("usr/share/lintian/overrides/portfwd"),
        0o644,
    )?;
    let doc = tree.join("usr/share/doc/portfwd");
    install(&packaging.join("copyright"), &doc.join("copyright"), 0o644)?;
    gzip(
        &packaging.join("changelog"),
        &doc.join("changelog.Debian.gz"),
    )?;
    gzip(&root().join("CHANGELOG.md"), &doc.join("changelog.gz"))?;
    gzip(&root().join("README.md"), &doc.join("README.md.gz"))?;
    Ok(())
}

/// The control file's fields, in order.
fn control(tree: &Path, binary: &Path, arch: &Arch, version: &str) -> Result<String> {
    let mut depends = shlib_depends(binary)?;
    depends.push("procps".to_owned());
    let installed_kib = size(tree)?.div_ceil(1024);
    Ok(format!(
        "Package: portfwd\n\
         Version: {version}-{REVISION}\n\
         Architecture: {}\n\
         Maintainer: portfwd developers <portfwd@example.invalid>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.invalid/portfwd\n\
         Description: port sharing for Linux edge boxes, forwarded in XDP\n \
         portfwd shares ports of a Linux router's external address with hosts on its\n \
         LAN, as a home router's port forwarding does, without netfilter in the packet\n \
         path: XDP programs on the WAN and LAN interfaces rewrite and redirect the\n \
         packets of shared ports. LAN clients open ports over UPnP IGD, NAT-PMP and\n \
         PCP under the owner's rules; IPv6 pinholes, a REST API and CLI, Prometheus\n \
         metrics and an event log come with it.\n \
         .\n \
         The package installs a hardened systemd service (Type=notify, its own user,\n \
         three capabilities) that starts once wan and lan are set in\n \
         /etc/portfwd/portfwd.toml.\n",
        arch.debian,
        depends.join(", ")
    ))
}

/// Writes `DEBIAN/`: control, conffiles, md5sums and the maintainer scripts.
fn write_control(tree: &Path, control: &str) -> Result<()> {
    let debian = tree.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(debian.join("control"), control)?;
    fs::write(debian.join("conffiles"), "/etc/portfwd/portfwd.toml\n")?;
    let mut sums = String::new();
    for file in files(tree)? {
        let relative = file.strip_prefix(tree)?;
        if relative.starts_with("DEBIAN") || relative.starts_with("etc") {
            continue;
        }
        let out = output(Command::new("md5sum").arg(&file))?;
        let sum = out.split_whitespace().next().context("md5sum output")?;
        let _ = writeln!(sums, "{sum}  {}", relative.display());
    }
    fs::write(debian.join("md5sums"), sums)?;
    let packaging = root().join("packaging/debian");
    for script in ["postinst", "prerm", "postrm"] {
        install(&packaging.join(script), &debian.join(script), 0o755)?;
    }
    for file in ["control", "conffiles", "md5sums"] {
        fs::set_permissions(debian.join(file), fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// `Depends` entries for the shared libraries `binary` needs.
fn shlib_depends(binary: &Path) -> Result<Vec<String>> {
    // Each library's package, and the symbol-version prefix that dates it.
    let known: BTreeMap<&str, (&str, &str)> = [
        ("libc.so.6", ("libc6", "GLIBC_")),
        ("libm.so.6", ("libc6", "GLIBC_")),
        ("libpthread.so.0", ("libc6", "GLIBC_")),
        ("libdl.so.2", ("libc6", "GLIBC_")),
        ("librt.so.1", ("libc6", "GLIBC_")),
        ("libutil.so.1", ("libc6", "GLIBC_")),
        ("ld-linux-aarch64.so.1", ("libc6", "GLIBC_")),
        ("ld-linux-x86-64.so.2", ("libc6", "GLIBC_")),
        ("libgcc_s.so.1", ("libgcc-s1", "GCC_")),
    ]
    .into();
    let dynamic = output(Command::new("readelf").args(["-d", "-W"]).arg(binary))?;
    let mut packages: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
        let lib = line
            .split('[')
            .nth(1)
            .and_then(|s| s.split(']').next())
            .context("readelf NEEDED line")?;
        let Some((package, _)) = known.get(lib) else {
            bail!(
                "{} needs {lib}, which xtask does not know the package of",
                binary.display()
            );
        };
        packages.entry(package).or_default();
    }
    // The newest version of each package's symbols the binary uses.
    let versions = output(Command::new("readelf").args(["-V", "-W"]).arg(binary))?;
    let mut library = "";
    for line in versions.lines() {
        if let Some(file) = line.split("File: ").nth(1) {
            library = file.split_whitespace().next().unwrap_or("");
        } else if let Some(name) = line.split("Name: ").nth(1) {
            let name = name.split_whitespace().next().unwrap_or("");
            if let Some((package, prefix)) = known.get(library)
                && let Some(version) = name.strip_prefix(prefix)
            {
                let parsed: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
                let newest = packages.entry(package).or_default();
                if parsed > *newest {
                    *newest = parsed;
                }
            }
        }
    }
    Ok(packages
        .into_iter()
        .map(|(package, version)| {
            if version.is_empty() {
                package.to_owned()
            } else {
                let version: Vec<String> = version.iter().map(u32::to_string).collect();
                format!("{package} (>= {})", version.join("."))
            }
        })
        .collect())
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `gzip -9n`: no name or time in the header, so the package is reproducible (lintian wants it
/// so for man pages and docs).
fn gzip(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = Command::new("gzip")
        .args(["-9n", "--stdout"])
        .arg(from)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip {} failed", from.display());
    }
    fs::write(to, out.stdout)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files(&path)?);
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes in the files under `dir`.
fn size(dir: &Path) -> Result<u64> {
    files(dir)?.iter().map(|f| Ok(fs::metadata(f)?.len())).sum()
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
