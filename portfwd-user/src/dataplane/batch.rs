//! Reading a whole per-CPU counter array in one system call (`BPF_MAP_LOOKUP_BATCH`,
//! Linux 5.6), so a listing or a scrape of n shares costs one call, not n.
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

/// The counters of slots `0..len` of the per-CPU array `fd`, summed over `cpus` CPUs.
pub fn stats(fd: BorrowedFd<'_>, len: u32, cpus: usize) -> io::Result<Vec<ShareStats>> {
    let mut out = vec![ShareStats::default(); len as usize];
    if len == 0 {
        return Ok(out);
    }
    let per_cpu = size_of::<ShareStats>().next_multiple_of(8);
    let mut keys = vec![0u32; len as usize];
    let mut values = vec![0u8; per_cpu * cpus * len as usize];
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
    let filled = (attr.count as usize).min(keys.len());
    for (i, &key) in keys.iter().take(filled).enumerate() {
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
