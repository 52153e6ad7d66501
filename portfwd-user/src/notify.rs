//! systemd's service notifications (`sd_notify(3)`), without libsystemd: `READY=1` once both XDP
//! programs are attached and every listener is up, `STATUS=` with a one-line summary that
//! follows the share table, `WATCHDOG=1` while the table's owner answers (when the unit sets
//! `WatchdogSec=`), and `STOPPING=1` on the way out.
//!
//! The protocol is one datagram per message on the unix socket named by `$NOTIFY_SOCKET`: a
//! path, or a name in the abstract namespace when it starts with `@`
//! (<https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html#Notes>). Without
//! `$NOTIFY_SOCKET` (not started by systemd) nothing is sent. A message that cannot be sent is
//! logged and dropped: forwarding never waits on the service manager.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
    sync::Arc,
    time::Duration,
};

use crate::table::{Snapshot, TableHandle};

/// Where notifications go: `$NOTIFY_SOCKET`'s socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names; `None` without it (or with an unusable value, which
    /// is logged).
    #[must_use]
    pub fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy();
        match Self::new(&name) {
            Ok(notifier) => Some(notifier),
            Err(err) => {
                tracing::warn!("NOTIFY_SOCKET={name} not usable, systemd not notified: {err}");
                None
            }
        }
    }

    /// A notifier for socket `name`: a path, or `@name` in the abstract namespace.
    pub fn new(name: &str) -> io::Result<Self> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@...)",
            ));
        };
        let socket = UnixDatagram::unbound()?;
        // A full queue on systemd's side must not stall the runtime: such a message is lost.
        socket.set_nonblocking(true)?;
        Ok(Self { socket, addr })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) in one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// Sends `state`, logging a failure.
    fn notify(&self, state: &str) {
        if let Err(err) = self.send(state) {
            tracing::warn!("telling systemd {state:?}: {err}");
        }
    }
}

/// How often systemd expects `WATCHDOG=1`: `$WATCHDOG_USEC`, if `$WATCHDOG_PID` is unset or is
/// this process.
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|pid| pid.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The `STATUS=` line: shares, WAN link, external address.
#[must_use]
pub fn summary(snapshot: &Snapshot, wan: &str) -> String {
    let shares = snapshot.shares.len();
    let active = if snapshot.wan_up {
        snapshot.shares.values().filter(|s| s.spec.enabled).count()
    } else {
        0
    };
    let pinholes = snapshot.pinholes.len();
    let external = snapshot
        .external
        .map_or_else(|| "none yet".to_owned(), |a| a.to_string());
    let pinholes = if pinholes == 0 {
        String::new()
    } else {
        format!(", {pinholes} IPv6 pinhole(s)")
    };
    format!(
        "{shares} share(s), {active} active{pinholes}; wan {wan} link {}; external address {external}",
        if snapshot.wan_up { "up" } else { "down" },
    )
}

/// The daemon's side of the protocol while it runs: dropped, it says `STOPPING=1` and stops
/// following the table (so it holds no [`TableHandle`] while the table shuts down).
pub struct Service {
    notifier: Option<Arc<Notifier>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Says `READY=1` with the first `STATUS=`, then keeps the status in step with the table
    /// and pings the watchdog while the table's owner answers. Does nothing without
    /// `$NOTIFY_SOCKET`.
    #[must_use]
    pub fn ready(handle: &TableHandle, wan: &str) -> Self {
        let Some(notifier) = Notifier::from_env().map(Arc::new) else {
            return Self {
                notifier: None,
                task: None,
            };
        };
        let mut snapshots = handle.snapshots();
        let mut status = summary(&snapshots.borrow_and_update(), wan);
        notifier.notify(&format!("READY=1\nSTATUS={status}"));
        let watchdog = watchdog_interval();
        let (handle, wan, task_notifier) = (handle.clone(), wan.to_owned(), Arc::clone(&notifier));
        let task = tokio::spawn(async move {
            // Half the interval, as sd_watchdog_enabled(3) advises.
            let period = watchdog.map_or(Duration::from_hours(1), |w| w / 2);
            let mut ping = tokio::time::interval(period);
            loop {
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now = summary(&snapshots.borrow_and_update(), &wan);
                        if now != status {
                            status = now;
                            task_notifier.notify(&format!("STATUS={status}"));
                        }
                    }
                    _ = ping.tick(), if watchdog.is_some() => {
                        // Alive means the table's owner still takes jobs; a wedged owner
                        // misses the ping and systemd restarts the service.
                        if handle.ask(|_| ()).await.is_ok() {
                            task_notifier.notify("WATCHDOG=1");
                        }
                    }
                }
            }
        });
        Self {
            notifier: Some(notifier),
            task: Some(task),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(notifier) = &self.notifier {
            notifier.notify("STOPPING=1\nSTATUS=stopping");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = std::env::temp_dir().join(format!("portfwd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.to_str().expect("utf-8")).expect("notifier");
        notifier.send("READY=1\nSTATUS=ok").expect("send");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=ok");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("portfwd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        let notifier = Notifier::new(&format!("@{name}")).expect("notifier");
        notifier.send("WATCHDOG=1").expect("send");
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn refuses_relative_names_and_reports_an_absent_socket() {
        assert!(Notifier::new("notify").is_err());
        let notifier = Notifier::new("/nonexistent/portfwd/notify").expect("notifier");
        assert!(notifier.send("READY=1").is_err());
    }

    #[test]
    fn the_watchdog_is_ours_only_if_systemd_says_so() {
        let me = 4242;
        assert_eq!(
            watchdog_from(Some("30000000"), None, me),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_from(Some("30000000"), Some("4242"), me),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_from(Some("30000000"), Some("1"), me), None);
        assert_eq!(watchdog_from(None, None, me), None);
        assert_eq!(watchdog_from(Some("0"), None, me), None);
        assert_eq!(watchdog_from(Some("soon"), None, me), None);
    }
}
