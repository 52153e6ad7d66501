//! portfwd: port sharing for Linux edge boxes, in XDP.
//!
//! The daemon keeps one share table ([`table`]) and reconciles it into the kernel maps of the
//! XDP programs ([`dataplane`]); [`daemon`] wires it to the interfaces, signals and rtnetlink.

pub mod api;
pub mod args;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod ddns;
pub mod events;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod netinfo;
pub mod netlink;
pub mod notify;
pub mod page;
pub mod pcp;
pub mod pinhole;
pub mod policy;
pub mod server;
pub mod share;
pub mod sockdiag;
pub mod state;
pub mod store;
pub mod table;
pub mod upnp;
pub mod url;
pub mod webhook;

/// An error and its causes as one line: `a: b: c`.
#[must_use]
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // `#[error(transparent)]` layers repeat their source's message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
