//! Choosing an endpoint for one call: round-robin or power of two choices on in-flight
//! calls, among the endpoints not ejected (all of them in panic mode).

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

/// What balancing needs to know about an endpoint.
pub(crate) trait Candidate {
    fn ejected(&self, now: u64) -> bool;
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
    let ejected = items.iter().filter(|c| c.ejected(now)).count();
    // Panic mode when every endpoint is ejected: use them all.
    let everyone = ejected == 0 || ejected == n;
    let eligible = if everyone { n } else { n - ejected };
    // The k-th eligible endpoint. The ejection state may change between the count and
    // this walk; then fall back to any endpoint rather than fail.
    let nth = |k: usize| -> usize {
        if everyone {
            return k;
        }
        items
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.ejected(now))
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
        ejected: bool,
        load: usize,
    }

    impl Candidate for C {
        fn ejected(&self, _: u64) -> bool {
            self.ejected
        }
        fn load(&self) -> usize {
            self.load
        }
    }

    fn c(ejected: bool, load: usize) -> C {
        C { ejected, load }
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
}
