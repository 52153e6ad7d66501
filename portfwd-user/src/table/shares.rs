//! Shares: the owner's (made through the API), clients' leases, and removal on behalf of
//! whoever may remove them.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use super::{By, Table, TableError, view::ShareEntry};
use crate::{
    events::{EventKind, NewEvent},
    share::{Nonce, Origin, Proto, Share, ShareId, ShareSpec},
};

/// A change to a share. `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharePatch {
    /// `Some(None)` removes the name.
    pub name: Option<Option<String>>,
    pub internal: Option<SocketAddrV4>,
    /// The first and last external port (equal for a single port).
    pub external_port: Option<(u16, u16)>,
    pub enabled: Option<bool>,
    pub hairpin: Option<bool>,
}

/// What a NAT-PMP or PCP client deletes: its shares of `proto` (`None`: any) and internal
/// `port` (0: all of them), made over the same protocol as `origin`. With a PCP nonce, shares
/// made with another nonce are refused when named one by one and skipped when all go.
#[derive(Clone, Copy, Debug)]
pub struct Release {
    pub origin: Origin,
    pub proto: Option<Proto>,
    pub port: u16,
    pub nonce: Option<Nonce>,
}

/// A share as events describe it: `tcp:8080 -> 10.0.0.10:80 "web"`.
pub(super) fn describe(spec: &ShareSpec) -> String {
    let mut text = format!("{} -> {}", spec.id, spec.internal);
    if let Some(name) = &spec.name {
        let _ = write!(text, " \"{name}\"");
    }
    if !spec.enabled {
        text.push_str(" (disabled)");
    }
    if !spec.hairpin {
        text.push_str(" (no hairpin)");
    }
    text
}

/// The event of a share's target or name changing from `before` to `after`.
pub(super) fn edited(before: &ShareSpec, after: &ShareSpec, source: &str) -> NewEvent {
    NewEvent::new(
        EventKind::ShareEdited,
        source,
        format!("was {}, now {}", describe(before), describe(after)),
    )
    .share(after.id)
}

/// The event of `spec` being switched to its `enabled`; the webhook hears of switching on.
pub(super) fn switched(spec: &ShareSpec, source: &str) -> NewEvent {
    let kind = if spec.enabled {
        EventKind::ShareEnabled
    } else {
        EventKind::ShareDisabled
    };
    NewEvent::new(kind, source, describe(spec))
        .share(spec.id)
        .notify_if(spec.enabled)
}

impl Table {
    fn share_error(spec: &ShareSpec, source: crate::share::ShareError) -> TableError {
        TableError::Share {
            spec: spec.to_string(),
            source,
        }
    }

    /// Adds `spec` as a new share of `origin` with lease end `expires`, its counters zeroed.
    pub(super) fn add_share(
        &mut self,
        spec: ShareSpec,
        origin: Origin,
        expires: Option<Instant>,
    ) -> Result<(), TableError> {
        self.shares
            .check(&spec, None)
            .map_err(|e| Self::share_error(&spec, e))?;
        // A share pinned maps still hold keeps its counters.
        let kept = self
            .kernel
            .share_slot(spec.id.key())
            .filter(|slot| self.shares.slot_free(*slot));
        let slot = if let Some(slot) = kept {
            slot
        } else {
            let slot = self.shares.free_slot().ok_or_else(|| {
                Self::share_error(
                    &spec,
                    crate::share::ShareError::Full {
                        max: portfwd_common::MAX_SHARES,
                    },
                )
            })?;
            self.kernel.maps_mut().reset_stats(slot)?;
            slot
        };
        self.set_share(
            spec.id,
            Some(Share {
                spec,
                origin,
                slot,
                expires,
            }),
        );
        Ok(())
    }

    /// Refuses a share on a port the box itself listens on (at its external address or every
    /// address): it would take the box's own service off the WAN.
    fn check_box_port(&self, id: ShareId) -> Result<(), TableError> {
        let external = self.external();
        let taken = if id.ports().len() == 1 {
            id.ports()
                .find(|&port| self.host.listens_on(id.proto, port, external))
        } else {
            let listening = self.host.listening(id.proto);
            id.ports()
                .find(|&port| crate::host::listens(&listening, port, external))
        };
        match taken {
            Some(port) => Err(TableError::BoxListens {
                proto: id.proto,
                port,
            }),
            None => Ok(()),
        }
    }

    /// Adds a share for the owner (API); kept in the state directory, no lease.
    pub fn create(&mut self, spec: ShareSpec) -> Result<ShareEntry, TableError> {
        self.check_box_port(spec.id)?;
        self.transact(|t| {
            let id = spec.id;
            let enabled = spec.enabled;
            t.add_share(spec, Origin::Api, None)?;
            let detail = t.described(id);
            t.log(
                NewEvent::new(EventKind::ShareCreated, "api", detail)
                    .share(id)
                    .notify_if(enabled),
            );
            t.entry_of(id)
        })
    }

    pub(super) fn described(&self, id: ShareId) -> String {
        self.shares
            .get(&id)
            .map_or_else(|| id.to_string(), |s| describe(&s.spec))
    }

    pub(super) fn entry_of(&self, id: ShareId) -> Result<ShareEntry, TableError> {
        let share = self.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
        Ok(ShareEntry::of(share, self.now))
    }

    /// Changes share `id` for the owner. Static shares take only `enabled` (kept as the
    /// owner's switch over the config); anything else on them is [`TableError::Static`]. A
    /// new external port or internal endpoint is checked like a new share; the lease, if any,
    /// carries over.
    pub fn edit(&mut self, id: ShareId, patch: SharePatch) -> Result<ShareEntry, TableError> {
        self.transact(|t| {
            let share = t
                .shares
                .get(&id)
                .cloned()
                .ok_or(TableError::NoSuchShare(id))?;
            let before = share.spec.clone();
            let mut spec = before.clone();
            if let Some(name) = patch.name {
                spec.name = name;
            }
            if let Some(internal) = patch.internal {
                spec.internal = internal;
            }
            if let Some((first, last)) = patch.external_port {
                spec.id.ext_port = first;
                spec.id.ext_last = last;
            }
            spec.check_internal_range().map_err(|e| TableError::Share {
                spec: spec.to_string(),
                source: crate::share::ShareError::Spec(e),
            })?;
            if let Some(enabled) = patch.enabled {
                spec.enabled = enabled;
            }
            if let Some(hairpin) = patch.hairpin {
                spec.hairpin = hairpin;
            }
            if share.origin == Origin::Static {
                if spec.name != before.name
                    || spec.internal != before.internal
                    || spec.id != id
                    || spec.hairpin != before.hairpin
                {
                    return Err(TableError::Static(id));
                }
                if let Some(enabled) = patch.enabled {
                    t.set_static(id, Some(enabled));
                }
            }
            if spec == before {
                return t.entry_of(id);
            }
            if spec.id.ports() != before.id.ports() {
                t.check_box_port(spec.id)?;
            }
            if spec.id == id && spec.internal == before.internal {
                t.set_share(
                    id,
                    Some(Share {
                        spec: spec.clone(),
                        ..share
                    }),
                );
            } else {
                if let Some(other) = t
                    .shares
                    .overlapping(spec.id, Some(&id))
                    .and_then(|other| t.shares.get(&other))
                    .filter(|s| s.origin != share.origin)
                {
                    return Err(TableError::Conflict {
                        id: spec.id,
                        existing: other.spec.id,
                        origin: other.origin,
                    });
                }
                t.set_share(id, None);
                t.add_share(spec.clone(), share.origin, share.expires)?;
            }
            if spec.id != before.id
                || spec.internal != before.internal
                || spec.name != before.name
                || spec.hairpin != before.hairpin
            {
                t.log(edited(&before, &spec, "api"));
            }
            if spec.enabled != before.enabled {
                t.log(switched(&spec, "api"));
            }
            t.entry_of(spec.id)
        })
    }

    /// Takes share `id` out with its lease and logs it as `kind` by `source` (and `why`).
    pub(super) fn take(
        &mut self,
        id: ShareId,
        kind: EventKind,
        source: &str,
        why: Option<&str>,
    ) -> Option<Share> {
        let share = self.set_share(id, None)?;
        let mut detail = describe(&share.spec);
        if let Some(why) = why {
            let _ = write!(detail, ": {why}");
        }
        self.log(NewEvent::new(kind, source, detail).share(id));
        Some(share)
    }

    /// Removes share `id` on behalf of `by`.
    pub fn remove(&mut self, id: ShareId, by: By) -> Result<Share, TableError> {
        self.transact(|t| {
            let share = t.shares.get(&id).ok_or(TableError::NoSuchShare(id))?;
            if share.origin == Origin::Static && by == By::Operator {
                return Err(TableError::Static(id));
            }
            if !by.may_remove(share.origin) {
                return Err(TableError::NotOwner(id, by));
            }
            t.take(id, EventKind::ShareDeleted, &by.source(), None)
                .ok_or(TableError::NoSuchShare(id))
        })
    }

    /// Removes the leased shares of `proto` whose external ports are in `ports` that `by` may
    /// remove. Static shares are never touched. Returns what it removed.
    pub fn remove_range(
        &mut self,
        proto: Proto,
        ports: RangeInclusive<u16>,
        by: By,
    ) -> Result<Vec<Share>, TableError> {
        self.transact(|t| {
            let ids: Vec<ShareId> = t
                .shares
                .in_ports(proto, ports)
                .filter(|s| s.origin != Origin::Static && by.may_remove(s.origin))
                .map(|s| s.spec.id)
                .collect();
            let mut removed = Vec::new();
            for id in ids {
                removed.extend(t.take(id, EventKind::ShareDeleted, &by.source(), None));
            }
            Ok(removed)
        })
    }

    /// Deletes what a NAT-PMP or PCP client asks to delete; deleting what is not there
    /// succeeds, as both RFCs say. Returns how many shares went.
    pub fn release(&mut self, release: Release) -> Result<usize, TableError> {
        self.transact(|t| {
            let Release {
                origin,
                proto,
                port,
                nonce,
            } = release;
            let client = origin.client().unwrap_or(Ipv4Addr::UNSPECIFIED);
            let candidates: Vec<&Share> = if port == 0 {
                // Everything the client has: the one request that reads the whole table.
                t.shares.iter().collect()
            } else {
                [Proto::Tcp, Proto::Udp]
                    .into_iter()
                    .filter(|p| proto.is_none_or(|want| want == *p))
                    .flat_map(|p| t.shares.of_endpoint(p, SocketAddrV4::new(client, port)))
                    .collect()
            };
            let mine: Vec<Share> = candidates
                .into_iter()
                .filter(|s| {
                    s.origin.client() == Some(client)
                        && s.origin.source() == origin.source()
                        && proto.is_none_or(|p| p == s.spec.id.proto)
                        && *s.spec.internal.ip() == client
                        && (port == 0 || s.spec.internal.port() == port)
                })
                .cloned()
                .collect();
            let mut gone = 0;
            for share in mine {
                if let (Some(nonce), Origin::Pcp { nonce: theirs, .. }) = (nonce, share.origin)
                    && nonce != theirs
                {
                    if port == 0 {
                        continue;
                    }
                    return Err(TableError::NotOwner(share.spec.id, By::Client(origin)));
                }
                let id = share.spec.id;
                gone += usize::from(
                    t.take(id, EventKind::ShareDeleted, &origin.actor(), None)
                        .is_some(),
                );
            }
            Ok(gone)
        })
    }

    /// Adds or renews the share `spec` for LAN client `origin` with lease `lease`. A share
    /// with the same identity is renewed in place only if the client made it and its internal
    /// endpoint is the same; a static share or another client's share on the same external
    /// port (for any remote host) is a [`TableError::Conflict`]. New shares count against the
    /// quotas in force.
    pub(super) fn lease_in(
        &mut self,
        spec: ShareSpec,
        origin: Origin,
        lease: Option<Duration>,
        quota: bool,
    ) -> Result<(), TableError> {
        let id = spec.id;
        let Some(client) = origin.client() else {
            return Err(TableError::NotOwner(id, By::Client(origin)));
        };
        if let Some(other) = self
            .shares
            .on_port(id.proto, id.ext_port)
            .find(|s| s.origin != origin || (s.spec.id == id && s.spec.internal != spec.internal))
        {
            return Err(TableError::Conflict {
                id,
                existing: other.spec.id,
                origin: other.origin,
            });
        }
        let expires = lease.map(|lease| self.now + lease);
        if let Some(mine) = self.shares.get(&id).cloned() {
            // Renewal: same origin, same endpoint (checked above).
            self.set_share(
                id,
                Some(Share {
                    spec: ShareSpec {
                        name: spec.name,
                        enabled: spec.enabled,
                        ..mine.spec.clone()
                    },
                    expires,
                    ..mine
                }),
            );
            return Ok(());
        }
        if quota {
            self.check_quota(IpAddr::V4(client))?;
        }
        let enabled = spec.enabled;
        self.add_share(spec, origin, expires)?;
        let mut detail = self.described(id);
        if let Some(lease) = lease {
            let _ = write!(detail, ", lease {} s", lease.as_secs());
        }
        self.log(
            NewEvent::new(EventKind::ShareCreated, origin.actor(), detail)
                .share(id)
                .notify_if(enabled),
        );
        Ok(())
    }

    /// Refuses a new share or pinhole for `owner` beyond the quotas in force: the client's own
    /// and all clients' shares and pinholes together.
    pub(super) fn check_quota(&self, owner: IpAddr) -> Result<(), TableError> {
        let limits = self.effective.limits;
        let mine = self.owned.get(&owner).copied().unwrap_or(0);
        let all = self.owned_total;
        if mine >= limits.per_client {
            return Err(TableError::Quota {
                client: Some(owner),
                limit: limits.per_client,
            });
        }
        if all >= limits.total {
            return Err(TableError::Quota {
                client: None,
                limit: limits.total,
            });
        }
        Ok(())
    }
}
