//! Properties of the core under random sequences of operations (a small deterministic
//! generator, so a failure names its seed): after every operation the kernel maps equal
//! what the table implies computed from scratch, the quota counts and deadlines equal a
//! recount, and an operation that fails leaves the table exactly as it was.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::{pinhole::PinholeSpec, share::Desired};

/// xorshift64*: enough randomness for choosing operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).expect("small")]
    }
}

/// One random operation on `t`; whether it succeeded.
fn step(t: &mut Table, rng: &mut Rng) -> bool {
    let clients = [CLIENT, OTHER, Ipv4Addr::new(10, 0, 0, 12)];
    let client = rng.pick(&clients);
    let port = 2000 + u16::try_from(rng.below(12)).expect("small");
    let proto = rng.pick(&["tcp", "udp"]);
    match rng.below(11) {
        0..=2 => {
            let internal = 3000 + u16::try_from(rng.below(6)).expect("small");
            let host = rng.pick(&clients);
            let remote = if rng.below(4) == 0 {
                "@198.51.100.7"
            } else {
                ""
            };
            let ask = Ask {
                origin: Origin::Upnp { client },
                mechanism: Mechanism::Upnp { v2: true },
                spec: spec(&format!("{proto}:{port}{remote}={host}:{internal}")),
                hunt: rng.pick(&[Hunt::Exact, Hunt::Near]),
                lease: u32::try_from(rng.below(30)).expect("small"),
            };
            t.admit(ask).is_ok()
        }
        3 => {
            let id = format!("{proto}:{port}").parse().expect("id");
            t.remove(
                id,
                rng.pick(&[By::Operator, By::Client(Origin::Upnp { client })]),
            )
            .is_ok()
        }
        4 => t
            .create(spec(&format!(
                "{proto}:{port}={client}:{}",
                4000 + rng.below(4)
            )))
            .is_ok(),
        5 => {
            let id = format!("{proto}:{port}").parse().expect("id");
            let patch = SharePatch {
                enabled: Some(rng.below(2) == 0),
                external_port: (rng.below(3) == 0).then_some((port + 1, port + 1)),
                ..SharePatch::default()
            };
            t.edit(id, patch).is_ok()
        }
        6 => t
            .set_device(client, rng.pick(&[Some(true), Some(false), None]))
            .is_ok(),
        7 => t
            .set_settings(&SettingsPatch {
                quota_per_client: Some(usize::try_from(rng.below(5)).expect("small")),
                secure_mode: Some(rng.below(2) == 0),
                ..SettingsPatch::default()
            })
            .is_ok(),
        8 => t.set_link(rng.below(3) != 0).is_ok(),
        9 => {
            let now = t.now + secs(rng.below(10));
            t.set_now(now);
            t.expire().is_ok()
        }
        _ => {
            let addr = rng.pick(&["2001:db8:77::10", "2001:db8:77::11"]);
            let id = format!("{proto}:[{addr}]:{port}");
            if rng.below(2) == 0 {
                t.open_pinhole(PinholeSpec {
                    id: id.parse().expect("id"),
                    remote: None,
                    remote_port: None,
                    name: None,
                    enabled: rng.below(4) != 0,
                })
                .is_ok()
            } else {
                t.close_pinhole(id.parse().expect("id"), By::Operator)
                    .is_ok()
            }
        }
    }
}

/// What the kernel should hold, computed from scratch.
fn desired(t: &Table) -> Desired {
    if !t.link.up {
        return Desired::default();
    }
    let mut d = t.shares.desired(t.clock);
    d.pinholes = t.pinholes.desired(t.clock);
    d
}

fn check(t: &Table, seed: u64, n: usize) {
    let want = desired(t);
    let maps = memory(t);
    assert_eq!(maps.shares, want.shares, "seed {seed} step {n}: shares map");
    assert_eq!(
        maps.reverse, want.reverse,
        "seed {seed} step {n}: reverse map"
    );
    assert_eq!(
        maps.pinholes, want.pinholes,
        "seed {seed} step {n}: pinholes map"
    );
    let mut owned: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for owner in t
        .shares
        .iter()
        .filter_map(|s| s.origin.owner())
        .chain(t.pinholes.iter().filter_map(|p| p.origin.owner()))
    {
        *owned.entry(owner).or_default() += 1;
    }
    assert_eq!(t.owned, owned, "seed {seed} step {n}: quota counts");
    assert_eq!(t.owned_total, owned.values().sum::<usize>());
    let deadlines: BTreeSet<(Instant, Leased)> = t
        .shares
        .iter()
        .filter_map(|s| Some((s.expires?, Leased::Share(s.spec.id))))
        .chain(
            t.pinholes
                .iter()
                .filter_map(|p| Some((p.expires?, Leased::Pinhole(p.spec.id)))),
        )
        .collect();
    assert_eq!(t.deadlines, deadlines, "seed {seed} step {n}: deadlines");
}

#[test]
fn the_kernel_quotas_and_deadlines_follow_every_change_and_failures_change_nothing() {
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut t = new_table();
        for n in 0..80 {
            let before = (
                t.shares.snapshot(),
                t.pinholes.snapshot(),
                t.overlay.clone(),
            );
            let ok = step(&mut t, &mut rng);
            if !ok {
                assert_eq!(
                    (
                        t.shares.snapshot(),
                        t.pinholes.snapshot(),
                        t.overlay.clone()
                    ),
                    before,
                    "seed {seed} step {n}: a failed operation changed the table"
                );
            }
            check(&t, seed, n);
        }
    }
}
