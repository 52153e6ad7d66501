//! The XDP links of a pinned instance: adopting the one an earlier daemon pinned (its program
//! replaced atomically) or pinning a new one.

use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};

use super::{AttachedMode, DataplaneError, pins::Pins};

fn pin_error(
    path: &std::path::Path,
    source: impl std::error::Error + Send + Sync + 'static,
) -> DataplaneError {
    DataplaneError::Pin {
        path: path.to_owned(),
        source: std::io::Error::other(source),
    }
}

/// Gives `program` the link pinned for `role` on interface `ifindex`, replacing the program it
/// runs in one `BPF_LINK_UPDATE`; removes `role`'s pins for other interfaces (gone, or no
/// longer configured). `None`: there is no usable pinned link; attach afresh.
pub(super) fn adopt(
    program: &mut Xdp,
    pins: &Pins,
    role: &str,
    ifindex: u32,
    wanted: crate::dataplane::XdpMode,
) -> Result<Option<AttachedMode>, DataplaneError> {
    let found = pins.found().map_err(|source| DataplaneError::Pin {
        path: pins.dir().to_owned(),
        source,
    })?;
    let mut adopted = None;
    for (pinned_role, pinned_ifindex, mode, path) in found.links {
        if pinned_role != role {
            continue;
        }
        // A mode asked for by name that the pinned link does not have: the link goes, and the
        // program is attached afresh in that mode (or refused, as on a first start).
        let mode_fits = match wanted {
            crate::dataplane::XdpMode::Auto => true,
            crate::dataplane::XdpMode::Native => mode == AttachedMode::Native.name(),
            crate::dataplane::XdpMode::Skb => mode == AttachedMode::Generic.name(),
        };
        if pinned_ifindex == ifindex && adopted.is_none() && mode_fits {
            match replace(program, &path) {
                Ok(()) => {
                    adopted = Some(if mode == AttachedMode::Native.name() {
                        AttachedMode::Native
                    } else {
                        AttachedMode::Generic
                    });
                    continue;
                }
                Err(err) => tracing::warn!(
                    "the pinned {role} link {} cannot take the new program ({}); attaching afresh",
                    path.display(),
                    crate::error_chain(&err)
                ),
            }
        }
        // A link of an interface that is gone (or another one's): its last reference goes
        // with the pin, which detaches it if it is still attached anywhere.
        match PinnedLink::from_pin(&path) {
            Ok(link) => drop(link.unpin()),
            Err(_) => drop(super::pins::remove_pin(&path)),
        }
    }
    Ok(adopted)
}

/// Replaces the program of the link pinned at `path` with `program`.
fn replace(program: &mut Xdp, path: &std::path::Path) -> Result<(), DataplaneError> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| pin_error(path, e))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_error(path, e))?;
    program
        .attach_to_link(link)
        .map(drop)
        .map_err(|e| pin_error(path, e))
}

/// Pins the link `id` of `program` as `role`'s on interface `ifindex` in `mode`, so that it
/// outlives the daemon.
pub(super) fn pin(
    program: &mut Xdp,
    id: XdpLinkId,
    pins: &Pins,
    role: &str,
    ifindex: u32,
    mode: AttachedMode,
) -> Result<(), DataplaneError> {
    let path = pins.link(role, ifindex, mode.name());
    let link = program.take_link(id).map_err(|e| pin_error(&path, e))?;
    let link = FdLink::try_from(link).map_err(|e| pin_error(&path, e))?;
    // Dropping the pinned handle closes this process's reference; the pin keeps the link.
    link.pin(&path).map(drop).map_err(|e| pin_error(&path, e))
}
