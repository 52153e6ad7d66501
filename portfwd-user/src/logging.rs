//! The log: to stderr, for a person at a terminal or for the journal.
//!
//! Under systemd, stderr is a stream to journald, which says so in `$JOURNAL_STREAM` (the
//! stream's `device:inode`, <https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#%24JOURNAL_STREAM>).
//! The journal stamps each line with its own time, so the lines carry none; they start with
//! the syslog priority in angle brackets (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug,
//! as `sd-daemon.h` defines them), which journald strips and keeps as the entry's priority, so
//! `journalctl -p warning` finds the warnings.
//!
//! The level filter is `$RUST_LOG` if set, else `log_level` from the config file, else `info`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

mod batch;

pub use batch::Guard;

/// Installs the global subscriber for a command: lines written to stderr as they come.
pub fn init(level: Option<&str>) {
    install(level, std::io::stderr);
}

/// Installs the global subscriber for the daemon, whose lines a thread of their own writes in
/// batches (see [`batch`]); the guard writes what is left when dropped. `level` is the config
/// file's `log_level`, already checked (see [`check_level`]).
pub fn init_daemon(level: Option<&str>) -> Option<Guard<std::io::Stderr>> {
    match batch::start(std::io::stderr()) {
        Ok((writer, guard)) => {
            install(level, writer);
            guard.flush_on_panic();
            Some(guard)
        }
        Err(err) => {
            install(level, std::io::stderr);
            tracing::warn!("cannot start the log thread ({err}): lines are written one by one");
            None
        }
    }
}

fn install<W>(level: Option<&str>, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|env| EnvFilter::try_new(env).ok())
        .or_else(|| level.and_then(|l| EnvFilter::try_new(l).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    if to_journal() {
        builder.with_ansi(false).event_format(Journal).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Whether `level` is a filter [`init`] takes: `off`, `error`, `warn`, `info`, `debug`, `trace`,
/// or comma-separated directives such as `info,portfwd::upnp=debug`. Stricter than
/// `$RUST_LOG`, where a lone word is a target: a misspelt level in the config file would
/// silence the log instead of being refused.
pub fn check_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let valid = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
    let ok = !level.trim().is_empty()
        && level.split(',').all(|directive| {
            let directive = directive.trim();
            match directive.rsplit_once('=') {
                Some((target, l)) => !target.is_empty() && valid(l),
                None => valid(directive),
            }
        })
        && EnvFilter::try_new(level).is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{level}` is not a log level (off, error, warn, info, debug, trace) or a list of TARGET=LEVEL"
        ))
    }
}

/// Whether stderr is the stream `$JOURNAL_STREAM` names (a child that inherited the variable
/// but writes elsewhere is not logging to the journal).
fn to_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    is_stream(
        &stream,
        std::os::unix::fs::MetadataExt::dev(&meta),
        std::os::unix::fs::MetadataExt::ino(&meta),
    )
}

fn is_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority of a level (`sd-daemon.h`'s `SD_ERR` and friends).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// One line per event: `<PRIORITY>message key=value`, no time, no colours.
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "<{}>", priority(level))?;
        if level > Level::INFO {
            // Debug and trace lines name where they come from, as the terminal format does.
            write!(writer, "{}: ", event.metadata().target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_env_filter(EnvFilter::new("debug"))
            .with_ansi(false)
            .event_format(Journal)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("cannot attach");
            tracing::warn!(interface = "eth0", "forwarding is off");
            tracing::info!("ready");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>cannot attach",
                "<4>forwarding is off interface=\"eth0\"",
                "<6>ready",
                "<7>portfwd::logging::tests: detail",
            ]
        );
    }

    #[test]
    fn journal_stream_must_be_stderr() {
        assert!(is_stream("8:12345", 8, 12345));
        assert!(!is_stream("8:12345", 8, 12346));
        assert!(!is_stream("garbage", 8, 12345));
    }

    #[test]
    fn levels_are_checked() {
        assert!(check_level("debug").is_ok());
        assert!(check_level("info,portfwd::upnp=trace").is_ok());
        for bad in ["verbose", "loud=", "portfwd=chatty", ""] {
            let err = check_level(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
