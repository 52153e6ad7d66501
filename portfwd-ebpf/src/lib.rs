//! Helpers shared by the XDP programs of this crate.
#![no_std]
#![expect(
    clippy::inline_always,
    reason = "bounds checks and packet pointers must be inlined into each caller for the verifier"
)]

use aya_ebpf::programs::XdpContext;

/// A bounds-checked pointer to a `T` at `offset` bytes into the packet, or `None` when the
/// packet is too short. Every header access goes through here, which is what the verifier
/// needs to see.
#[inline(always)]
#[must_use]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}
