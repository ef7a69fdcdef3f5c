//! The replay's own footprint, so a run shows how much of the machine the load generator took from the
//! stack it measures.

/// User plus system CPU time this process has used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    let usage = own_usage();
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The largest resident set this process has had, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // Linux reports ru_maxrss in kibibytes.
    own_usage().ru_maxrss as u64 * 1024
}

fn own_usage() -> libc::rusage {
    // SAFETY: getrusage only writes into the struct it is given, which is valid for writes.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

/// Lifts the soft open-files limit to the hard one: a stalled service can leave thousands of users, each
/// with its own connection, waiting at once.
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit read and write only the struct they are given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
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
