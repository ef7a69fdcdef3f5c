//! `cargo xtask stress --fault KIND[@SECONDS]`: one fault injected into the running native
//! stack during the replay, its window, and the KOs before, during and after it.
//!
//! The replay counts each request in the second it started, so a request is "during" the fault
//! when it started from one second before the fault to one second after the stack was whole
//! again: a request in flight when the fault struck, or sent just as a service came back, is
//! the fault's.

use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use xshell::Shell;

use crate::runs::hostile;
use crate::stack::Stack;
use crate::stack::postgres::Postgres;
use crate::topology::Topology;
use crate::workspace::unix_now;

/// How long `pause-db` leaves the database stopped.
const PAUSED_FOR: Duration = Duration::from_secs(3);
/// How soon the supervisor must have a killed replica answering again.
const KILLED_BACK_WITHIN: Duration = Duration::from_secs(5);
/// How soon a replica told to stop must answer again: its drain and shutdown grace (at most
/// 8 s by default), then its start.
const STOPPED_BACK_WITHIN: Duration = Duration::from_secs(20);
/// Between one replica answering again and the next one's restart, as a rolling restart waits.
const BETWEEN_RESTARTS: Duration = Duration::from_millis(500);
/// How long `partition-replica` cuts the first replica off from PostgreSQL.
const PARTITIONED_FOR: Duration = Duration::from_secs(10);
/// How soon a replica cut off must be answering 503 at once.
const PARTITION_NOTICED_WITHIN: f64 = 2.0;
/// How long `slow-link` delays the database's link in a full run (shorter in a shorter run,
/// so that it ends inside it), and by how much.
const SLOWED_FOR: Duration = Duration::from_secs(30);
const SLOWED_BY: Duration = Duration::from_millis(2);
/// The p99 the legitimate clients' writes and searches must keep beside a hostile writer.
const LEGITIMATE_WITHIN_MS: f64 = 50.0;
/// The margin around the fault's window, in seconds.
const MARGIN: f64 = 1.0;
/// The middle of the full profile (about 205 s), scaled like it.
const MIDDLE_SECONDS: f64 = 102.0;
/// The length of the full profile, scaled like it.
const RUN_SECONDS: f64 = 2.0 * MIDDLE_SECONDS;

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Kind {
    /// SIGTERM each replica and wait until the stack's supervisor has it healthy again, one
    /// after the other: a rolling deploy.
    RestartReplicas,
    /// SIGKILL the first replica; the supervisor must have it answering within 5 s.
    KillReplica,
    /// A fast shutdown of PostgreSQL, then a start.
    RestartDb,
    /// SIGSTOP every PostgreSQL process for 3 s, then SIGCONT.
    PauseDb,
    /// Another session holds a transaction with a transaction id open and busy from the start
    /// of the run (unless a time is given) to its end.
    OpenTransaction,
    /// With --netns: cut the first replica off from PostgreSQL for 10 s (packets dropped both
    /// ways), then join them again.
    PartitionReplica,
    /// With --netns: hold what PostgreSQL sends 2 ms longer for 30 s, scaled like the run (the
    /// database link's relay).
    SlowLink,
    /// One client stores 49 people, then 500, with the most distinct stack items the contract
    /// allows, all holding one term, while four search for it (`hostile.rs`).
    HostileWriter,
}

/// A fault struck: when, and what it measured of its own requests, if it sent any.
pub struct Struck {
    /// Unix seconds: struck, and whole again.
    pub window: (f64, f64),
    pub measured: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub kind: Kind,
    /// Seconds after the replay starts; by default the middle of the run.
    pub at_seconds: Option<f64>,
}

impl Fault {
    /// `KIND[@SECONDS]`.
    pub fn parse(text: &str) -> Result<Fault> {
        let (name, at) = text.split_once('@').map_or((text, None), |(name, at)| (name, Some(at)));
        let kind = Kind::from_str(name, false).map_err(|_| {
            let names: Vec<String> = Kind::value_variants()
                .iter()
                .map(|kind| Fault { kind: *kind, at_seconds: None }.name())
                .collect();
            anyhow!("unknown fault {name:?}: one of {}", names.join(", "))
        })?;
        let at_seconds = at.map(|at| match at.parse::<f64>() {
            Ok(seconds) if seconds >= 0.0 && seconds.is_finite() => Ok(seconds),
            _ => Err(anyhow!("{at:?} is not a number of seconds")),
        });
        let at_seconds = at_seconds.transpose()?;
        Ok(Fault { kind, at_seconds })
    }

    pub fn name(&self) -> String {
        self.kind.to_possible_value().expect("no kind is skipped").get_name().to_owned()
    }

    /// When to strike, in seconds after the replay starts, for a run at `scale`.
    pub fn delay(&self, scale: f64) -> Duration {
        let default = match self.kind {
            Kind::OpenTransaction => 0.0,
            _ => MIDDLE_SECONDS * scale,
        };
        Duration::from_secs_f64(self.at_seconds.unwrap_or(default))
    }

    /// Strikes the stack, brings it back, and returns when both happened.
    pub fn inject(
        &self,
        sh: &Shell,
        stack: &mut Stack,
        topology: &Topology,
        scale: f64,
    ) -> Result<Struck> {
        let injected = unix_now();
        let mut measured = Value::Null;
        let database = &topology.database;
        match self.kind {
            Kind::RestartReplicas => {
                for (index, (name, _)) in topology.replicas.iter().enumerate() {
                    if index > 0 {
                        sleep(BETWEEN_RESTARTS);
                    }
                    stack.stop_replica(name, Signal::SIGTERM, STOPPED_BACK_WITHIN)?;
                }
            }
            Kind::KillReplica => {
                let name = &topology.replicas[0].0;
                stack.stop_replica(name, Signal::SIGKILL, KILLED_BACK_WITHIN)?
            }
            Kind::RestartDb => stack.restart_database(sh, Signal::SIGINT)?,
            Kind::PauseDb => {
                stack.signal_every(database, Signal::SIGSTOP)?;
                sleep(PAUSED_FOR);
                stack.signal_every(database, Signal::SIGCONT)?;
            }
            Kind::OpenTransaction => {
                let postgres = Postgres::locate(&topology.service(database)?.environment)?;
                // Ending a margin before the replay does, so as to end inside the run.
                let until_the_end = RUN_SECONDS * scale - self.delay(scale).as_secs_f64() - MARGIN;
                postgres.hold_transaction(topology.database_port, until_the_end.max(1.0))?
            }
            Kind::PartitionReplica | Kind::SlowLink => {
                let network = stack.network.as_ref().context("this fault needs --netns")?;
                if self.kind == Kind::PartitionReplica {
                    let replica = &topology.replicas[0].0;
                    network.set_cut(replica, database, true)?;
                    sleep(PARTITIONED_FOR);
                    network.set_cut(replica, database, false)?;
                } else {
                    stack.slow_database_link(SLOWED_BY)?;
                    sleep(SLOWED_FOR.mul_f64(scale.min(1.0)));
                    stack.slow_database_link(Duration::ZERO)?;
                }
            }
            Kind::HostileWriter => {
                let balancer = &topology.load_balancer;
                let address = stack.address(balancer)?;
                let base_url = format!("http://{address}:{}", topology.load_balancer_port);
                measured = hostile::run(&base_url)?;
            }
        }
        Ok(Struck { window: (injected, unix_now()), measured })
    }

    /// The `fault` object of `summary.json`, from the window and the run's KOs per second,
    /// and whether the run met this kind's target; the stack had `replicas` replicas.
    pub fn judge(
        &self,
        struck: &Struck,
        summary: &Value,
        series: &Value,
        replicas: usize,
    ) -> (Value, Vec<String>) {
        let started = summary["started_at_unix_seconds"].as_f64().unwrap_or(0.0);
        let window = struck.window;
        let (injected_at, restored_at) = (window.0 - started, window.1 - started);
        let first = (injected_at - MARGIN).floor().max(0.0) as usize;
        let last = (restored_at + MARGIN).ceil() as usize;
        let kos: Vec<u64> = series["timeline"]["ko_per_second"]
            .as_array()
            .map(|seconds| seconds.iter().map(|ko| ko.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        let sum = |range: std::ops::Range<usize>| -> u64 {
            kos.iter().skip(range.start).take(range.end.saturating_sub(range.start)).sum()
        };
        let (before, during, after) =
            (sum(0..first), sum(first..last + 1), sum(last + 1..kos.len()));
        // The hostile writer's people are stored besides the replay's.
        let hostile_created = struck.measured["posts"]["201"].as_u64().unwrap_or(0);
        let created = summary["created_201"].as_u64().unwrap_or(0) + hostile_created;
        let expected = summary["expected_count"].as_u64().unwrap_or(0) + hostile_created;
        let stored = summary["count_after"]
            .as_u64()
            .map(|after| after.saturating_sub(summary["count_before"].as_u64().unwrap_or(0)));

        let mut problems = Vec::new();
        // The replay counts the people stored when its own last request is answered.
        let ended = summary["duration_seconds"].as_f64().unwrap_or(f64::INFINITY);
        if restored_at > ended {
            problems.push(format!(
                "the fault lasted until {restored_at:.1} s, past the run's end at {ended:.1} s"
            ));
        }
        if before > 0 || after > 0 {
            problems.push(format!("{before} KO before the fault, {after} after it"));
        }
        match stored {
            None => problems.push("no count after the run".to_owned()),
            Some(stored) if stored < created => problems.push(format!(
                "{stored} people stored but {created} acknowledged (201): some were lost"
            )),
            Some(_) => {}
        }
        // A deploy, a paused database, a transaction left open, a slow link and a hostile
        // writer must cost nothing; a killed replica, a restarted database or a replica cut off
        // may fail the requests they held.
        if matches!(
            self.kind,
            Kind::RestartReplicas
                | Kind::PauseDb
                | Kind::OpenTransaction
                | Kind::SlowLink
                | Kind::HostileWriter
        ) {
            if during > 0 {
                problems.push(format!("{during} KO during the fault"));
            }
            if stored != Some(expected) {
                problems.push(format!("count {stored:?} != expected {expected}"));
            }
        }
        // A replica cut off may fail the requests it holds and, until it finds its database
        // gone and answers 503 at once (which nginx sends on), its share of those sent in the
        // first 2 s: never more.
        let partition_bound = (self.kind == Kind::PartitionReplica).then(|| {
            let kinds = series["timeline"]["requests_per_second"].as_object();
            let seconds = first..(injected_at + PARTITION_NOTICED_WITHIN).ceil() as usize;
            let sent: u64 = kinds
                .into_iter()
                .flatten()
                .filter_map(|(_, per_second)| {
                    let per_second = per_second.as_array()?;
                    Some(seconds.clone().filter_map(|s| per_second.get(s)?.as_u64()).sum::<u64>())
                })
                .sum();
            sent / replicas.max(1) as u64
        });
        if let Some(bound) = partition_bound
            && during > bound
        {
            problems.push(format!("{during} KO during the partition, more than {bound}"));
        }
        // A run's p99 mixes the fault's seconds with the rest: each second's p99, inside the
        // window and outside it, tells them apart.
        let p99s: Vec<f64> = series["timeline"]["p99_ms"]
            .as_array()
            .map(|seconds| seconds.iter().map(|p99| p99.as_f64().unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let (inside, outside): (Vec<_>, Vec<_>) =
            p99s.iter().enumerate().partition(|(second, _)| (first..=last).contains(second));
        let median_p99 = |seconds: Vec<(usize, &f64)>| {
            median(seconds.into_iter().map(|(_, p99)| *p99).filter(|p99| *p99 > 0.0).collect())
        };
        if self.kind == Kind::HostileWriter {
            problems.extend(hostile::problems(&struck.measured, summary, LEGITIMATE_WITHIN_MS));
        }
        let fault = json!({
            "kind": self.name(),
            "injected_at_s": round(injected_at),
            "restored_at_s": round(restored_at),
            "ko_before": before,
            "ko_during": during,
            "ko_after": after,
            "ko_bound": partition_bound,
            "median_p99_ms_of_a_second": {
                "during": median_p99(inside),
                "outside": median_p99(outside),
            },
            "created_201": created,
            "stored": stored,
            "expected": expected,
            "measured": struck.measured,
            "pass": problems.is_empty(),
            "problems": problems,
        });
        (fault, problems)
    }
}

/// `None` for no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_times() {
        assert_eq!(
            Fault::parse("kill-replica").unwrap(),
            Fault { kind: Kind::KillReplica, at_seconds: None }
        );
        let fault = Fault::parse("pause-db@25").unwrap();
        assert_eq!(fault.kind, Kind::PauseDb);
        assert_eq!(fault.delay(1.0), Duration::from_secs(25));
        assert_eq!(Fault::parse("restart-db").unwrap().delay(0.2), Duration::from_secs_f64(20.4));
        assert_eq!(Fault::parse("restart-replicas").unwrap().name(), "restart-replicas");
        let open = Fault::parse("open-transaction").unwrap();
        assert_eq!(open.delay(0.2), Duration::ZERO, "from the start of the run");
        for bad in ["reboot", "pause-db@", "pause-db@-1", "kill-replica@soon"] {
            assert!(Fault::parse(bad).is_err(), "{bad} accepted");
        }
    }

    fn run(kos: &[u64], created: u64, before: u64, after: u64, expected: u64) -> (Value, Value) {
        let summary = json!({
            "started_at_unix_seconds": 1000,
            "created_201": created,
            "count_before": before,
            "count_after": after,
            "expected_count": expected,
        });
        let series = json!({"timeline": {"ko_per_second": kos}});
        (summary, series)
    }

    #[test]
    fn counts_kos_by_window_and_applies_each_kinds_target() {
        // Struck at 5.5 s, whole again at 7.2 s: the window is seconds 4 to 9.
        let window = Struck { window: (1005.5, 1007.2), measured: Value::Null };
        let kos = [0, 0, 0, 1, 2, 0, 3, 0, 0, 1, 0, 0];
        let (summary, series) = run(&kos, 10, 100, 111, 11);
        let kill = Fault::parse("kill-replica").unwrap();
        let (fault, problems) = kill.judge(&window, &summary, &series, 2);
        assert_eq!(fault["median_p99_ms_of_a_second"]["during"], Value::Null, "no timeline");
        assert_eq!(fault["ko_before"], 1);
        assert_eq!(fault["ko_during"], 6);
        assert_eq!(fault["ko_after"], 0);
        assert_eq!(fault["injected_at_s"], 5.5);
        assert_eq!(problems, ["1 KO before the fault, 0 after it"]);

        let (mut summary, series) = run(&[0; 11], 10, 100, 110, 10);
        summary["duration_seconds"] = json!(6.0);
        let (_, problems) = kill.judge(&window, &summary, &series, 2);
        assert_eq!(problems, ["the fault lasted until 7.2 s, past the run's end at 6.0 s"]);

        let (summary, series) = run(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 10, 100, 109, 10);
        let (_, problems) = kill.judge(&window, &summary, &series, 2);
        assert_eq!(problems, ["9 people stored but 10 acknowledged (201): some were lost"]);

        let (summary, series) = run(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0], 10, 0, 10, 10);
        let (_, problems) =
            Fault::parse("restart-replicas").unwrap().judge(&window, &summary, &series, 2);
        assert_eq!(problems, ["1 KO during the fault"]);
        let (summary, mut series) = run(&[0; 10], 10, 0, 10, 10);
        series["timeline"]["p99_ms"] =
            json!([1.0, 2.0, 0.0, 3.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 0.0]);
        let (fault, problems) =
            Fault::parse("pause-db").unwrap().judge(&window, &summary, &series, 2);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(fault["pass"], true);
        let p99 = &fault["median_p99_ms_of_a_second"];
        assert_eq!((p99["during"].as_f64(), p99["outside"].as_f64()), (Some(6.5), Some(2.0)));
        let (summary, series) = run(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0], 10, 0, 9, 10);
        let (_, problems) =
            Fault::parse("open-transaction").unwrap().judge(&window, &summary, &series, 2);
        assert_eq!(
            problems,
            [
                "9 people stored but 10 acknowledged (201): some were lost",
                "1 KO during the fault",
                "count Some(9) != expected 10"
            ]
        );

        // Seconds 4 to 7 (a margin, then 2 s) saw 44 requests: 22 each for two replicas.
        let cut = Fault::parse("partition-replica").unwrap();
        let mut series = json!({"timeline": {"ko_per_second": [0, 0, 0, 0, 9, 9, 5, 0, 0, 0]}});
        series["timeline"]["requests_per_second"] = json!({"consulta": [9, 9, 9, 9, 5, 5, 5, 9, 9, 9], "criação": [0, 0, 0, 0, 5, 5, 5, 5]});
        let (summary, _) = run(&[], 10, 0, 10, 10);
        let (fault, problems) = cut.judge(&window, &summary, &series, 2);
        assert_eq!((fault["ko_during"].as_u64(), fault["ko_bound"].as_u64()), (Some(23), Some(22)));
        assert_eq!(problems, ["23 KO during the partition, more than 22"]);
        let (_, problems) = cut.judge(&window, &summary, &series, 1);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
