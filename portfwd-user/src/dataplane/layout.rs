//! Pinned maps checked against this build's layout, and what reused ones hold.

use std::{collections::BTreeMap, os::fd::AsFd as _, path::PathBuf};

use aya::maps::{Array, IterableMap as _, MapData};
use portfwd_common::{
    Config, LAYOUT_VERSION, MAP_CONFIG, MAP_LAYOUT, MAP_PINHOLES, MAP_PORTS, MAP_REVERSE,
    MAP_SHARES, PORT_SLOTS, PinholeKey, PinholeTarget, ReverseKey, ReverseTarget, ShareKey,
    ShareTarget,
    exposed::{Exposed, MAP_EXPOSED},
    hairpin::{HairpinEntry, HairpinKey, MAP_HAIRPIN},
};

use super::{Adopted, Dataplane, DataplaneError, batch, ports::port_key, take};

impl Dataplane {
    /// Checks maps found pinned against this build's layout (the version in `LAYOUT`, the key
    /// and value sizes) and marks maps made new with it. aya reuses a pinned map by its path
    /// without looking at it.
    pub(super) fn check_layout(&mut self, reused: bool) -> Result<(), DataplaneError> {
        let mut layout: Array<MapData, u32> = take(&mut self.ebpf, MAP_LAYOUT)?;
        let path = |name: &str| {
            self.pins
                .as_ref()
                .map_or_else(|| PathBuf::from(name), |p| p.own_maps().join(name))
        };
        let err = |name: &str, what: String| DataplaneError::Layout {
            path: path(name),
            ours: LAYOUT_VERSION,
            what,
        };
        let found = layout.get(&0, 0).map_err(|source| DataplaneError::Map {
            name: MAP_LAYOUT,
            source,
        })?;
        if reused && found != LAYOUT_VERSION {
            return Err(err(MAP_LAYOUT, format!("it says version {found}")));
        }
        let sizes = [
            (
                MAP_SHARES,
                self.shares.map().info(),
                size_of::<ShareKey>(),
                size_of::<ShareTarget>(),
            ),
            (
                MAP_PORTS,
                self.ports.map().info(),
                size_of::<u32>(),
                size_of::<ShareTarget>(),
            ),
            (
                MAP_HAIRPIN,
                self.hairpin.map().info(),
                size_of::<HairpinKey>(),
                size_of::<HairpinEntry>(),
            ),
            (
                MAP_REVERSE,
                self.reverse.map().info(),
                size_of::<ReverseKey>(),
                size_of::<ReverseTarget>(),
            ),
            (
                MAP_PINHOLES,
                self.pinholes.map().info(),
                size_of::<PinholeKey>(),
                size_of::<PinholeTarget>(),
            ),
            (
                MAP_EXPOSED,
                self.exposed.map().info(),
                size_of::<u32>(),
                size_of::<Exposed>(),
            ),
            (
                MAP_CONFIG,
                self.config.map().info(),
                size_of::<u32>(),
                size_of::<Config>(),
            ),
        ];
        for (name, info, key, value) in sizes {
            let info = info.map_err(|source| DataplaneError::Map { name, source })?;
            if info.key_size() as usize != key || info.value_size() as usize != value {
                return Err(err(
                    name,
                    format!(
                        "key {} and value {} bytes, not {key} and {value}",
                        info.key_size(),
                        info.value_size()
                    ),
                ));
            }
        }
        layout
            .set(0, LAYOUT_VERSION, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_LAYOUT,
                source,
            })
    }

    /// What the reused maps hold.
    pub(super) fn read_back(&self) -> Result<Adopted, DataplaneError> {
        let map_err = |name| move |source| DataplaneError::Map { name, source };
        let mut shares: BTreeMap<ShareKey, ShareTarget> = self
            .shares
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_SHARES))?;
        let ports = batch::array::<ShareTarget>(self.ports.map().fd().as_fd(), PORT_SLOTS)
            .map_err(|err| DataplaneError::Map {
                name: MAP_PORTS,
                source: aya::maps::MapError::from(err),
            })?;
        for (index, target) in (0..PORT_SLOTS).zip(ports) {
            if target.int_addr != 0 {
                shares.insert(port_key(index), target);
            }
        }
        let reverse = self
            .reverse
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_REVERSE))?;
        let pinholes = self
            .pinholes
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_PINHOLES))?;
        let config = self.config.get(&0, 0).map_err(map_err(MAP_CONFIG))?;
        let exposed = self.exposed.get(&0, 0).map_err(map_err(MAP_EXPOSED))?;
        Ok(Adopted {
            shares,
            reverse,
            pinholes,
            config,
            exposed,
            reused: true,
        })
    }
}
