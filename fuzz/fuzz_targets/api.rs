//! The owner's REST API: any JSON body (and path parameter and query) on each route, answered
//! by `api::respond` over a fresh table. No request may make it fail (a 5xx) or answer
//! anything but JSON.
//!
//! Input: the route (an index into `api::ROUTES`), a byte of flags (bit 0: no token), the path
//! parameter up to a newline, the query up to a newline, then the body.
#![no_main]

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use libfuzzer_sys::fuzz_target;
use portfwd::api::{self, ROUTES};

const TOKEN: &str = "fuzz-token";

/// `text` with everything but unreserved characters percent-encoded, as a client would put
/// any value in a path or query.
fn escape(text: &[u8], keep: &[u8]) -> String {
    text.iter().fold(String::new(), |mut out, &b| {
        if b.is_ascii_alphanumeric() || b"-._~:@[]".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let [route, flags, rest @ ..] = data else {
        return;
    };
    let (method, pattern) = ROUTES[usize::from(*route) % ROUTES.len()];
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let param = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let path = pattern
        .replace("{id}", &escape(param, b""))
        .replace("{addr}", &escape(param, b""));
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", escape(query, b"=&"))
    };
    let mut request = hyper::Request::builder().method(method).uri(&uri);
    if flags & 1 == 0 {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let rt = portfwd_fuzz::runtime();
    let (status, content_type, body) =
        rt.block_on(portfwd_fuzz::with_table(0, |table| async move {
            let api = portfwd_fuzz::api(table, TOKEN);
            let response = api::respond(&api, request).await;
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, content_type, body)
        }));
    assert!(
        !status.is_server_error(),
        "{method} {uri} {:?}: {status} {}",
        String::from_utf8_lossy(rest),
        String::from_utf8_lossy(&body)
    );
    if content_type == "application/json" {
        serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {uri}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
    } else {
        assert_eq!(pattern, "/metrics", "{method} {uri}: {content_type}");
    }
});
