//! A small seeded random number generator that depends on no library.
//!
//! The demo org must be byte-identical for the same seed on every machine and after dependency
//! upgrades. The `rand` crate documents that `StdRng` may change its stream between releases,
//! so the generator implements SplitMix64 here instead.

/// SplitMix64 state.
pub(crate) struct Rng(u64);

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a label with 64-bit FNV-1a, so that each generation stage gets its own stream.
fn hash_label(label: &str) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in label.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

impl Rng {
    /// Creates the stream for one stage (`label`) and one entity (`key`) of a seeded run.
    /// Streams of different stages do not shift when another stage draws more numbers.
    pub(crate) fn stream(seed: u64, label: &str, key: u64) -> Rng {
        let state = mix64(seed ^ mix64(hash_label(label) ^ mix64(key.wrapping_add(GOLDEN_GAMMA))));
        Rng(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// Draws a float uniformly from [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Draws an integer uniformly from [0, n). Returns 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Draws an integer uniformly from the inclusive range [low, high].
    pub(crate) fn range(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = (high - low) as u64 + 1;
        low + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    pub(crate) fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// Picks one item uniformly. Panics on an empty slice, so callers check first.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Picks an index with probability proportional to its weight.
    pub(crate) fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut target = self.unit() * total;
        for (index, weight) in weights.iter().enumerate() {
            if target < *weight {
                return index;
            }
            target -= weight;
        }
        weights.len().saturating_sub(1)
    }

    /// Draws from the exponential distribution with the given mean.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Draws from the Poisson distribution by Knuth's product method, fine for small means.
    pub(crate) fn poisson(&mut self, mean: f64) -> usize {
        let limit = (-mean).exp();
        let mut product = self.unit();
        let mut count = 0;
        while product > limit && count < 1000 {
            count += 1;
            product *= self.unit();
        }
        count
    }

    /// Shuffles in place (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_repeats_for_same_key() {
        let mut first = Rng::stream(7, "contacts", 42);
        let mut second = Rng::stream(7, "contacts", 42);
        let mut other = Rng::stream(7, "contacts", 43);
        let a: Vec<u64> = (0..5).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..5).map(|_| second.next_u64()).collect();
        let c: Vec<u64> = (0..5).map(|_| other.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut rng = Rng::stream(1, "bounds", 0);
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let value = rng.range(-3, 3);
            assert!((-3..=3).contains(&value));
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
