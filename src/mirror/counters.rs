//! The mirror's counters and catch-up histogram, in a registry of its own that the replica's
//! metrics serve.

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

/// The mirror's own metrics, served with the replica's (see `Mirror::registry`).
pub(super) struct Counters {
    pub(super) registry: Registry,
    /// It grows with the rows each catch-up reads, so it shows a catch-up falling behind.
    pub(super) catch_up_seconds: Histogram,
    pub(super) catch_ups: IntCounter,
    pub(super) catch_up_rows: IntCounter,
    pub(super) undecodable_rows: IntCounter,
    pub(super) search_items_visited: IntCounter,
    /// Searches that found fewer than 50 people in memory while it leaves people out, by what
    /// came of them: ruled out by the filter of pieces, or asked of the database.
    pub(super) searches_ruled_out: IntCounter,
    pub(super) searches_in_database: IntCounter,
    pub(super) search_database_rows: IntCounter,
    pub(super) searches_cut_short: IntCounter,
}

impl Counters {
    pub(super) fn new() -> Counters {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let counters = Counters {
            registry: Registry::new(),
            catch_up_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "mirror_catch_up_duration_seconds",
                    "Time the mirror's catch-ups take to read the rows added since the last one.",
                )
                // From half a millisecond to four seconds, past which the database timeout is near.
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
            )
            .expect("valid metric"),
            catch_ups: counter(
                "mirror_catch_ups_total",
                "Catch-ups run by the mirror; the searches waiting for one share it.",
            ),
            catch_up_rows: counter(
                "mirror_catch_up_rows_total",
                "Rows read from the database by the mirror's catch-ups.",
            ),
            undecodable_rows: counter(
                "mirror_undecodable_rows_total",
                "Stored rows skipped by the mirror because they do not read as a person.",
            ),
            search_items_visited: counter(
                "search_items_visited_total",
                "Distinct stack items whose people the searches in memory went through.",
            ),
            searches_ruled_out: counter(
                "mirror_searches_ruled_out_total",
                "Searches past memory that the filter of the people left out answered: nobody.",
            ),
            searches_in_database: counter(
                "mirror_searches_in_database_total",
                "Searches past memory that went on in the database.",
            ),
            search_database_rows: counter(
                "mirror_search_database_rows_total",
                "Rows the database returned to the searches past memory, at most 50 a search.",
            ),
            searches_cut_short: counter(
                "mirror_searches_cut_short_total",
                "Searches past memory that the database could not finish within its budget.",
            ),
        };
        for counter in [
            &counters.catch_ups,
            &counters.catch_up_rows,
            &counters.undecodable_rows,
            &counters.search_items_visited,
            &counters.searches_ruled_out,
            &counters.searches_in_database,
            &counters.search_database_rows,
            &counters.searches_cut_short,
        ] {
            counters
                .registry
                .register(Box::new(counter.clone()))
                .expect("registered once");
        }
        counters
            .registry
            .register(Box::new(counters.catch_up_seconds.clone()))
            .expect("registered once");
        counters
    }
}
