//! Random number generators with outputs fixed forever for a given seed.
//!
//! Hand-written rather than taken from a crate because reproducibility is the point: a payload file or an
//! injection schedule must come out byte for byte the same from the same seed on every version of this
//! program, which general-purpose crates do not promise across releases.

/// SplitMix64: small, fast and statistically sound for test-data generation.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` without modulo bias (Lemire's multiply-and-reject).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `java.util.Random`, bit for bit: Gatling draws its Poisson arrivals from it, so the same seed gives the
/// same arrival times here as in a Gatling run seeded alike.
#[derive(Debug, Clone)]
pub struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    pub fn new(seed: i64) -> Self {
        Self {
            seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    fn next_bits(&mut self, bits: u32) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(Self::MULTIPLIER)
            .wrapping_add(Self::ADDEND)
            & Self::MASK;
        self.seed >> (48 - bits)
    }

    pub fn next_double(&mut self) -> f64 {
        let high = self.next_bits(26);
        let low = self.next_bits(27);
        ((high << 27) + low) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_matches_the_jdk_sequence() {
        // Values printed by `new java.util.Random(42).nextDouble()` on a JDK.
        let mut random = JavaRandom::new(42);
        assert_eq!(random.next_double(), 0.7275636800328681);
        assert_eq!(random.next_double(), 0.6832234717598454);
        let mut random = JavaRandom::new(0);
        assert_eq!(random.next_double(), 0.730967787376657);
    }

    #[test]
    fn splitmix_is_reproducible_and_spreads_evenly() {
        let mut first = SplitMix64::new(7);
        let mut second = SplitMix64::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let value = first.below(10);
            assert_eq!(value, second.below(10));
            counts[value as usize] += 1;
        }
        for count in counts {
            assert!((9_500..10_500).contains(&count), "uneven bucket: {count}");
        }
        assert!((0..1000).all(|_| (3..=5).contains(&first.between(3, 5))));
    }
}
