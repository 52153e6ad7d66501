//! Many established TCP connections on the box: the load a busy router's own sockets put on a
//! daemon that reads the kernel's socket tables (`/proc/net/tcp` lists every one of them).
//!
//! Both ends live in the router's namespace: clients on 127.0.0.1 connect to a listener on
//! 127.0.0.1 and every connection is accepted and kept, so the namespace holds two
//! `ESTABLISHED` sockets per connection. They are held by helper processes
//! (`portfwd-lab hold-connections N SECONDS`, run in the namespace), [`PER_HELPER`]
//! connections each with a listener of its own: a process may not have the descriptors for
//! all of them (the hard `RLIMIT_NOFILE` here is 20,000, and even root cannot raise it without
//! `CAP_SYS_RESOURCE`), and one destination per helper keeps every 4-tuple well inside the
//! ephemeral range, which is widened to [`PORT_RANGE`] besides. Closing the helpers' stdin
//! makes them close the connections with resets, so no `TIME_WAIT` sockets outlive the
//! measurement.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    process::{Child, ChildStdin, Stdio},
    thread,
    time::{Duration, Instant},
};

use portfwd_tests::Netns;

use super::soap::reset_on_close;

/// Connections per helper process: two descriptors each, well under 20,000.
const PER_HELPER: usize = 6_250;
/// The router's ephemeral port range while connections are open.
const PORT_RANGE: &str = "16384 65535";

/// Connections held open by helper processes until dropped.
pub struct Connections {
    helpers: Vec<(Child, Option<ChildStdin>)>,
    opened: usize,
    /// Why fewer were opened than asked for, if they were.
    pub shortfall: Option<String>,
}

impl Connections {
    /// Opens `count` connections in `router`, each helper giving up (and saying why) after
    /// `limit`.
    pub fn open(router: &Netns, count: usize, limit: Duration) -> Self {
        router.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.ip_local_port_range={PORT_RANGE}"),
        ]);
        let exe = std::env::current_exe().expect("current_exe");
        let mut connections = Self {
            helpers: Vec::new(),
            opened: 0,
            shortfall: None,
        };
        let mut left = count;
        while left > 0 && connections.shortfall.is_none() && !crate::interrupted() {
            let n = left.min(PER_HELPER);
            left -= n;
            let mut child = router
                .command(exe.to_str().expect("utf-8 path"))
                .args(["hold-connections", &n.to_string()])
                .arg(limit.as_secs().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a connection helper");
            let stdin = child.stdin.take();
            // The helper prints one line once it has opened what it could (within `limit`).
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
            let (opened, why) = parse_report(&line);
            connections.opened += opened;
            connections.shortfall = why;
            connections.helpers.push((child, stdin));
        }
        connections
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.opened
    }
}

/// The helper's line: `open N` or `open N: why it stopped`.
fn parse_report(line: &str) -> (usize, Option<String>) {
    let Some(rest) = line.trim().strip_prefix("open ") else {
        return (0, Some(format!("a helper failed: {line:?}")));
    };
    let (n, why) = rest
        .split_once(": ")
        .map_or((rest, None), |(n, why)| (n, Some(why.to_owned())));
    (n.parse().unwrap_or(0), why)
}

impl Drop for Connections {
    fn drop(&mut self) {
        // EOF on stdin tells every helper to reset its connections and exit.
        for (_, stdin) in &mut self.helpers {
            drop(stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (child, _) in &mut self.helpers {
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The helper (`portfwd-lab hold-connections COUNT SECONDS`, run inside the namespace):
/// opens `count` connections to a listener of its own within `limit`, reports on stdout, holds
/// them until stdin ends, then closes them with resets.
pub fn hold(count: usize, limit: Duration) {
    raise_file_limit(u64::try_from(2 * count + 64).expect("small"));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the helper's listener");
    let addr = listener.local_addr().expect("listener address");
    let start = Instant::now();
    let mut clients = Vec::with_capacity(count);
    let mut servers = Vec::with_capacity(count);
    let mut why = None;
    for i in 0..count {
        if start.elapsed() > limit || crate::interrupted() {
            why = Some(format!("gave up after {} s", limit.as_secs()));
            break;
        }
        // connect returns once the handshake is done: the connection waits in the listener's
        // queue, and accept takes it at once.
        match TcpStream::connect(addr).and_then(|c| Ok((c, listener.accept()?.0))) {
            Ok((client, server)) => {
                clients.push(client);
                servers.push(server);
            }
            Err(e) => {
                why = Some(format!("connection {i}: {e}"));
                break;
            }
        }
    }
    let mut stdout = std::io::stdout();
    let _ = match why {
        Some(why) => writeln!(stdout, "open {}: {why}", clients.len()),
        None => writeln!(stdout, "open {}", clients.len()),
    };
    let _ = stdout.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for client in &clients {
        reset_on_close(client);
    }
}

/// Raises this process's soft open-file limit towards `files`, as far as the hard limit allows.
fn raise_file_limit(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit get a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 && limit.rlim_cur < files {
            limit.rlim_cur = files.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_helpers_report() {
        assert_eq!(parse_report("open 6250\n"), (6250, None));
        assert_eq!(
            parse_report("open 12: connection 12: too many open files\n"),
            (12, Some("connection 12: too many open files".to_owned()))
        );
        assert_eq!(parse_report("").0, 0);
    }
}
