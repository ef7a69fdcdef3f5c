//! `cargo xtask search-probe [--rounds N] [--seed S] [--interval-ms MS]`: how long one replica
//! of the running native stack takes to answer searches for random terms, one at a time on a
//! kept connection, each started `MS` after the one before (20 a second by default: a user's
//! searches, not a load; 0 sends them back to back), with nothing else running. Terms are letters
//! of either case, as the contest's names are, of each length in [`LENGTHS`], with a space inside
//! for four characters or more, and pairs of Cyrillic letters, which generated names never hold.
//! The searches that matched nobody and those that matched somebody are reported apart: past a
//! replica's memory, the first are those the database must be asked about in full. With the
//! database's CPU time, and the periods it ran out of its quota in: a search that waits for the
//! next period waits up to 55 ms at 0.45 CPU.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cgroup::CpuUsage;
use crate::runs::hostile;
use crate::stack::Stack;
use crate::topology::Topology;
use crate::workspace::repo_root;

const LENGTHS: [usize; 7] = [2, 3, 4, 5, 6, 8, 12];
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const CYRILLIC: [char; 8] = ['ж', 'щ', 'ы', 'ю', 'я', 'ф', 'ц', 'э'];

pub fn search_probe(rounds: usize, seed: u64, interval: Duration) -> Result<()> {
    let topology = Topology::load(&repo_root())?;
    let database = Stack::load()?
        .and_then(|stack| stack.services.into_iter().find(|s| s.name == topology.database))
        .map(|service| service.cgroup);
    let before = database.as_ref().map(|cgroup| cgroup.cpu_usage()).transpose()?;
    let (name, port) = topology.replicas.first().context("compose has no replica")?;
    let base_url = format!("http://127.0.0.1:{port}");
    let agent = hostile::agent();
    let mut random = fastrand::Rng::with_seed(seed);
    let mut kinds: Vec<Kind> = Vec::new();
    let mut next = Instant::now();
    for _ in 0..rounds {
        for (label, term) in terms(&mut random) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let started = Instant::now();
            next = started + interval;
            let mut response =
                agent.get(format!("{base_url}/pessoas")).query("t", &term).call().with_context(
                    || format!("{name} did not answer a search (is the stack up?)"),
                )?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string()?;
            let milliseconds = started.elapsed().as_secs_f64() * 1000.0;
            let kind = match kinds.iter_mut().find(|kind| kind.label == label) {
                Some(kind) => kind,
                None => {
                    kinds.push(Kind { label, ..Kind::default() });
                    kinds.last_mut().expect("just pushed")
                }
            };
            match (status, serde_json::from_str::<Vec<Value>>(&text).map(|people| people.len())) {
                (200, Ok(0)) => kind.nobody.push(milliseconds),
                (200, Ok(_)) => kind.somebody.push(milliseconds),
                _ => kind.failed += 1,
            }
        }
    }
    let every = interval.as_millis();
    println!("{rounds} searches of each kind on {name} ({base_url}), one every {every} ms, in ms:");
    println!("{:<20} {:^26}   {:^26}   {:>7}", "", "matched nobody", "matched somebody", "not");
    let columns = ["n", "p50", "p99", "max"];
    let [n, p50, p99, max] = columns;
    println!(
        "{:<20} {n:>5} {p50:>6} {p99:>6} {max:>6}   {n:>5} {p50:>6} {p99:>6} {max:>6}   {:>7}",
        "term", "200"
    );
    for kind in &mut kinds {
        println!(
            "{:<20} {}   {}   {:>7}",
            kind.label,
            percentiles(&mut kind.nobody),
            percentiles(&mut kind.somebody),
            kind.failed
        );
    }
    if let (Some(database), Some(before)) = (&database, before) {
        let CpuUsage { seconds, periods, throttled_periods, .. } = database.cpu_usage()? - before;
        println!(
            "{}: {seconds:.1} CPU seconds, out of its quota in {throttled_periods} of {periods} periods",
            topology.database
        );
    }
    let failed: usize = kinds.iter().map(|kind| kind.failed).sum();
    if failed > 0 {
        bail!("{failed} searches were not answered 200 with a JSON array");
    }
    Ok(())
}

#[derive(Default)]
struct Kind {
    label: String,
    nobody: Vec<f64>,
    somebody: Vec<f64>,
    failed: usize,
}

/// One term of each kind, with its label.
fn terms(random: &mut fastrand::Rng) -> Vec<(String, String)> {
    let mut terms = Vec::new();
    for length in LENGTHS {
        let mut letters: Vec<char> =
            (0..length).map(|_| LETTERS[random.usize(..LETTERS.len())] as char).collect();
        terms.push((format!("{length} letters"), letters.iter().collect()));
        if length >= 4 {
            letters[random.usize(1..length - 1)] = ' ';
            terms.push((format!("{length} with a space"), letters.iter().collect()));
        }
    }
    let cyrillic: String = (0..2).map(|_| CYRILLIC[random.usize(..CYRILLIC.len())]).collect();
    terms.push(("2 Cyrillic letters".to_owned(), cyrillic));
    terms
}

/// `n p50 p99 max` of `times`, in milliseconds.
fn percentiles(times: &mut [f64]) -> String {
    if times.is_empty() {
        return format!("{:>5} {:20}", 0, "");
    }
    times.sort_by(f64::total_cmp);
    let at = |quantile: f64| times[((quantile * times.len() as f64).ceil() as usize).max(1) - 1];
    format!("{:>5} {:>6.2} {:>6.2} {:>6.2}", times.len(), at(0.5), at(0.99), times[times.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_term_of_its_shape() {
        let terms = terms(&mut fastrand::Rng::with_seed(1));
        assert_eq!(terms.len(), LENGTHS.len() + 5 + 1);
        for (label, term) in &terms {
            let length: usize = label.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(term.chars().count(), length, "{label}");
            assert_eq!(term.contains(' '), label.contains("space"), "{label}");
        }
    }

    #[test]
    fn percentiles_are_taken_from_the_sorted_times() {
        let mut times: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut times), "  100  50.00  99.00 100.00");
        assert_eq!(percentiles(&mut []).len(), 26);
    }
}
