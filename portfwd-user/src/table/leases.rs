//! Lease deadlines and expiry: every leased share and pinhole has its deadline in one ordered
//! set, and the owner task sleeps until the earliest (or the next command), so an expired
//! share leaves the kernel at its deadline.

use std::time::Instant;

use super::{Leased, Table, TableError};
use crate::{
    events::{EventKind, NewEvent},
    share::Share,
};

impl Table {
    /// The earliest deadline: a lease, or the end of the flap window of an outage.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.deadlines.first().map(|(deadline, _)| *deadline);
        lease.into_iter().chain(self.link.outage_deadline()).min()
    }

    /// Removes every share and pinhole whose lease ended by now, and logs a WAN outage that
    /// has outlasted the flap window; returns the expired shares.
    pub fn expire(&mut self) -> Result<Vec<Share>, TableError> {
        let now = self.now;
        self.transact(|t| {
            t.check_outage();
            let mut expired = Vec::new();
            let mut pinholes = 0;
            while let Some(&(deadline, leased)) = t.deadlines.first() {
                if deadline > now {
                    break;
                }
                match leased {
                    Leased::Share(id) => {
                        expired.extend(t.take(id, EventKind::ShareExpired, "lease", None));
                    }
                    Leased::Pinhole(id) => {
                        if let Some(pinhole) = t.set_pinhole(id, None) {
                            pinholes += 1;
                            t.log(NewEvent::new(
                                EventKind::ShareExpired,
                                "lease",
                                format!("IPv6 pinhole {id}{}", super::pinholes::suffix(&pinhole)),
                            ));
                        }
                    }
                }
                // `take` and `set_pinhole` drop the deadline; a stray one must not loop.
                t.deadlines.remove(&(deadline, leased));
            }
            if t.armed {
                t.counters.lease_expirations += expired.len() as u64 + pinholes;
            }
            Ok(expired)
        })
    }
}
