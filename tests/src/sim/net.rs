//! The simulated network between replicas: per-message delay (so reordering), loss and
//! duplication, and directed cuts that make partitions, one-way partitions and isolated
//! nodes. Cuts are counted so overlapping faults heal independently.

use super::rng::Rng;

/// Network weather and cuts.
#[derive(Debug, Clone)]
pub struct Net {
    n: usize,
    cuts: Vec<u16>,
    /// Probability that a message is lost.
    pub drop_p: f64,
    /// Probability that a message is delivered twice.
    pub dup_p: f64,
    /// Probability that a message takes the slow path (a long delay: reordering).
    pub slow_p: f64,
    /// Usual one-way delay bounds, microseconds.
    pub delay_us: (u64, u64),
    /// Upper bound of a slow delivery, microseconds.
    pub slow_us_max: u64,
}

impl Net {
    /// A healthy network of `n` nodes.
    pub fn new(n: usize) -> Net {
        Net {
            n,
            cuts: vec![0; n * n],
            drop_p: 0.0,
            dup_p: 0.0,
            slow_p: 0.0,
            delay_us: (100, 2_000),
            slow_us_max: 2_000,
        }
    }

    /// Whether `from -> to` is cut.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.cuts[from * self.n + to] > 0
    }

    /// Cut (or with `heal`, restore) each directed pair once.
    pub fn cut(&mut self, pairs: &[(usize, usize)], heal: bool) {
        for &(a, b) in pairs {
            let c = &mut self.cuts[a * self.n + b];
            *c = if heal { c.saturating_sub(1) } else { *c + 1 };
        }
    }

    /// Remove every cut.
    pub fn heal_all(&mut self) {
        self.cuts.iter_mut().for_each(|c| *c = 0);
    }

    /// Quiet weather: no loss, no duplicates, short delays.
    pub fn calm(&mut self) {
        (self.drop_p, self.dup_p, self.slow_p) = (0.0, 0.0, 0.0);
    }

    /// The delays (microseconds) of each copy of one message: none if lost or cut.
    pub fn deliveries(&self, rng: &mut Rng, from: usize, to: usize) -> Vec<u64> {
        if self.blocked(from, to) || rng.chance(self.drop_p) {
            return Vec::new();
        }
        let copies = if rng.chance(self.dup_p) { 2 } else { 1 };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    /// One delivery delay.
    pub fn delay(&self, rng: &mut Rng) -> u64 {
        if rng.chance(self.slow_p) {
            rng.range(self.delay_us.1, self.slow_us_max.max(self.delay_us.1))
        } else {
            rng.range(self.delay_us.0, self.delay_us.1)
        }
    }

    /// Every directed pair between the two sides of a split.
    pub fn between(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for &x in a {
            for &y in b {
                pairs.push((x, y));
                pairs.push((y, x));
            }
        }
        pairs
    }
}
