//! A stub IGD: answers every request with the same `200 OK` SOAP answer, doing nothing else.
//! Measured with the same client and workers as the daemons, it gives the client's (and the
//! lab's TCP path's) own ceiling: a daemon's rate near it says the bench measured the client.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use portfwd_tests::Netns;

use super::soap::Igd;

/// The answer to everything: an `AddPortMappingResponse` (clients only read the status).
const ANSWER: &str = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
    s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
    <u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"/>\
    </s:Body></s:Envelope>\r\n";
/// The largest request read.
const MAX_REQUEST: usize = 64 * 1024;

/// The stub, serving from its threads until dropped.
pub struct Stub {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    pub igd: Igd,
}

impl Stub {
    /// Listens on `addr` in `ns` and answers with `threads` threads, each serving one
    /// connection at a time.
    pub fn start(ns: &Netns, addr: SocketAddr, threads: usize) -> Self {
        // The socket belongs to the namespace it was made in, whichever thread serves it.
        let listener = ns.run(move || TcpListener::bind(addr).expect("bind the stub IGD"));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\n\
                 Content-Length: {}\r\nServer: portfwd-bench stub\r\n\r\n{ANSWER}",
                ANSWER.len()
            )
            .into_bytes(),
        );
        let threads = (0..threads)
            .map(|_| {
                let listener = listener.try_clone().expect("clone the stub's listener");
                let (stop, answer) = (Arc::clone(&stop), Arc::clone(&answer));
                thread::spawn(move || {
                    // Ends when the listener is shut down (accept fails) and `stop` is set.
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((stream, _)) = listener.accept() {
                            serve(stream, &answer);
                        }
                    }
                })
            })
            .collect();
        Self {
            listener,
            stop,
            threads,
            igd: Igd {
                addr,
                control_path: "/ctl/IPConn".to_owned(),
                service: "urn:schemas-upnp-org:service:WANIPConnection:2".to_owned(),
            },
        }
    }
}

/// Reads one request (head and `Content-Length` body) and answers it.
fn serve(mut stream: TcpStream, answer: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    while request.len() < MAX_REQUEST {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let length = String::from_utf8_lossy(&request[..end])
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                let _ = stream.write_all(answer);
                return;
            }
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // On Linux, shutting a listening socket down wakes every thread blocked in accept.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
