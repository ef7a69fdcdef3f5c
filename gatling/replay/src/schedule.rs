//! When each virtual user starts: the simulation's injection profiles, computed the way Gatling 3.10's open
//! injection steps compute them (`io.gatling.core.controller.inject.open.OpenInjectionStep` and
//! `io.gatling.core.util.Shard`).
//!
//! Gatling works second by second. A step decides how many users start in each whole second, then spreads
//! those users over the second's 1000 milliseconds with `Shard.shards(users, 1000)`. Steps run one after the
//! other, each shifted by the durations of the steps before it; scenarios inject independently from time 0.

use std::time::Duration;

use crate::rng::JavaRandom;

/// Users per second, held in thousandths so that a rate multiplied by `--rate` keeps the exact
/// arithmetic below (every quantity stays a fraction with a known integer denominator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    thousandths: u64,
}

impl Rate {
    pub const fn per_second(users: u64) -> Self {
        Self {
            thousandths: users * 1000,
        }
    }

    /// This rate times `factor`, to the nearest thousandth of a user per second.
    pub fn times(self, factor: f64) -> Self {
        Self {
            thousandths: (self.thousandths as f64 * factor).round() as u64,
        }
    }

    pub fn users_per_second(self) -> f64 {
        self.thousandths as f64 / 1000.0
    }
}

/// One open injection step, with durations in whole seconds like Gatling's (`duration.toSeconds`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InjectionStep {
    /// `constantUsersPerSec(rate).during(seconds)`.
    Constant { rate: Rate, seconds: u64 },
    /// `constantUsersPerSec(rate).during(seconds).randomized`: a Poisson process.
    Randomized { rate: Rate, seconds: u64 },
    /// `rampUsersPerSec(from).to(to).during(seconds)`.
    Ramp { from: Rate, to: Rate, seconds: u64 },
}

impl InjectionStep {
    /// The steps as the simulation writes them, in whole users per second.
    pub const fn constant(users: u64, seconds: u64) -> Self {
        Self::Constant {
            rate: Rate::per_second(users),
            seconds,
        }
    }

    pub const fn randomized(users: u64, seconds: u64) -> Self {
        Self::Randomized {
            rate: Rate::per_second(users),
            seconds,
        }
    }

    pub const fn ramp(from: u64, to: u64, seconds: u64) -> Self {
        Self::Ramp {
            from: Rate::per_second(from),
            to: Rate::per_second(to),
            seconds,
        }
    }

    pub fn seconds(&self) -> u64 {
        match *self {
            Self::Constant { seconds, .. }
            | Self::Randomized { seconds, .. }
            | Self::Ramp { seconds, .. } => seconds,
        }
    }

    /// The same step with its duration multiplied by `factor`. Gatling's steps only count whole seconds, so
    /// the result is rounded to whole seconds, and never below one so that no step disappears.
    pub fn scaled(&self, factor: f64) -> Self {
        let seconds = ((self.seconds() as f64 * factor).round() as u64).max(1);
        match *self {
            Self::Constant { rate, .. } => Self::Constant { rate, seconds },
            Self::Randomized { rate, .. } => Self::Randomized { rate, seconds },
            Self::Ramp { from, to, .. } => Self::Ramp { from, to, seconds },
        }
    }

    /// The same step with every rate multiplied by `factor` and its duration kept.
    pub fn rate_times(&self, factor: f64) -> Self {
        match *self {
            Self::Constant { rate, seconds } => Self::Constant {
                rate: rate.times(factor),
                seconds,
            },
            Self::Randomized { rate, seconds } => Self::Randomized {
                rate: rate.times(factor),
                seconds,
            },
            Self::Ramp { from, to, seconds } => Self::Ramp {
                from: from.times(factor),
                to: to.times(factor),
                seconds,
            },
        }
    }

    /// Start offsets of this step's users, relative to the step's own start, in order.
    fn arrivals(&self, poisson_seed: i64) -> Vec<Duration> {
        match *self {
            Self::Constant { rate, seconds } => constant_rate(rate, seconds),
            Self::Randomized { rate, seconds } => poisson(rate, seconds, poisson_seed),
            Self::Ramp { from, to, seconds } => ramp_rate(from, to, seconds),
        }
    }
}

/// Start offsets for a chain of steps, relative to the start of the run. Each randomized step draws from
/// its own generator seeded with `poisson_seed`, as Gatling gives each step its own `java.util.Random`.
pub fn arrivals(steps: &[InjectionStep], poisson_seed: i64) -> Vec<Duration> {
    let mut offset = Duration::ZERO;
    let mut all = Vec::new();
    for step in steps {
        all.extend(
            step.arrivals(poisson_seed)
                .into_iter()
                .map(|arrival| offset + arrival),
        );
        offset += Duration::from_secs(step.seconds());
    }
    all
}

/// `ConstantRateOpenInjection`: `round(seconds * rate)` users, as a `RampOpenInjection` that gives second
/// `s` exactly `Shard.shard(users, s, seconds).length` of them.
fn constant_rate(rate: Rate, seconds: u64) -> Vec<Duration> {
    // Half up, as Scala's `Double.round`.
    let users = (seconds * rate.thousandths + 500) / 1000;
    let per_second = (0..seconds).map(|second| {
        cumulative_shard(users, seconds, second as i64)
            - cumulative_shard(users, seconds, second as i64 - 1)
    });
    spread_within_seconds(per_second)
}

/// `RampRateOpenInjection`: second `s` gets `a * (2s + 1) + from + pending` users with
/// `a = (to - from) / (2 * seconds)`, rounded HALF_UP at 10 decimals then truncated to an integer, the
/// remainder carried to the next second as `pending`.
///
/// Gatling does this in `BigDecimal` with 34 significant digits. Here every quantity is an exact multiple
/// of `1 / (2000 * seconds)` (rates are thousandths), so the arithmetic is exact in integers. Gatling's
/// rounding error (below 1e-30) cannot change a single result: the only fractions that occur are
/// multiples of `1 / (2000 * seconds)`, nowhere near the 0.99999999995 where rounding at 10 decimals
/// tips over.
fn ramp_rate(from: Rate, to: Rate, seconds: u64) -> Vec<Duration> {
    let denominator = 2000 * i128::from(seconds);
    let (from, to) = (i128::from(from.thousandths), i128::from(to.thousandths));
    let mut pending_numerator: i128 = 0;
    let per_second = (0..seconds).map(move |second| {
        let exact_numerator = (to - from) * (2 * i128::from(second) + 1)
            + from * 2 * i128::from(seconds)
            + pending_numerator;
        let users = round_half_up_at_ten_decimals_then_truncate(exact_numerator, denominator);
        pending_numerator = exact_numerator - users * denominator;
        users as u64
    });
    spread_within_seconds(per_second)
}

/// `BigDecimal(numerator / denominator).setScale(10, HALF_UP).intValue` for a non-negative exact value.
fn round_half_up_at_ten_decimals_then_truncate(numerator: i128, denominator: i128) -> i128 {
    let whole = numerator.div_euclid(denominator);
    let remainder = numerator.rem_euclid(denominator);
    // The fraction rounds up to 1 iff 1 - remainder/denominator <= 0.5e-10.
    if remainder > 0 && (denominator - remainder) * 20_000_000_000 <= denominator {
        whole + 1
    } else {
        whole
    }
}

/// `PoissonOpenInjection`: Lewis and Shedler's thinning with exponential gaps drawn from
/// `java.util.Random(seed)`, keeping arrivals strictly before the end of the step. With a constant rate
/// every candidate is kept, but the keep-draw still consumes a number, as in Gatling.
fn poisson(rate: Rate, seconds: u64, seed: i64) -> Vec<Duration> {
    let lambda = rate.users_per_second();
    let mut random = JavaRandom::new(seed);
    let mut elapsed = 0.0;
    let mut arrivals = Vec::new();
    loop {
        elapsed += -random.next_double().ln() / lambda;
        if elapsed >= seconds as f64 {
            return arrivals;
        }
        // startRate + (endRate - startRate) * elapsed / seconds over maxLambda is 1 at a constant rate.
        if random.next_double() < 1.0 {
            arrivals.push(Duration::from_nanos((elapsed * 1e9).round() as u64));
        }
    }
}

/// `Shard.sumFromZero`: how many of `total` users fall in buckets `0..=bucket` out of `buckets`.
fn cumulative_shard(total: u64, buckets: u64, bucket: i64) -> u64 {
    if bucket < 0 {
        0
    } else if bucket as u64 == buckets - 1 {
        total
    } else {
        // The same double arithmetic as Gatling: total.toDouble / buckets * (bucket + 1), rounded up.
        (total as f64 / buckets as f64 * (bucket + 1) as f64).ceil() as u64
    }
}

/// `InjectionIterator`: each second's users go to the millisecond buckets `Shard.shards(users, 1000)`
/// assigns them.
fn spread_within_seconds(users_per_second: impl Iterator<Item = u64>) -> Vec<Duration> {
    let mut arrivals = Vec::new();
    for (second, users) in users_per_second.enumerate() {
        for millisecond in 0..1000 {
            let in_this_millisecond = cumulative_shard(users, 1000, millisecond)
                - cumulative_shard(users, 1000, millisecond - 1);
            let at = Duration::from_millis(second as u64 * 1000 + millisecond as u64);
            arrivals.extend(std::iter::repeat_n(at, in_this_millisecond as usize));
        }
    }
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(steps: &[InjectionStep]) -> usize {
        arrivals(steps, 0).len()
    }

    #[test]
    fn constant_rate_spreads_users_evenly_across_each_second() {
        let arrivals = arrivals(&[InjectionStep::constant(2, 3)], 0);
        let millis: Vec<u128> = arrivals.iter().map(Duration::as_millis).collect();
        // Shard.shards(2, 1000): ceil(0.002 * (k + 1)) steps up at k = 0 and k = 500.
        assert_eq!(millis, vec![0, 500, 1000, 1500, 2000, 2500]);
    }

    #[test]
    fn ramp_sends_the_average_rate_times_the_duration() {
        assert_eq!(count(&[InjectionStep::ramp(6, 600, 180)]), 54_540);
        assert_eq!(count(&[InjectionStep::ramp(6, 100, 180)]), 9_540);
        assert_eq!(count(&[InjectionStep::ramp(6, 40, 180)]), 4_140);
    }

    #[test]
    fn ramp_per_second_counts_follow_the_linear_rate_with_carried_fractions() {
        // a = (100 - 6) / 360: second 0 gets a + 6 = 6.26 -> 6, the 0.26 carries over; second 1 gets
        // 3a + 6 + 0.26 = 7.04 -> 7; second 2 gets 5a + 6 + 0.04 = 7.35 -> 7.
        let arrivals = arrivals(&[InjectionStep::ramp(6, 100, 180)], 0);
        let in_second = |second: u64| arrivals.iter().filter(|at| at.as_secs() == second).count();
        assert_eq!((in_second(0), in_second(1), in_second(2)), (6, 7, 7));
        assert_eq!(in_second(179), 100);
    }

    /// Count and sum of start milliseconds per profile, from a JDK port of Gatling's formulas that uses
    /// `java.math.BigDecimal` with `MathContext.DECIMAL128`, as Scala's `BigDecimal` does.
    #[test]
    fn matches_gatlings_big_decimal_arithmetic() {
        let cases = [
            (InjectionStep::ramp(6, 600, 180), 54_540, 6_512_328_473),
            (InjectionStep::ramp(6, 100, 180), 9_540, 1_112_378_745),
            (InjectionStep::ramp(6, 40, 180), 4_140, 464_393_358),
            (InjectionStep::ramp(6, 600, 36), 10_908, 260_427_640),
            (InjectionStep::ramp(6, 100, 36), 1_908, 44_488_123),
            (InjectionStep::ramp(6, 40, 36), 828, 18_568_672),
            (InjectionStep::ramp(6, 100, 7), 371, 1_674_860),
            (InjectionStep::ramp(6, 40, 9), 207, 1_156_911),
            (InjectionStep::constant(2, 10), 20, 95_000),
            (InjectionStep::constant(2, 25), 50, 612_500),
            (InjectionStep::constant(3, 7), 21, 69_993),
        ];
        for (step, count, sum_ms) in cases {
            let arrivals = arrivals(&[step], 0);
            let sum: u128 = arrivals.iter().map(Duration::as_millis).sum();
            assert_eq!((arrivals.len(), sum), (count, sum_ms), "{step:?}");
        }
    }

    /// Arrival counts of `constantUsersPerSec(5).during(15.seconds).randomized` for seeds 0 to 59, from the
    /// same thinning loop run on a JDK with `java.util.Random` and `Math.log`.
    #[test]
    fn poisson_counts_match_a_jdk_run_seed_for_seed() {
        let jdk = [
            80, 65, 69, 69, 82, 73, 76, 85, 71, 62, 65, 72, 75, 71, 74, 55, 90, 68, 86, 64, 77, 69,
            82, 80, 84, 81, 85, 72, 72, 75, 72, 72, 73, 72, 80, 70, 69, 68, 63, 85, 78, 73, 83, 68,
            85, 75, 78, 73, 80, 78, 81, 70, 68, 77, 73, 72, 82, 72, 80, 89,
        ];
        for (seed, expected) in jdk.into_iter().enumerate() {
            assert_eq!(
                count_with_seed(InjectionStep::randomized(5, 15), seed as i64),
                expected
            );
        }
    }

    fn count_with_seed(step: InjectionStep, seed: i64) -> usize {
        arrivals(&[step], seed).len()
    }

    #[test]
    fn ten_decimal_rounding_tips_only_within_half_of_ten_to_the_minus_ten() {
        assert_eq!(
            round_half_up_at_ten_decimals_then_truncate(7 * 360 + 359, 360),
            7
        );
        assert_eq!(round_half_up_at_ten_decimals_then_truncate(7 * 360, 360), 7);
        let denominator = 100_000_000_000i128;
        assert_eq!(
            round_half_up_at_ten_decimals_then_truncate(2 * denominator - 5, denominator),
            2
        );
        assert_eq!(
            round_half_up_at_ten_decimals_then_truncate(2 * denominator - 6, denominator),
            1
        );
    }

    #[test]
    fn steps_follow_each_other() {
        let arrivals = arrivals(
            &[InjectionStep::constant(1, 2), InjectionStep::constant(1, 1)],
            0,
        );
        assert_eq!(
            arrivals,
            vec![
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }

    #[test]
    fn poisson_is_reproducible_for_a_seed_and_stays_inside_its_step() {
        let step = [InjectionStep::randomized(5, 15)];
        let first = arrivals(&step, 1234);
        assert_eq!(first, arrivals(&step, 1234));
        assert!(first.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(first.iter().all(|at| *at < Duration::from_secs(15)));
        // The mean over many seeds is rate * duration.
        let total: usize = (0..400).map(|seed| arrivals(&step, seed).len()).sum();
        let mean = total as f64 / 400.0;
        assert!((mean - 75.0).abs() < 2.0, "mean {mean}");
    }

    #[test]
    fn scaling_rounds_to_whole_seconds_and_keeps_every_step() {
        let ramp = InjectionStep::ramp(6, 600, 180);
        assert_eq!(ramp.scaled(0.2), InjectionStep::ramp(6, 600, 36));
        assert_eq!(InjectionStep::constant(2, 10).scaled(0.01).seconds(), 1);
        assert_eq!(ramp.scaled(1.0), ramp);
    }

    #[test]
    fn a_rate_factor_multiplies_each_steps_users_and_keeps_its_duration() {
        let steps = [
            InjectionStep::constant(2, 10),
            InjectionStep::ramp(6, 600, 180),
            InjectionStep::ramp(6, 40, 36),
        ];
        for factor in [0.5, 1.25, 3.0, 0.3] {
            for step in steps {
                let faster = step.rate_times(factor);
                assert_eq!(faster.seconds(), step.seconds());
                let arrivals = arrivals(&[faster], 0);
                assert!(
                    arrivals
                        .iter()
                        .all(|at| *at < Duration::from_secs(step.seconds()))
                );
                // Each second's users are truncated with the fraction carried on, so a ramp may end a
                // fraction of a user short; a constant rate's total is rounded.
                let expected = count(&[step]) as f64 * factor;
                let got = arrivals.len() as f64;
                assert!(
                    got <= expected.round() && got > expected - 1.0,
                    "{step:?} x {factor}: {got} users, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn a_rate_factor_of_one_changes_nothing() {
        let step = InjectionStep::ramp(6, 100, 180);
        assert_eq!(step.rate_times(1.0), step);
        assert_eq!(Rate::per_second(5).times(1.0), Rate::per_second(5));
    }

    #[test]
    fn a_faster_poisson_step_draws_that_many_more_arrivals_on_average() {
        let step = [InjectionStep::randomized(5, 15).rate_times(3.0)];
        let total: usize = (0..400).map(|seed| arrivals(&step, seed).len()).sum();
        let mean = total as f64 / 400.0;
        assert!((mean - 225.0).abs() < 4.0, "mean {mean}");
    }

    #[test]
    fn rates_keep_thousandths() {
        assert_eq!(Rate::per_second(6).times(1.0001).users_per_second(), 6.001);
        assert_eq!(Rate::per_second(2).times(1.25).users_per_second(), 2.5);
    }
}
