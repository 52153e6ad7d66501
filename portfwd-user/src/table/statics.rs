//! The config file's shares (and `--share` flags): static, owned by the file, reloaded on
//! SIGHUP. The owner may switch one off and on through the API; that switch is kept over the
//! file's `enabled` while the file still has the share.

use std::collections::BTreeMap;

use super::{
    Table, TableError,
    shares::{describe, edited, switched},
};
use crate::{
    dataplane::Applied,
    events::{EventKind, NewEvent},
    share::{LanSubnet, Origin, Share, ShareId, ShareSpec, ShareTable},
};

/// Checks static shares against the table's rules for a box whose LAN has `lan` subnets,
/// without any kernel: what the daemon does before it loads anything.
pub fn check_static(lan: Vec<LanSubnet>, specs: Vec<ShareSpec>) -> Result<(), TableError> {
    let mut table = ShareTable::new(lan);
    for spec in specs {
        let text = spec.to_string();
        table
            .add(spec)
            .map_err(|source| TableError::Share { spec: text, source })?;
    }
    Ok(())
}

impl Table {
    /// Makes the static shares exactly `specs`, leaving everyone else's alone: all are
    /// validated together (nothing changes if one is refused); shares whose target is
    /// unchanged keep their counters.
    pub fn replace_static(&mut self, mut specs: Vec<ShareSpec>) -> Result<Applied, TableError> {
        let before = self.kernel_writes();
        self.transact(|t| {
            let forgotten: Vec<ShareId> = t
                .static_enabled
                .keys()
                .filter(|id| !specs.iter().any(|s| s.id == **id))
                .copied()
                .collect();
            for id in forgotten {
                t.set_static(id, None);
            }
            for spec in &mut specs {
                if let Some(&enabled) = t.static_enabled.get(&spec.id) {
                    spec.enabled = enabled;
                }
            }
            let old: BTreeMap<ShareId, ShareSpec> = t
                .shares
                .iter()
                .filter(|s| s.origin == Origin::Static)
                .map(|s| (s.spec.id, s.spec.clone()))
                .collect();
            for (id, spec) in &old {
                let kept = specs
                    .iter()
                    .any(|s| s.id == *id && s.internal == spec.internal);
                if !kept {
                    t.set_share(*id, None);
                }
                if !specs.iter().any(|s| s.id == *id) {
                    t.log(
                        NewEvent::new(EventKind::ShareDeleted, "config", describe(spec)).share(*id),
                    );
                }
            }
            for spec in specs {
                let id = spec.id;
                match (old.get(&id), t.shares.get(&id).cloned()) {
                    (Some(was), Some(share))
                        if share.origin == Origin::Static && was.internal == spec.internal =>
                    {
                        if was.name != spec.name {
                            t.log(edited(was, &spec, "config"));
                        } else if was.enabled != spec.enabled {
                            t.log(switched(&spec, "config"));
                        }
                        if share.spec != spec {
                            t.set_share(id, Some(Share { spec, ..share }));
                        }
                    }
                    (was, _) => {
                        match was {
                            Some(was) => t.log(edited(was, &spec, "config")),
                            None => t.log(
                                NewEvent::new(EventKind::ShareCreated, "config", describe(&spec))
                                    .share(id)
                                    .notify_if(spec.enabled),
                            ),
                        }
                        t.add_share(spec, Origin::Static, None)?;
                    }
                }
            }
            Ok(())
        })?;
        let after = self.kernel_writes();
        Ok(Applied {
            upserts: after.upserts - before.upserts,
            deletes: after.deletes - before.deletes,
        })
    }
}
