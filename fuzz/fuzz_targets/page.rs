//! The owner's page: any form body (and query) posted to or fetched from each of its paths,
//! by a logged-in session, answered by `page::respond` over a fresh table. No request may
//! make it fail (a 5xx), and a post without the session's CSRF token or from another site
//! must be refused (403, or 400 for a body that is no form) without changing the table.
//!
//! Input: the path (an index into [`PATHS`]), a byte of flags (bit 0: no CSRF token, bit 1:
//! a foreign `Origin`, bit 2: GET instead of POST), the query up to a newline, then the body.
#![no_main]

use std::{fmt::Write as _, net::IpAddr, time::Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use libfuzzer_sys::fuzz_target;
use portfwd::page;

const PATHS: [&str; 20] = [
    "/",
    "/share",
    "/apps",
    "/settings",
    "/events",
    "/status",
    "/live",
    "/login",
    "/logout",
    "/shares/add",
    "/shares/edit",
    "/shares/delete",
    "/shares/enable",
    "/shares/disable",
    "/pinholes/delete",
    "/devices/permission",
    "/devices/revoke-unused",
    "/exposed-host/set",
    "/exposed-host/clear",
    "/nothing",
];

fn escape(text: &[u8]) -> String {
    text.iter().fold(String::new(), |mut out, &b| {
        if b.is_ascii_alphanumeric() || b"-._~=&:".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let [path, flags, rest @ ..] = data else {
        return;
    };
    let path = PATHS[usize::from(*path) % PATHS.len()];
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let get = flags & 4 != 0;
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", escape(query))
    };
    let target = uri.clone();
    let rt = portfwd_fuzz::runtime();
    let (status, before, after) = rt.block_on(portfwd_fuzz::with_table(0, |table| async move {
        let api = portfwd_fuzz::api(table, "fuzz-token");
        let (session, state) = api
            .page
            .sessions
            .create(Instant::now())
            .expect("random bytes");
        let mut body = body.to_vec();
        if flags & 1 == 0 {
            body.extend_from_slice(format!("&csrf={}", state.csrf).as_bytes());
        }
        let origin = if flags & 2 == 0 {
            "http://10.0.0.1:9780"
        } else {
            "http://evil.example"
        };
        let request = hyper::Request::builder()
            .method(if get { "GET" } else { "POST" })
            .uri(&target)
            .header("host", "10.0.0.1:9780")
            .header("origin", origin)
            .header("cookie", format!("{}={session}", page::SESSION_COOKIE))
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let before = api.table.snapshot().version;
        let peer = IpAddr::from(portfwd_fuzz::CLIENT);
        let response = page::respond(&api, peer, request).await;
        let status = response.status();
        let _ = response.into_body().collect().await.expect("body");
        (status, before, api.table.snapshot().version)
    }));
    assert!(!status.is_server_error(), "{uri}: {status}");
    if !get && flags & 3 != 0 && path != "/login" {
        // 403; or 400/413 for a body that is not a form at all, refused before it is read.
        assert!(status.is_client_error(), "{uri}: {status}");
        assert_eq!(before, after, "{uri}: a refused post changed the table");
    }
});
