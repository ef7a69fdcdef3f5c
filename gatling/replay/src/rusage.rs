//! The replay's own footprint, so a run shows how much of the machine the load generator took from the
//! stack it measures.

use nix::sys::resource::{self, Resource, Usage, UsageWho};
use nix::sys::time::TimeValLike;

/// User plus system CPU time this process has used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    let usage = own_usage();
    (usage.user_time() + usage.system_time()).num_microseconds() as f64 / 1e6
}

/// The largest resident set this process has had, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // Linux reports it in kibibytes.
    own_usage().max_rss() as u64 * 1024
}

fn own_usage() -> Usage {
    resource::getrusage(UsageWho::RUSAGE_SELF).expect("getrusage of this process cannot fail")
}

/// Lifts the soft open-files limit to the hard one: a stalled service can leave thousands of users, each
/// with its own connection, waiting at once.
pub fn raise_open_files_limit() {
    if let Ok((soft, hard)) = resource::getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        // Left as it was if refused: the run goes on, with fewer users able to wait at once.
        let _ = resource::setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        // A fixed amount of work costs the same CPU time however busy the machine is.
        let mut accumulator = 0u64;
        for step in 0..30_000_000u64 {
            accumulator = std::hint::black_box(
                accumulator
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(step),
            );
        }
        assert!(
            cpu_seconds() - before >= 0.005,
            "{}",
            cpu_seconds() - before
        );
        assert!(peak_rss_bytes() > 1024 * 1024);
    }
}
