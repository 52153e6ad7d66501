//! Builds the XDP programs (the `portfwd-ebpf` package, nightly toolchain, bpfel target) with
//! aya-build; `src/dataplane.rs` embeds the result. `AYA_BUILD_SKIP=1` writes empty stand-ins
//! instead, so `cargo check` and clippy of userspace work without the eBPF toolchain (a binary
//! built that way refuses to load).
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

/// The eBPF package's binaries; each lands in `OUT_DIR` under its name.
const EBPF_BINS: [&str; 2] = ["portfwd", "portfwd-lab"];

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    // The programs also depend on the shared types, which are no build-dependency of ours.
    println!("cargo:rerun-if-changed=../portfwd-common/src");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        for bin in EBPF_BINS {
            let dst = out_dir.join(bin);
            fs::write(&dst, []).with_context(|| format!("writing {}", dst.display()))?;
        }
        return Ok(());
    }
    // The test builds' features reach the programs too.
    let features: Vec<&str> = ["program-test", "layout-test"]
        .into_iter()
        .filter(|f| {
            env::var_os(format!(
                "CARGO_FEATURE_{}",
                f.to_uppercase().replace('-', "_")
            ))
            .is_some()
        })
        .collect();
    // aya-build relays everything the inner cargo prints on stderr as build-script warnings
    // ("warning: portfwd-user@...: Compiling core ..."), dozens of lines on every first build.
    // Its status lines are noise: compiler diagnostics still come through (aya-build reads
    // them from cargo's JSON on stdout), and so do cargo's errors. PORTFWD_EBPF_VERBOSE=1
    // (`cargo xtask -v`) keeps them.
    if env::var_os("PORTFWD_EBPF_VERBOSE").is_none_or(|v| v.is_empty() || v == "0") {
        // SAFETY: build scripts are single-threaded here; the variable is read by the cargo
        // that aya-build spawns below, which inherits it.
        unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    }
    let package = aya_build::Package {
        name: "portfwd-ebpf",
        root_dir: "../portfwd-ebpf",
        features: &features,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).context(
        "building the XDP programs (portfwd-ebpf); `cargo xtask` installs the toolchain they need",
    )
}
