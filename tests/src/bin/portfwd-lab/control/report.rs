//! The control-plane bench's results as Markdown tables, and their record in BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use portfwd_tests::sh;

use super::{
    WORKERS,
    load::{Fill, Rate},
};

/// One table state of one daemon.
pub struct Row {
    /// Mappings in the table.
    pub mappings: usize,
    /// Established TCP connections open on the box.
    pub connections: usize,
    /// The daemon's RSS after the measurement, KiB.
    pub rss_kib: Option<u64>,
    /// The fill that brought the table to this size.
    pub fill: Option<Fill>,
    /// A measurement per entry of [`WORKERS`], or why there is none.
    pub rates: Result<Vec<Rate>, String>,
}

/// One daemon's rows.
pub struct PeerReport {
    pub name: &'static str,
    /// Version and how it ran.
    pub about: String,
    pub rows: Vec<Row>,
}

impl PeerReport {
    /// The calls per second with `workers` workers at `mappings` mappings and no connections.
    fn rate(&self, mappings: usize, workers: usize) -> Option<f64> {
        let i = WORKERS.iter().position(|&w| w == workers)?;
        self.rows
            .iter()
            .find(|r| r.mappings == mappings && r.connections == 0)
            .and_then(|r| r.rates.as_ref().ok())
            .map(|rates| rates[i].per_second())
    }

    fn rss_at(&self, mappings: usize) -> Option<u64> {
        self.rows
            .iter()
            .find(|r| r.mappings == mappings && r.connections == 0 && r.rates.is_ok())
            .and_then(|r| r.rss_kib)
    }
}

/// `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".to_owned()
    } else {
        format!("{n} workers")
    }
}

fn label(row: &Row) -> String {
    let mut label = format!("{} mappings", thousands(row.mappings));
    if row.connections > 0 {
        let _ = write!(label, " + {} TCP conns", thousands(row.connections));
    }
    label
}

fn fill_cell(fill: Option<&Fill>) -> String {
    let Some(fill) = fill else {
        return String::new();
    };
    let mut cell = format!(
        "{:.0} adds/s ({} in {:.1} s)",
        fill.per_second(),
        thousands(fill.added),
        fill.elapsed.as_secs_f64()
    );
    if fill.errors.total() > 0 {
        let _ = write!(cell, "; errors {}", fill.errors);
    }
    cell
}

/// A daemon's table: one row per table state.
pub fn peer_table(peer: &PeerReport) -> String {
    let mut out = format!(
        "**{}** ({})\n\n| table | RSS | fill |",
        peer.name, peer.about
    );
    for &w in &WORKERS {
        let _ = write!(out, " {}: calls/s | p50 | p99 |", workers(w));
    }
    out.push_str(" errors |\n|---|---:|---|");
    for _ in WORKERS {
        out.push_str("---:|---:|---:|");
    }
    out.push_str("---|\n");
    for row in &peer.rows {
        let rss = row.rss_kib.map_or_else(String::new, |kib| {
            format!("{}.{} MiB", kib / 1024, kib % 1024 * 10 / 1024)
        });
        let _ = write!(
            out,
            "| {} | {rss} | {} |",
            label(row),
            fill_cell(row.fill.as_ref())
        );
        match &row.rates {
            Ok(rates) => {
                for rate in rates {
                    let _ = write!(
                        out,
                        " {:.0} | {} | {} |",
                        rate.per_second(),
                        ms(rate.p50),
                        ms(rate.p99)
                    );
                }
                let errors: Vec<String> = rates
                    .iter()
                    .zip(WORKERS)
                    .filter(|(r, _)| r.errors.total() > 0)
                    .map(|(r, w)| format!("{}: {}", workers(w), r.errors))
                    .collect();
                let errors = if errors.is_empty() {
                    "0".to_owned()
                } else {
                    errors.join("; ")
                };
                let _ = writeln!(out, " {errors} |");
            }
            Err(why) => {
                let _ = write!(out, " {why} |");
                for _ in 1..WORKERS.len() * 3 {
                    out.push_str(" |");
                }
                out.push_str(" |\n");
            }
        }
    }
    let zero = peer.rss_at(0);
    let growth: Vec<String> = peer
        .rows
        .iter()
        .filter(|r| r.mappings > 0 && r.connections == 0 && r.rates.is_ok())
        .filter_map(|r| {
            let (from, to) = (zero?, r.rss_kib?);
            let bytes = (i128::from(to) - i128::from(from)) * 1024
                / i128::try_from(r.mappings).expect("small");
            Some(format!("{bytes:+} B (0 → {})", thousands(r.mappings)))
        })
        .collect();
    if !growth.is_empty() {
        let _ = writeln!(out, "\nRSS growth per mapping: {}.", growth.join(", "));
    }
    out
}

/// The stub's table: the client's own ceiling.
pub fn stub_table(rates: &[Rate]) -> String {
    let mut out = String::from(
        "| stub IGD (the client's ceiling) | calls/s | p50 | p99 | errors |\n|---|---:|---:|---:|---|\n",
    );
    for (rate, w) in rates.iter().zip(WORKERS) {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} |",
            workers(w),
            rate.per_second(),
            ms(rate.p50),
            ms(rate.p99),
            rate.errors
        );
    }
    out
}

/// portfwd / miniupnpd, calls per second, at each of `sizes` mappings.
pub fn ratio_table(portfwd: &PeerReport, miniupnpd: &PeerReport, sizes: &[usize]) -> String {
    let mut out = format!("| calls/s, {} / {} |", portfwd.name, miniupnpd.name);
    for &w in &WORKERS {
        let _ = write!(out, " {} |", workers(w));
    }
    out.push_str("\n|---|");
    for _ in WORKERS {
        out.push_str("---:|");
    }
    out.push('\n');
    for &size in sizes {
        let _ = write!(out, "| {} mappings |", thousands(size));
        for &w in &WORKERS {
            match (portfwd.rate(size, w), miniupnpd.rate(size, w)) {
                (Some(a), Some(b)) if b > 0.0 => {
                    let _ = write!(out, " {:.2}x |", a / b);
                }
                _ => out.push_str(" not measured |"),
            }
        }
        out.push('\n');
    }
    out
}

/// Appends a dated section with `body` (the tables and the method) to BENCHMARKS.md.
pub fn record(command: &str, body: &str) {
    let path = std::path::Path::new("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let date = sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu = sh(&[
        "sh",
        "-c",
        "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2",
    ]);
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "?".to_owned(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        );
    let _ = write!(
        text,
        "\n## {} — control plane\n\n`{command}` at commit {commit}; kernel {}, {} CPUs ({}).\n\n{body}",
        date.trim(),
        sh(&["uname", "-r"]).trim(),
        sh(&["nproc", "--all"]).trim(),
        cpu.trim()
    );
    std::fs::write(path, text).expect("write BENCHMARKS.md");
    println!("recorded in BENCHMARKS.md");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
