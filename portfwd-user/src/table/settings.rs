//! The owner's settings and per-device permissions, laid over the config file's and kept in
//! the state directory. Admission reads them in the same task, so a change applies to the
//! very next request.

use std::{collections::BTreeSet, net::Ipv4Addr};

use super::{Table, TableError, view::SettingsView};
use crate::{
    events::{EventKind, NewEvent},
    share::{Share, ShareId},
};

/// A change to the UPnP settings. `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub upnp_enabled: Option<bool>,
    pub secure_mode: Option<bool>,
    pub quota_per_client: Option<usize>,
    pub quota_total: Option<usize>,
}

impl Table {
    /// Changes the UPnP settings.
    pub fn set_settings(&mut self, patch: &SettingsPatch) -> Result<SettingsView, TableError> {
        self.transact(|t| {
            let before = std::sync::Arc::clone(&t.effective);
            let mut o = t.overlay.clone();
            o.upnp_enabled = patch.upnp_enabled.or(o.upnp_enabled);
            o.secure_mode = patch.secure_mode.or(o.secure_mode);
            o.quota_per_client = patch.quota_per_client.or(o.quota_per_client);
            o.quota_total = patch.quota_total.or(o.quota_total);
            t.set_overlay(o);
            let after = std::sync::Arc::clone(&t.effective);
            let mut changes = Vec::new();
            let mut note = |name: &str, was: String, now: String| {
                if was != now {
                    changes.push(format!("{name} {was} -> {now}"));
                }
            };
            note(
                "upnp_enabled",
                before.enabled.to_string(),
                after.enabled.to_string(),
            );
            note(
                "secure_mode",
                before.secure_mode.to_string(),
                after.secure_mode.to_string(),
            );
            note(
                "quota_per_client",
                before.limits.per_client.to_string(),
                after.limits.per_client.to_string(),
            );
            note(
                "quota_total",
                before.limits.total.to_string(),
                after.limits.total.to_string(),
            );
            if !changes.is_empty() {
                t.log(NewEvent::new(
                    EventKind::SettingsChanged,
                    "api",
                    changes.join(", "),
                ));
            }
            Ok(t.settings_view())
        })
    }

    /// The settings in force and the owner's changes.
    #[must_use]
    pub fn settings_view(&self) -> SettingsView {
        SettingsView {
            effective: std::sync::Arc::clone(&self.effective),
            overlay: self.overlay.clone(),
        }
    }

    /// Sets (`Some`) or clears (`None`: back to the default) whether `device` may share ports
    /// independently. Revoking it removes the shares the device made.
    pub fn set_device(
        &mut self,
        device: Ipv4Addr,
        allowed: Option<bool>,
    ) -> Result<Vec<Share>, TableError> {
        self.transact(|t| {
            let mut o = t.overlay.clone();
            match allowed {
                Some(allowed) => o.devices.insert(device, allowed),
                None => o.devices.remove(&device),
            };
            t.set_overlay(o);
            let (now_allowed, _) = t.effective.permission(device, None);
            let detail = match allowed {
                Some(true) => format!("{device} may share ports independently"),
                Some(false) => format!("{device} may no longer share ports independently"),
                None => format!(
                    "{device} follows the default: {}",
                    if now_allowed {
                        "allowed"
                    } else {
                        "not allowed"
                    }
                ),
            };
            t.log(NewEvent::new(EventKind::DevicePermission, "api", detail));
            let mut removed = Vec::new();
            if allowed == Some(false) {
                let ids: Vec<ShareId> = t
                    .shares
                    .iter()
                    .filter(|s| s.origin.client() == Some(device))
                    .map(|s| s.spec.id)
                    .collect();
                for id in ids {
                    removed.extend(t.take(
                        id,
                        EventKind::ShareDeleted,
                        "api",
                        Some("the device's permission was revoked"),
                    ));
                }
            }
            Ok(removed)
        })
    }

    /// Revokes independent port sharing for every device that has not requested a share: the
    /// devices holding shares made by themselves keep theirs (as their own permission), every
    /// other device, now or later, is refused until the owner allows it. Returns the devices
    /// that keep it.
    pub fn revoke_unused(&mut self) -> Result<Vec<Ipv4Addr>, TableError> {
        self.transact(|t| {
            let holders: BTreeSet<Ipv4Addr> =
                t.shares.iter().filter_map(|s| s.origin.client()).collect();
            let mut o = t.overlay.clone();
            let mut kept = Vec::new();
            for client in holders {
                if t.effective.permission(client, None).0 {
                    o.devices.entry(client).or_insert(true);
                    kept.push(client);
                }
            }
            o.new_devices = Some(false);
            t.set_overlay(o);
            let kept_text = if kept.is_empty() {
                "none keep it".to_owned()
            } else {
                format!(
                    "kept by {}",
                    kept.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            t.log(NewEvent::new(
                EventKind::DevicePermission,
                "api",
                format!("independent port sharing revoked for devices without shares; {kept_text}"),
            ));
            Ok(kept)
        })
    }
}
