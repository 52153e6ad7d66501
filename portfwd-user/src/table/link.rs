//! The WAN link and the external address.
//!
//! While the link is down, the kernel maps are emptied (the table keeps every share, which
//! the API reports as enabled but not active) and refilled when it comes back. A down/up pair
//! within the flap window (five minutes) is one `wan_flap` event; a longer outage logs
//! `wan_down` once the window has passed and `wan_up` at its end.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::{Table, TableError};
use crate::{
    clock::{Civil, unix_now},
    events::{EventKind, NewEvent},
};

/// How long a WAN outage may last and still be logged as one flap.
pub const FLAP_WINDOW: Duration = Duration::from_mins(5);

/// The WAN link as the table follows it.
#[derive(Debug)]
pub(super) struct Link {
    pub up: bool,
    /// When it went down (monotonic and wall clock), while it is down.
    pub down_since: Option<(Instant, u64)>,
    /// Whether the outage has outlasted the flap window and been logged.
    pub down_logged: bool,
    pub flap_window: Duration,
}

impl Link {
    pub fn new(flap_window: Duration) -> Self {
        Self {
            up: true,
            down_since: None,
            down_logged: false,
            flap_window,
        }
    }

    /// When an outage in progress outlasts the flap window (and is logged then).
    pub fn outage_deadline(&self) -> Option<Instant> {
        match self.down_since {
            Some((at, _)) if !self.down_logged => Some(at + self.flap_window),
            _ => None,
        }
    }
}

impl Table {
    fn enabled_shares(&self) -> usize {
        self.shares.iter().filter(|s| s.spec.enabled).count()
    }

    /// The WAN link went up or down: shares leave or return to the data plane.
    pub fn set_link(&mut self, up: bool) -> Result<(), TableError> {
        if up == self.link.up {
            return Ok(());
        }
        let now = self.now;
        self.transact(|t| {
            t.link.up = up;
            if t.armed {
                t.counters.wan_link_changes += 1;
            }
            let shares = t.enabled_shares();
            if up {
                tracing::info!("WAN link up: {shares} share(s) back in the data plane");
                match t.link.down_since.take() {
                    Some((at, wall)) if t.link.down_logged => {
                        let secs = now.saturating_duration_since(at).as_secs();
                        t.log(NewEvent::new(
                            EventKind::WanUp,
                            "wan",
                            format!(
                                "link up after {secs} s down (since {}); {shares} share(s) restored",
                                Civil::from_unix(wall).rfc3339()
                            ),
                        ));
                    }
                    Some((at, wall)) => {
                        let secs = now.saturating_duration_since(at).as_secs();
                        t.log(NewEvent::new(
                            EventKind::WanFlap,
                            "wan",
                            format!(
                                "link down at {} for {secs} s; {shares} share(s) restored",
                                Civil::from_unix(wall).rfc3339()
                            ),
                        ));
                    }
                    None => {}
                }
            } else {
                tracing::warn!("WAN link down: {shares} share(s) out of the data plane");
                t.link.down_since = Some((now, unix_now()));
                t.link.down_logged = false;
            }
            t.tx.dirty.all = true;
            t.version += 1;
            Ok(())
        })
    }

    /// Logs an outage that has outlasted the flap window by `now`.
    pub(super) fn check_outage(&mut self) {
        let now = self.now;
        if let Some((at, wall)) = self.link.down_since
            && !self.link.down_logged
            && at + self.link.flap_window <= now
        {
            self.link.down_logged = true;
            let shares = self.enabled_shares();
            self.log(NewEvent::new(
                EventKind::WanDown,
                "wan",
                format!(
                    "link down since {}; {shares} share(s) out of the data plane",
                    Civil::from_unix(wall).rfc3339()
                ),
            ));
        }
    }

    /// Sets the external address the WAN program matches (`None`: the WAN has none, nothing
    /// is forwarded).
    pub fn set_external(&mut self, addr: Option<Ipv4Addr>) -> Result<(), TableError> {
        let before = self.external();
        let mut config = self.kernel.config;
        config.ext_addr = addr.map_or(0, |a| u32::from(a).to_be());
        self.kernel.set_config(config)?;
        if before != addr {
            self.version += 1;
            if self.armed {
                self.counters.external_changes += 1;
                let show =
                    |a: Option<Ipv4Addr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
                self.transact(|t| {
                    t.log(NewEvent::new(
                        EventKind::ExternalAddress,
                        "wan",
                        format!("external address {} -> {}", show(before), show(addr)),
                    ));
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// The external address currently programmed.
    #[must_use]
    pub fn external(&self) -> Option<Ipv4Addr> {
        match self.kernel.config.ext_addr {
            0 => None,
            a => Some(Ipv4Addr::from(u32::from_be(a))),
        }
    }

    /// The WAN and LAN interfaces were made again with indexes `wan` and `lan`: the programs
    /// redirect to them and match replies leaving through them.
    pub fn set_ifindexes(
        &mut self,
        wan: u32,
        lan: u32,
        wan_name: &str,
        lan_name: &str,
    ) -> Result<(), TableError> {
        let mut config = self.kernel.config;
        config.wan_ifindex = wan;
        config.lan_ifindex = lan;
        self.kernel.set_config(config)?;
        self.kernel.maps_mut().bump_fib_generation()?;
        self.transact(|t| {
            t.log(NewEvent::new(
                EventKind::InterfaceAttached,
                "wan",
                format!("attached again to {wan_name} (index {wan}) and {lan_name} (index {lan})"),
            ));
            Ok(())
        })
    }

    /// Routes, neighbours or links changed: cached next hops are no longer trusted.
    pub fn forwarding_changed(&mut self) -> Result<(), TableError> {
        Ok(self.kernel.maps_mut().bump_fib_generation()?)
    }
}
