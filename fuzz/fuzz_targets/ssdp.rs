//! SSDP: `upnp::ssdp::parse_search` on any datagram. A search target it reads is one line of
//! at most 256 bytes, and the same target in a well-formed M-SEARCH reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portfwd::upnp::ssdp;

fuzz_target!(|data: &[u8]| {
    let Some(st) = ssdp::parse_search(data) else {
        return;
    };
    assert!(!st.is_empty() && st.len() <= 256, "{st:?}");
    assert!(!st.contains('\n'), "{st:?}");
    let search = format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
    );
    assert_eq!(
        ssdp::parse_search(search.as_bytes()).as_deref(),
        Some(st.as_str())
    );
});
