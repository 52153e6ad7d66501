//! The text forms shares, pinholes and policy entries are named by in the API's paths, the CLI,
//! the config file and the state directory: whatever `FromStr` reads, `Display` writes back in
//! a form that reads the same (share ids and specs, pinhole ids, the CLI's share references,
//! subnets, webhook URLs, MAC addresses).
#![no_main]

use std::{fmt::Display, str::FromStr};

use libfuzzer_sys::fuzz_target;
use portfwd::{
    cli::ShareRef,
    pinhole::PinholeId,
    policy::{Cidr, Device, PortRange, parse_mac},
    share::{ShareId, ShareSpec},
    webhook::Url,
};

/// `text` read, written and read again gives the same value.
fn round_trip<T>(text: &str)
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let written = value.to_string();
        let again = written.parse::<T>().unwrap_or_else(|_| {
            panic!("{text:?} reads as {value:?}, written {written:?}, which does not read")
        });
        assert_eq!(again, value, "{text:?} -> {written:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<ShareId>(text);
    round_trip::<ShareSpec>(text);
    round_trip::<PinholeId>(text);
    round_trip::<Cidr>(text);
    round_trip::<Url>(text);
    if let Ok(r) = text.parse::<ShareRef>() {
        let written = r.to_string();
        let again: ShareRef = written.parse().unwrap_or_else(|_| panic!("{written:?}"));
        assert_eq!(again.to_string(), written);
    }
    if let Ok(range) = text.parse::<PortRange>() {
        let written = format!("{}-{}", range.0.start(), range.0.end());
        assert_eq!(written.parse::<PortRange>().ok(), Some(range));
    }
    if let Some(mac) = parse_mac(text) {
        let written = mac.map(|b| format!("{b:02x}")).join(":");
        assert_eq!(parse_mac(&written), Some(mac));
        assert_eq!(text.parse::<Device>().ok(), Some(Device::Mac(mac)));
    }
});
