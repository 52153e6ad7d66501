//! The UPnP control request body: `upnp::soap::parse` on any text. What it reads, the
//! response encoder writes back and the parser reads again unchanged (the action named
//! `...Response`, as a control point would read the answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portfwd::upnp::soap::{self, MAX_ARGS, MAX_VALUE};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) = soap::parse(text) else {
        return;
    };
    assert!(request.args.len() <= MAX_ARGS);
    assert!(request.args.iter().all(|(_, v)| v.len() <= MAX_VALUE));
    let args: Vec<(&str, String)> = request
        .args
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    let encoded = soap::response(&request.service, &request.action, &args);
    let back = soap::parse(&encoded)
        .unwrap_or_else(|err| panic!("the encoder's output does not parse: {err}\n{encoded}"));
    assert_eq!(back.service, request.service, "{encoded}");
    assert_eq!(
        back.action,
        format!("{}Response", request.action),
        "{encoded}"
    );
    assert_eq!(back.args, request.args, "{encoded}");
});
