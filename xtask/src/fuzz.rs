//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (their own workspace, built with the
//! nightly toolchain and `AYA_BUILD_SKIP=1`, so neither the root workspace nor the XDP
//! toolchain is involved).
//!
//! Each target starts from its seed corpus in the repository (`fuzz/seeds/TARGET`, real
//! requests and files) and writes what it finds to `target/fuzz/corpus/TARGET`, which is kept
//! between runs; a crash, a hang (10 s on one input) or an input that takes more than 2 GiB
//! fails the run, and the input is left in `target/fuzz/artifacts/TARGET/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// The fuzz targets, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 11] = [
    "soap", "ssdp", "pcp", "http", "config", "api", "store", "ids", "ddns", "dyndns2", "page",
];
/// The cargo-fuzz `cargo xtask` installs (under `target/tools`, not the user's `~/.cargo`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Where new corpus entries and crashes go.
#[derive(Clone, Copy)]
pub enum Corpus {
    /// `target/fuzz/corpus/TARGET`, kept between runs.
    Kept,
    /// A fresh directory, emptied first: a run that depends on nothing but the seeds.
    Fresh,
}

/// The cargo-fuzz binary, installed first if missing.
fn cargo_fuzz(root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let bin = tools.join("bin/cargo-fuzz");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if !installed {
        println!(
            "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (the fuzz targets' runner; a minute or two)",
            tools.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "cargo-fuzz", "--locked", "--version"])
            .arg(CARGO_FUZZ_VERSION)
            .arg("--root")
            .arg(&tools)
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !status.success() {
            bail!("cargo install cargo-fuzz failed ({status})");
        }
    }
    Ok(bin)
}

/// `cargo +nightly fuzz SUBCOMMAND` in the workspace root, with the fuzz crate's directories.
fn fuzz_command(root: &Path, bin: &Path, subcommand: &str) -> Command {
    // cargo-fuzz calls `cargo`: `rustup run nightly` puts nightly's first on PATH. The
    // variables `cargo xtask` inherited from the stable cargo that started it would win over
    // that, so they go.
    let mut command = Command::new("rustup");
    command
        .args(["run", "nightly"])
        .arg(bin)
        .args(["fuzz", subcommand, "--fuzz-dir", "fuzz", "--target-dir"])
        .arg(root.join("target/fuzz"))
        // Debug assertions on: an arithmetic overflow is a finding too. No sanitizer: the
        // code under test is safe Rust (the crate forbids `unsafe`, and so do the parsers),
        // which AddressSanitizer has nothing to add to, and its allocator made the targets
        // several times slower.
        .args(["--debug-assertions", "--sanitizer", "none"])
        .current_dir(root)
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    command
}

/// Builds the targets (all, or `only`).
fn build(root: &Path, bin: &Path, only: Option<&str>) -> Result<()> {
    let mut command = fuzz_command(root, bin, "build");
    command.args(only);
    let status = command.status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    Ok(())
}

/// Runs `target` for `time` (at most; the seeds are all run first) from its seeds.
fn run(root: &Path, bin: &Path, target: &str, time: Duration, corpus: Corpus) -> Result<()> {
    let work = root.join("target/fuzz");
    let corpus_dir = match corpus {
        Corpus::Kept => work.join("corpus").join(target),
        Corpus::Fresh => {
            let dir = work.join("test-corpus").join(target);
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
    };
    let artifacts = work.join("artifacts").join(target);
    // Targets that write files put them here: tmpfs where there is one.
    let scratch = if Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/portfwd-fuzz-{}", std::process::id()))
    } else {
        work.join("scratch")
    };
    for dir in [&corpus_dir, &artifacts, &scratch] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    println!(
        "xtask: fuzzing {target} for {} s (seeds: fuzz/seeds/{target}, corpus: {})",
        time.as_secs(),
        corpus_dir.display()
    );
    let mut command = fuzz_command(root, bin, "run");
    command
        .arg(target)
        .arg(&corpus_dir)
        .arg(root.join("fuzz/seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={}", time.as_secs()))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .env("PORTFWD_FUZZ_SCRATCH", &scratch);
    let status = command.status().context("running cargo fuzz run");
    let _ = std::fs::remove_dir_all(&scratch);
    let status = status?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}): the input is in {}; reproduce with `cargo xtask fuzz {target} -- FILE`",
            artifacts.display()
        );
    }
    Ok(())
}

/// `cargo xtask fuzz [--time SECONDS] [TARGET]`.
pub fn fuzz(root: &Path, target: Option<&str>, time: Duration, inputs: &[String]) -> Result<()> {
    if let Some(target) = target
        && !TARGETS.contains(&target)
    {
        bail!(
            "no fuzz target {target}: the targets are {}",
            TARGETS.join(", ")
        );
    }
    let bin = cargo_fuzz(root)?;
    build(root, &bin, target)?;
    if !inputs.is_empty() {
        // Reproduce: run the target on the given inputs only.
        let target = target.context("name the target whose inputs these are")?;
        // Files in place of the corpus directories: libFuzzer runs each once.
        let status = fuzz_command(root, &bin, "run")
            .arg(target)
            .args(inputs)
            .status()
            .context("running cargo fuzz run")?;
        if !status.success() {
            bail!("fuzz target {target} failed on the inputs ({status})");
        }
        return Ok(());
    }
    let targets: Vec<&str> = target.map_or_else(|| TARGETS.to_vec(), |t| vec![t]);
    for target in targets {
        run(root, &bin, target, time, Corpus::Kept)?;
    }
    Ok(())
}

/// What `cargo xtask test` runs: every target for `time` from its seeds alone, all of them
/// even after a failure, which is reported at the end.
pub fn smoke(root: &Path, time: Duration) -> Result<()> {
    let bin = cargo_fuzz(root)?;
    build(root, &bin, None)?;
    let failed: Vec<String> = TARGETS
        .iter()
        .filter_map(|target| {
            run(root, &bin, target, time, Corpus::Fresh)
                .err()
                .map(|err| format!("{err:#}"))
        })
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}
