//! Why a table operation failed, and on whose behalf shares are removed.
//!
//! Every front end translates [`TableError`] with one exhaustive `match` (UPnP fault codes in
//! `upnp::control`, PCP and NAT-PMP result codes in `pcp`, HTTP statuses in `api`), so a new
//! variant is a compile error at every edge rather than a silent default.

use std::net::{IpAddr, Ipv4Addr};

use crate::{
    dataplane::DataplaneError,
    pinhole::{PinholeError, PinholeId},
    policy::Refusal,
    share::{Origin, Proto, ShareError, ShareId},
    store::StoreError,
};

/// Why a table command failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The owner's settings refuse it: a switch is off, the device may not share ports, secure
    /// mode, or no port rule allows it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the box itself listens on {proto} port {port}")]
    BoxListens { proto: Proto, port: u16 },
    #[error("share {spec}")]
    Share {
        spec: String,
        #[source]
        source: ShareError,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("{0} is not a share {1} may remove")]
    NotOwner(ShareId, By),
    #[error("no share {0}")]
    NoSuchShare(ShareId),
    #[error("{id} collides with {} share {existing}", origin.describe())]
    Conflict {
        id: ShareId,
        existing: ShareId,
        origin: Origin,
    },
    #[error("{} {limit} leased shares and pinholes", match client {
        Some(client) => format!("{client} already holds its"),
        None => "the box already holds its".to_owned(),
    })]
    Quota {
        /// `Some`: the client's own cap; `None`: the cap on all clients together.
        client: Option<IpAddr>,
        limit: usize,
    },
    #[error(
        "{0} is defined in the config file or on the command line: change it there (the API only switches it off and on)"
    )]
    Static(ShareId),
    #[error("no free external port near {port} for {client}")]
    NoFreePort { port: u16, client: Ipv4Addr },
    #[error("pinhole {id}")]
    Pinhole {
        id: String,
        #[source]
        source: PinholeError,
    },
    #[error("no pinhole {0}")]
    NoSuchPinhole(PinholeId),
    #[error("pinhole {0} is not one {1} may change")]
    PinholeNotOwner(PinholeId, By),
    #[error("{0} is not a host of the LAN (an exposed host must be one)")]
    NotExposable(IpAddr),
    #[error("{0} is not the exposed host")]
    NoSuchExposedHost(IpAddr),
    #[error("saving the change")]
    Store(#[from] StoreError),
    #[error("the share table task has stopped")]
    Stopped,
}

/// On whose behalf a share is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The box's owner: any share.
    Operator,
    /// A LAN client (the origin it would give a share it made): only the shares it made, by
    /// whichever protocol.
    Client(Origin),
    /// A LAN client where secure mode is off: any share made by a client, none of the owner's.
    AnyClient(Origin),
}

impl By {
    /// Static shares are nobody's to remove: they go with the config.
    #[must_use]
    pub fn may_remove(self, origin: Origin) -> bool {
        match self {
            Self::Operator => origin != Origin::Static,
            Self::AnyClient(_) => origin.owner().is_some(),
            Self::Client(me) => me.owner().is_some() && origin.owner() == me.owner(),
        }
    }

    /// The event source.
    #[must_use]
    pub fn source(self) -> String {
        match self {
            Self::Operator => "api".to_owned(),
            Self::Client(me) | Self::AnyClient(me) => me.actor(),
        }
    }
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator => f.write_str("the owner"),
            Self::Client(me) => match me.owner() {
                Some(client) => write!(f, "{client}"),
                None => f.write_str("the owner"),
            },
            Self::AnyClient(_) => f.write_str("a LAN client"),
        }
    }
}
