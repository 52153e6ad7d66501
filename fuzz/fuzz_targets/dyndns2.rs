//! Dynamic DNS over dyndns2: `ddns::dyndns2::check_answer` on any HTTP status and answer body,
//! the update request built for any name, and the provider's URL read from any text.
//!
//! Input: one byte choosing what (its low two bits), then
//! - 0: the status (two bytes, big-endian; kept if 100 to 999) and the answer's body;
//! - 1: the name the request is built for;
//! - 2: the URL of the `server` key.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;
use portfwd::{
    ddns::{
        Secret,
        dyndns2::{Account, Error, PATH, QUOTED, check_answer, escape, request},
    },
    url::Url,
};

const SENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn answer(status: StatusCode, body: &[u8]) {
    match check_answer(status, body, SENT) {
        Ok(answer) => {
            // Success needs a 2xx and `good` or `nochg` first on the first line.
            assert!(status.is_success(), "{status}");
            let first = String::from_utf8_lossy(body)
                .split_whitespace()
                .next()
                .map(str::to_ascii_lowercase);
            assert_eq!(first.as_deref(), Some(answer.code()));
            assert!(
                answer.unchanged || answer.address != Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "good 127.0.0.1 is an ignored update"
            );
        }
        Err(err) => {
            let _ = err.needs_owner();
            // What an answer puts in a log or an event is bounded, whatever it was.
            let text = err.to_string();
            assert!(text.len() < 400, "{} bytes: {text:?}", text.len());
            if let Error::Unexpected(quoted) = &err {
                assert!(quoted.len() <= QUOTED, "{quoted:?}");
                assert!(
                    quoted.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                    "{quoted:?}"
                );
            }
        }
    }
}

fn named(name: &str) {
    let account = Account {
        url: Url::parse("https://members.dyndns.org", PATH).expect("url"),
        username: "owner".into(),
        password: Secret::new("password".into()),
    };
    let Ok(request) = request(&account, name, SENT) else {
        panic!("an escaped name always makes a request: {name:?}");
    };
    // The name is one query value, whatever it holds: it cannot add a parameter.
    let query = request.uri().query().expect("query");
    assert_eq!(
        query,
        format!("hostname={}&myip={SENT}", escape(name)),
        "{name:?}"
    );
    assert_eq!(query.matches('&').count(), 1, "{query}");
}

fn url(text: &str) {
    if let Ok(url) = Url::parse(text, PATH) {
        // Written, it reads back the same (with the path it has now).
        let written = url.to_string();
        assert_eq!(
            Url::parse(&written, "/other").as_ref(),
            Ok(&url),
            "{text:?}"
        );
        assert!(url.path.starts_with('/') || url.path == PATH, "{text:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&what, rest)) = data.split_first() else {
        return;
    };
    match what & 3 {
        0 => {
            let Some((status, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            if let Ok(status) = StatusCode::from_u16(u16::from_be_bytes(*status)) {
                answer(status, body);
            }
        }
        1 => {
            if let Ok(name) = std::str::from_utf8(rest) {
                named(name);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                url(text);
            }
        }
    }
});
