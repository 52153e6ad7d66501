//! XDP programs for the network-namespace lab, the packet tests and `cargo xtask bench`; the
//! daemon never loads these.
//!
//! * `lab_pass`: passes everything. On veth in native mode a redirected frame is only delivered
//!   when the receiving peer has an XDP program, so the lab puts this on the hosts' ends.
//! * `lab_sink`: counts IPv4 frames and bytes into `SINK` and drops them (the benchmark's
//!   receiver); everything else (ARP) passes, so the host still answers neighbour probes.
//! * `lab_redirect`: redirects every frame to one interface with fixed MAC addresses: the
//!   ceiling the benchmark compares portfwd against.
//! * `lab_gen`: the traffic generator. Run through `BPF_PROG_TEST_RUN` with live frames on the
//!   remote host's interface it transmits each frame (`XDP_TX`). Frame buffers are recycled
//!   without being reset and the path under test rewrites them in place, so it writes the whole
//!   header from `TEMPLATE` on every run.
//! * `lab_reset`: writes the header from `TEMPLATE` and tail-calls `NEXT[0]`, so a program that
//!   rewrites the packet can be timed over many `test_run` repetitions of the same frame.
#![no_std]
#![expect(
    clippy::inline_always,
    reason = "bounds checks and packet pointers must be inlined into each caller for the verifier"
)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "#[xdp] entry points take their context by value"
)]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use portfwd_ebpf::ptr_at;

/// Bytes of header `lab_gen` and `lab_reset` write: Ethernet, IPv4 without options, UDP.
const HEADER_LEN: usize = 42;

/// Frame header template, element 0.
#[map]
static TEMPLATE: Array<[u8; HEADER_LEN]> = Array::with_max_entries(1, 0);
/// `lab_redirect`'s target: `[ifindex (native endian), dmac, smac]` packed as 16 bytes.
#[map]
static REDIRECT: Array<[u8; 16]> = Array::with_max_entries(1, 0);
/// `lab_sink`'s counters: index 0 frames, index 1 bytes.
#[map]
static SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
/// `lab_reset`'s tail-call target.
#[map]
static NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[xdp]
pub fn lab_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn lab_sink(ctx: XdpContext) -> u32 {
    match ptr_at::<[u8; 2]>(&ctx, 12) {
        Some(ether_type) if unsafe { *ether_type } == 0x0800u16.to_be_bytes() => {}
        _ => return xdp_action::XDP_PASS,
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(frames) = SINK.get_ptr_mut(0) {
        unsafe { *frames += 1 };
    }
    if let Some(bytes) = SINK.get_ptr_mut(1) {
        unsafe { *bytes += len };
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn lab_redirect(ctx: XdpContext) -> u32 {
    let Some(target) = REDIRECT.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(eth) = ptr_at::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let ifindex = u32::from_ne_bytes([target[0], target[1], target[2], target[3]]);
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&target[4..16]);
    unsafe { *eth = macs };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an xdp_action"
    )]
    let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
    action
}

#[inline(always)]
fn write_template(ctx: &XdpContext) -> bool {
    let Some(template) = TEMPLATE.get(0) else {
        return false;
    };
    let Some(header) = ptr_at::<[u8; HEADER_LEN]>(ctx, 0) else {
        return false;
    };
    unsafe { *header = *template };
    true
}

#[xdp]
pub fn lab_gen(ctx: XdpContext) -> u32 {
    if write_template(&ctx) {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_ABORTED
    }
}

#[xdp]
pub fn lab_reset(ctx: XdpContext) -> u32 {
    if !write_template(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    // Returns only when the slot is empty.
    unsafe { NEXT.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
