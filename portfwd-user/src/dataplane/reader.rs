//! Readers of the counter maps through file descriptors of their own.

use std::os::fd::AsFd as _;

use aya::maps::{IterableMap as _, Map, MapData, PerCpuArray};
use portfwd_common::{
    MAP_PINHOLE_STATS, MAP_SHARE_STATS, MAP_VERDICTS, ShareStats, VERDICT_COUNT, Verdict,
    exposed::MAP_EXPOSED_STATS, verdict_index,
};

use super::{Dataplane, DataplaneError, MapReader, Verdicts, batch, sum_stats};

/// The counter maps through file descriptors of their own, for readers on other tasks.
pub(super) struct DataplaneReader {
    stats: PerCpuArray<MapData, ShareStats>,
    pinhole_stats: PerCpuArray<MapData, ShareStats>,
    verdicts: PerCpuArray<MapData, u64>,
    exposed_stats: PerCpuArray<MapData, ShareStats>,
}

/// A second handle on the map behind `map`.
fn reopen<V: aya::Pod>(
    map: &PerCpuArray<MapData, V>,
    name: &'static str,
) -> Result<PerCpuArray<MapData, V>, DataplaneError> {
    let err = |source| DataplaneError::Map { name, source };
    let fd = map
        .map()
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| err(aya::maps::MapError::from(e)))?;
    let data = MapData::from_fd(fd).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    PerCpuArray::try_from(map).map_err(|source| DataplaneError::MapType { name, source })
}

impl DataplaneReader {
    pub(super) fn new(dataplane: &Dataplane) -> Result<Self, DataplaneError> {
        Ok(Self {
            stats: reopen(&dataplane.stats, MAP_SHARE_STATS)?,
            pinhole_stats: reopen(&dataplane.pinhole_stats, MAP_PINHOLE_STATS)?,
            verdicts: reopen(&dataplane.verdicts, MAP_VERDICTS)?,
            exposed_stats: reopen(&dataplane.exposed_stats, MAP_EXPOSED_STATS)?,
        })
    }
}

/// The counters of `slots` of `map`: the slots up to the highest one in one batch read, or
/// one lookup per slot where the kernel has no batch operations.
fn read_slots(
    map: &PerCpuArray<MapData, ShareStats>,
    name: &'static str,
    slots: &[u32],
) -> Result<Vec<ShareStats>, DataplaneError> {
    let Some(&highest) = slots.iter().max() else {
        return Ok(Vec::new());
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| DataplaneError::Map {
        name,
        source: aya::maps::MapError::from(io_error),
    })?;
    match batch::stats(map.map().fd().as_fd(), highest + 1, cpus) {
        Ok(all) => Ok(slots
            .iter()
            .map(|&slot| all.get(slot as usize).copied().unwrap_or_default())
            .collect()),
        Err(err) => {
            tracing::debug!("batch lookup in {name}: {err}; one lookup per share instead");
            slots
                .iter()
                .map(|&slot| sum_stats(map, name, slot))
                .collect()
        }
    }
}

impl MapReader for DataplaneReader {
    fn share_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        read_slots(&self.stats, MAP_SHARE_STATS, slots)
    }
    fn pinhole_stats(&self, slots: &[u32]) -> Result<Vec<ShareStats>, DataplaneError> {
        read_slots(&self.pinhole_stats, MAP_PINHOLE_STATS, slots)
    }
    fn verdicts(&self) -> Result<Verdicts, DataplaneError> {
        Ok([
            verdicts(&self.verdicts, portfwd_common::DIR_WAN)?,
            verdicts(&self.verdicts, portfwd_common::DIR_LAN)?,
        ])
    }
    fn exposed_stats(&self) -> Result<[ShareStats; 2], DataplaneError> {
        let both = read_slots(&self.exposed_stats, MAP_EXPOSED_STATS, &[0, 1])?;
        Ok([
            both.first().copied().unwrap_or_default(),
            both.get(1).copied().unwrap_or_default(),
        ])
    }
}

/// The verdict counters of the program of `dir`, summed over the CPUs.
pub(super) fn verdicts(
    map: &PerCpuArray<MapData, u64>,
    dir: u32,
) -> Result<[u64; VERDICT_COUNT as usize], DataplaneError> {
    let mut out = [0; VERDICT_COUNT as usize];
    for (slot, verdict) in out.iter_mut().zip(Verdict::ALL) {
        let values =
            map.get(&verdict_index(dir, verdict), 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_VERDICTS,
                    source,
                })?;
        *slot = values.iter().sum();
    }
    Ok(out)
}
