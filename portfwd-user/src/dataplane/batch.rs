//! Reading a whole array in one system call (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6), so a listing
//! or a scrape of n shares costs one call, not n, and adopting the pinned port array one call,
//! not 131,072.
//!
//! The kernel copies up to `count` keys and values starting at the beginning and answers
//! `ENOENT` once it has passed the last element, with `count` saying how many it copied
//! (`generic_map_lookup_batch` in kernel/bpf/syscall.c). A per-CPU value is one
//! 8-byte-aligned copy per possible CPU (`bpf_map_value_size`).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use portfwd_common::ShareStats;

/// `BPF_MAP_LOOKUP_BATCH` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Copies slots `0..len` of the array `fd` (values of `value_size` bytes each, as the kernel
/// lays them out) in one call: the keys copied and their values, in order.
fn lookup(fd: BorrowedFd<'_>, len: u32, value_size: usize) -> io::Result<(Vec<u32>, Vec<u8>)> {
    let mut keys = vec![0u32; len as usize];
    let mut values = vec![0u8; value_size * len as usize];
    if len == 0 {
        return Ok((keys, values));
    }
    let mut next = 0u32;
    let mut attr = BatchAttr {
        out_batch: (&raw mut next) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: len,
        map_fd: u32::try_from(fd.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` points at buffers of `count` keys and `count` values of the size the
    // kernel writes for this map, alive for the call; the kernel writes nothing else.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &raw mut attr,
            size_of::<BatchAttr>(),
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        // ENOENT: the end of the map came before `count` elements (the usual end).
        if err.raw_os_error() != Some(libc::ENOENT) {
            return Err(err);
        }
    }
    keys.truncate((attr.count as usize).min(len as usize));
    values.truncate(keys.len() * value_size);
    Ok((keys, values))
}

/// The elements of slots `0..len` of the (plain) array `fd`, by slot.
pub fn array<V: aya::Pod + Default>(fd: BorrowedFd<'_>, len: u32) -> io::Result<Vec<V>> {
    let mut out = vec![V::default(); len as usize];
    let (keys, values) = lookup(fd, len, size_of::<V>())?;
    for (&key, bytes) in keys.iter().zip(values.chunks_exact(size_of::<V>())) {
        if let Some(slot) = out.get_mut(key as usize) {
            // SAFETY: `V` is plain old data of exactly `bytes.len()` bytes; the read is
            // unaligned-safe.
            *slot = unsafe { bytes.as_ptr().cast::<V>().read_unaligned() };
        }
    }
    Ok(out)
}

/// The counters of slots `0..len` of the per-CPU array `fd`, summed over `cpus` CPUs.
pub fn stats(fd: BorrowedFd<'_>, len: u32, cpus: usize) -> io::Result<Vec<ShareStats>> {
    let mut out = vec![ShareStats::default(); len as usize];
    let per_cpu = size_of::<ShareStats>().next_multiple_of(8);
    let (keys, values) = lookup(fd, len, per_cpu * cpus)?;
    for (i, &key) in keys.iter().enumerate() {
        let Some(slot) = out.get_mut(key as usize) else {
            continue;
        };
        for cpu in 0..cpus {
            let at = (i * cpus + cpu) * per_cpu;
            let Some(bytes) = values.get(at..at + size_of::<ShareStats>()) else {
                continue;
            };
            let word = |n: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[n * 8..n * 8 + 8]);
                u64::from_ne_bytes(b)
            };
            slot.packets_in += word(0);
            slot.bytes_in += word(1);
            slot.packets_out += word(2);
            slot.bytes_out += word(3);
        }
    }
    Ok(out)
}
