//! The UPnP HTTP server: any bytes on a connection, read by hyper with the server's own bounds
//! (`server::Limits::CONTROL`: 8 KiB of headers, 5 s to send them) and answered by
//! `upnp::http::respond` over a fresh table: descriptions, SOAP control (the request head's
//! method, path and `SOAPAction` header, then the body), GENA refusals. Whatever comes in, what
//! goes out is HTTP/1.1 responses, and a 500 is a SOAP fault.
//!
//! Input: one byte of flags (the settings, see `portfwd_fuzz::settings`), then what the client
//! sends.
#![no_main]

use std::{convert::Infallible, sync::Arc, time::Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use libfuzzer_sys::fuzz_target;
use portfwd::{
    server::Limits,
    upnp::{Identity, control::Control, http},
};
use portfwd_fuzz::{CLIENT, ROUTER};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let settings = portfwd_fuzz::settings(flags);
    let identity = Identity {
        uuid: "5c6b9a2e-0000-4000-8000-0000000000a0".into(),
        version: settings.igd_version,
        lan_addr: ROUTER,
        http_port: 5000,
        boot_id: 1,
        config_id: 1,
    };
    let rt = portfwd_fuzz::runtime();
    let output = rt.block_on(portfwd_fuzz::with_table(flags & 0x0f, |table| async move {
        let server = Arc::new(http::Server::new(
            Control {
                table,
                metrics: Arc::default(),
                host: Arc::new(portfwd_fuzz::Quiet),
                started: Instant::now(),
                firewall6: flags & 0x10 != 0,
            },
            identity,
            portfwd_fuzz::lan(),
        ));
        let (mut client, io) = tokio::io::duplex(64 * 1024);
        let service = service_fn(move |request| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(http::respond(&server, CLIENT, request).await) }
        });
        // As `server::serve` sets up each connection.
        let limits = Limits::CONTROL;
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes)
            .serve_connection(TokioIo::new(io), service);
        let (mut read, mut write) = tokio::io::split(&mut client);
        let send = async {
            // The server may close before reading everything: that is its right.
            let _ = write.write_all(input).await;
            let _ = write.shutdown().await;
        };
        let mut output = Vec::new();
        let receive = read.read_to_end(&mut output);
        let serve = tokio::time::timeout(limits.connection_timeout, connection);
        let ((), _, _) = tokio::join!(send, receive, serve);
        output
    }));
    check(&output);
});

/// The answer starts with an HTTP/1.x status line (1.0 to a 1.0 client), and a 500 is a UPnP
/// fault (hyper answers malformed requests itself, never with a 500).
fn check(output: &[u8]) {
    if output.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(output);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .unwrap_or_else(|| panic!("not an HTTP/1 response: {text}"));
    if status.starts_with("500 ") {
        assert!(text.contains("<UPnPError"), "{text}");
    }
}
