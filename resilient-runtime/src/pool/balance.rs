//! Choosing an endpoint for one call: round-robin or power of two choices on in-flight
//! calls, among the endpoints in rotation (not ejected, not unhealthy) that the call has
//! not tried yet; while none is, among those whose health is not known yet, then among
//! those the call has tried; when every one is out of rotation, among the ejected ones
//! whose health check does not say they are down, else among all of them (panic mode).

use std::sync::atomic::{AtomicUsize, Ordering};

/// How a pool spreads calls over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    /// Each call to the next endpoint in turn.
    RoundRobin,
    /// Two endpoints drawn at random; the call goes to the one with fewer calls in flight
    /// (counted until the response body ends), a coin decides ties. Slow or stuck
    /// replicas get fewer calls. The default.
    #[default]
    PowerOfTwoChoices,
}

/// How eligible an endpoint is for the next call; calls go to the best rank present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// In rotation.
    Ready,
    /// Health not known yet: used only while no endpoint is ready.
    Pending,
    /// In rotation, but an earlier attempt of the same call went there: a retry or a
    /// hedged attempt goes elsewhere while it can.
    Tried,
    /// Ejected for failing calls, but not reported unhealthy by its health check: when
    /// every endpoint is out of rotation, these take the calls before those that are.
    Ejected,
    /// Unhealthy: used only when every endpoint is out of rotation (panic mode).
    Out,
}

/// What balancing needs to know about an endpoint.
pub(crate) trait Candidate {
    fn rank(&self, now: u64) -> Rank;
    fn load(&self) -> usize;
}

/// The index of the endpoint for the next call; `None` only when `items` is empty.
pub(crate) fn pick<C: Candidate>(
    items: &[C],
    now: u64,
    balance: Balance,
    turn: &AtomicUsize,
    mut random: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let n = items.len();
    match n {
        0 => return None,
        1 => return Some(0),
        _ => {}
    }
    let mut best = Rank::Out;
    let mut at_best = 0;
    for c in items {
        let r = c.rank(now);
        if r < best {
            best = r;
            at_best = 1;
        } else if r == best {
            at_best += 1;
        }
    }
    // Panic mode when every endpoint is out of rotation: the ejected ones that are not
    // unhealthy if any, else all of them.
    let everyone = best == Rank::Out || at_best == n;
    let eligible = if everyone { n } else { at_best };
    // The k-th eligible endpoint. The states may change between the count and this
    // walk; then fall back to any endpoint rather than fail.
    let nth = |k: usize| -> usize {
        if everyone {
            return k;
        }
        items
            .iter()
            .enumerate()
            .filter(|(_, c)| c.rank(now) == best)
            .nth(k)
            .map(|(i, _)| i)
            .unwrap_or(k % n)
    };
    if eligible == 1 {
        return Some(nth(0));
    }
    Some(match balance {
        Balance::RoundRobin => nth(turn.fetch_add(1, Ordering::Relaxed) % eligible),
        Balance::PowerOfTwoChoices => {
            let a = random(eligible);
            let mut b = random(eligible - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth(a), nth(b));
            let (la, lb) = (items[a].load(), items[b].load());
            if la < lb || (la == lb && random(2) == 0) {
                a
            } else {
                b
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C {
        rank: Rank,
        load: usize,
    }

    impl Candidate for C {
        fn rank(&self, _: u64) -> Rank {
            self.rank
        }
        fn load(&self) -> usize {
            self.load
        }
    }

    fn c(ejected: bool, load: usize) -> C {
        C {
            rank: if ejected { Rank::Out } else { Rank::Ready },
            load,
        }
    }

    fn rng() -> impl FnMut(usize) -> usize {
        let mut r = fastrand::Rng::with_seed(7);
        move |n| r.usize(..n)
    }

    #[test]
    fn round_robin_skips_ejected() {
        let items = [c(false, 0), c(true, 0), c(false, 0)];
        let turn = AtomicUsize::new(0);
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(&items, 0, Balance::RoundRobin, &turn, rng()).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn tried_endpoints_come_after_untried_ones_and_before_ejected_ones() {
        let items = [
            C {
                rank: Rank::Tried,
                load: 0,
            },
            c(false, 9),
            c(true, 0),
        ];
        let turn = AtomicUsize::new(0);
        for _ in 0..20 {
            let at = pick(&items, 0, Balance::PowerOfTwoChoices, &turn, rng());
            assert_eq!(at, Some(1), "the untried endpoint wins whatever its load");
        }
        let items = [
            C {
                rank: Rank::Tried,
                load: 0,
            },
            c(true, 0),
        ];
        assert_eq!(pick(&items, 0, Balance::RoundRobin, &turn, rng()), Some(0));
    }

    #[test]
    fn panic_mode_uses_everyone() {
        let items = [c(true, 0), c(true, 0), c(true, 0)];
        let turn = AtomicUsize::new(0);
        let picks: Vec<usize> = (0..3)
            .map(|_| pick(&items, 0, Balance::RoundRobin, &turn, rng()).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2]);
        assert_eq!(pick::<C>(&[], 0, Balance::RoundRobin, &turn, rng()), None);
    }

    #[test]
    fn p2c_prefers_the_less_loaded() {
        let items = [c(false, 5), c(false, 0)];
        let turn = AtomicUsize::new(0);
        let r = fastrand::Rng::with_seed(1);
        for _ in 0..50 {
            let mut r = r.clone();
            let got = pick(&items, 0, Balance::PowerOfTwoChoices, &turn, |n| {
                r.usize(..n)
            });
            assert_eq!(got, Some(1));
        }
        // never an ejected one while another is eligible
        let items = [c(true, 0), c(false, 9), c(true, 0), c(false, 9)];
        let mut r = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            let got = pick(&items, 0, Balance::PowerOfTwoChoices, &turn, |n| {
                r.usize(..n)
            });
            assert!(matches!(got, Some(1 | 3)), "{got:?}");
        }
    }

    #[test]
    fn p2c_spreads_ties_evenly() {
        let items = [c(false, 0), c(false, 0), c(false, 0)];
        let turn = AtomicUsize::new(0);
        let mut r = fastrand::Rng::with_seed(11);
        let mut hits = [0u32; 3];
        for _ in 0..30_000 {
            let i = pick(&items, 0, Balance::PowerOfTwoChoices, &turn, |n| {
                r.usize(..n)
            })
            .unwrap();
            hits[i] += 1;
        }
        for h in hits {
            assert!((9_000..11_000).contains(&h), "{hits:?}");
        }
    }

    #[test]
    fn panic_mode_prefers_ejected_endpoints_to_unhealthy_ones() {
        let r = |rank| C { rank, load: 0 };
        let turn = AtomicUsize::new(0);
        let items = [
            r(Rank::Out),
            r(Rank::Ejected),
            r(Rank::Out),
            r(Rank::Ejected),
        ];
        let picks: Vec<usize> = (0..8)
            .map(|_| pick(&items, 0, Balance::RoundRobin, &turn, rng()).unwrap())
            .collect();
        assert!(picks.iter().all(|i| matches!(i, 1 | 3)), "{picks:?}");
        assert!(picks.contains(&1) && picks.contains(&3), "{picks:?}");
    }

    #[test]
    fn pending_endpoints_wait_for_ready_ones() {
        let r = |rank| C { rank, load: 0 };
        let turn = AtomicUsize::new(0);
        // One ready: every call goes there, not to the pending or out ones.
        let items = [r(Rank::Pending), r(Rank::Ready), r(Rank::Out)];
        for _ in 0..10 {
            assert_eq!(pick(&items, 0, Balance::RoundRobin, &turn, rng()), Some(1));
        }
        // None ready: the pending ones, never the one out.
        let items = [r(Rank::Pending), r(Rank::Out), r(Rank::Pending)];
        let picks: Vec<usize> = (0..4)
            .map(|_| pick(&items, 0, Balance::RoundRobin, &turn, rng()).unwrap())
            .collect();
        assert!(picks.iter().all(|i| *i != 1), "{picks:?}");
        // Everyone out: panic mode.
        let items = [r(Rank::Out), r(Rank::Out)];
        let mut seen = [false; 2];
        for _ in 0..4 {
            seen[pick(&items, 0, Balance::RoundRobin, &turn, rng()).unwrap()] = true;
        }
        assert_eq!(seen, [true, true]);
    }
}
