//! The contest's simulation (`gatling/simulations/rinha/RinhaBackendSimulation.scala`): its three
//! scenarios, their injection profiles, and what each virtual user does.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Response, Target, UserConnection};
use crate::schedule::{self, InjectionStep};
use crate::statistics::{RequestName, RequestRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    Creation,
    ValidSearch,
    InvalidSearch,
}

impl Scenario {
    pub const ALL: [Self; 3] = [Self::Creation, Self::ValidSearch, Self::InvalidSearch];

    pub fn name(self) -> &'static str {
        match self {
            Self::Creation => "Criação E Talvez Consulta de Pessoas",
            Self::ValidSearch => "Busca Válida de Pessoas",
            Self::InvalidSearch => "Busca Inválida de Pessoas",
        }
    }

    pub fn injection(self) -> Vec<InjectionStep> {
        match self {
            Self::Creation => vec![
                InjectionStep::constant(2, 10),
                InjectionStep::randomized(5, 15),
                InjectionStep::ramp(6, 600, 180),
            ],
            Self::ValidSearch => vec![
                InjectionStep::constant(2, 25),
                InjectionStep::ramp(6, 100, 180),
            ],
            Self::InvalidSearch => vec![
                InjectionStep::constant(2, 25),
                InjectionStep::ramp(6, 40, 180),
            ],
        }
    }
}

/// The seed for the randomized step when none is given. Gatling seeds it from the clock, so its count
/// varies from run to run around the mean of 75; this seed draws exactly 75 arrivals, making the full
/// profile send 20 + 75 + 54,540 = 54,635 creation sessions, the expected figure.
pub const DEFAULT_SEED: i64 = 12;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at: Duration,
    pub scenario: Scenario,
}

/// Every user of every scenario in start order, with all durations multiplied by `scale` and all
/// rates by `rate`.
pub fn schedule(scale: f64, rate: f64, seed: i64) -> Vec<Arrival> {
    let mut arrivals: Vec<Arrival> = Scenario::ALL
        .iter()
        .flat_map(|&scenario| {
            let steps: Vec<InjectionStep> = scenario
                .injection()
                .iter()
                .map(|step| step.scaled(scale).rate_times(rate))
                .collect();
            schedule::arrivals(&steps, seed)
                .into_iter()
                .map(move |at| Arrival { at, scenario })
        })
        .collect();
    arrivals.sort_by_key(|arrival| (arrival.at, arrival.scenario));
    arrivals
}

/// What one virtual user will do, fixed when it is injected: its feeder record and its random pause.
#[derive(Debug, Clone)]
pub enum UserPlan {
    Creation { payload: Bytes, pause: Duration },
    ValidSearch { path: String },
    InvalidSearch,
}

/// Gatling's default check when a request declares none: status 200-209 or 304.
fn default_status_ok(status: u16) -> bool {
    (200..=209).contains(&status) || status == 304
}

/// What one user's session produced.
#[derive(Debug, Default)]
pub struct UserOutcome {
    pub requests: Vec<RequestRecord>,
    pub created: bool,
}

/// Runs one user's session on its own connection.
pub async fn run_user(plan: UserPlan, target: &Target, run_started: Instant) -> UserOutcome {
    let mut connection = UserConnection::new(target);
    let mut outcome = UserOutcome::default();
    match plan {
        UserPlan::Creation { payload, pause } => {
            let started = Instant::now();
            let response = connection
                .post_json(&target.path("/pessoas"), payload)
                .await;
            let mut location = None;
            let failure = match &response {
                Ok(Response {
                    status: 201,
                    location: Some(header),
                    ..
                }) => {
                    outcome.created = true;
                    location = Some(header.clone());
                    None
                }
                Ok(Response {
                    status: 201,
                    location: None,
                    ..
                }) => {
                    outcome.created = true;
                    Some("header(Location).find.exists, found nothing".to_owned())
                }
                Ok(Response {
                    status: 422 | 400, ..
                }) => None,
                Ok(Response { status, .. }) => Some(format!(
                    "status.find.in(201, 422, 400), but actually found {status}"
                )),
                Err(failure) => Some(failure.to_string()),
            };
            outcome
                .requests
                .push(record(RequestName::Creation, run_started, started, failure));

            tokio::time::sleep(pause).await;

            if let Some(location) = location {
                let started = Instant::now();
                let failure = match target.location_path(&location) {
                    Some(path) => default_check(connection.get(&path).await),
                    None => Some(format!("Location {location} is not under the base URL")),
                };
                outcome
                    .requests
                    .push(record(RequestName::Lookup, run_started, started, failure));
            }
        }
        UserPlan::ValidSearch { path } => {
            let started = Instant::now();
            let failure = default_check(connection.get(&path).await);
            outcome.requests.push(record(
                RequestName::ValidSearch,
                run_started,
                started,
                failure,
            ));
        }
        UserPlan::InvalidSearch => {
            let started = Instant::now();
            let failure = match connection.get(&target.path("/pessoas")).await {
                Ok(Response { status: 400, .. }) => None,
                Ok(Response { status, .. }) => {
                    Some(format!("status.find.is(400), but actually found {status}"))
                }
                Err(failure) => Some(failure.to_string()),
            };
            outcome.requests.push(record(
                RequestName::InvalidSearch,
                run_started,
                started,
                failure,
            ));
        }
    }
    outcome
}

fn default_check(response: Result<Response, crate::client::Failure>) -> Option<String> {
    match response {
        Ok(Response { status, .. }) if default_status_ok(status) => None,
        Ok(Response { status, .. }) => Some(format!(
            "status.find.in(200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 304), but actually found {status}"
        )),
        Err(failure) => Some(failure.to_string()),
    }
}

fn record(
    name: RequestName,
    run_started: Instant,
    started: Instant,
    failure: Option<String>,
) -> RequestRecord {
    RequestRecord {
        name,
        started: started - run_started,
        elapsed: started.elapsed(),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(arrivals: &[Arrival], scenario: Scenario) -> usize {
        arrivals
            .iter()
            .filter(|arrival| arrival.scenario == scenario)
            .count()
    }

    #[test]
    fn the_full_profile_injects_what_gatling_injects() {
        let arrivals = schedule(1.0, 1.0, DEFAULT_SEED);
        assert_eq!(sessions(&arrivals, Scenario::Creation), 54_635);
        assert_eq!(sessions(&arrivals, Scenario::ValidSearch), 50 + 9_540);
        assert_eq!(sessions(&arrivals, Scenario::InvalidSearch), 50 + 4_140);
        assert!(arrivals.windows(2).all(|pair| pair[0].at <= pair[1].at));
        let last = arrivals.last().unwrap().at;
        assert!(
            last < Duration::from_secs(205) && last >= Duration::from_secs(204),
            "{last:?}"
        );
    }

    #[test]
    fn the_warm_up_is_two_users_a_second_then_the_randomized_step_follows() {
        let arrivals = schedule(1.0, 1.0, DEFAULT_SEED);
        let creation: Vec<Duration> = arrivals
            .iter()
            .filter(|arrival| arrival.scenario == Scenario::Creation)
            .map(|arrival| arrival.at)
            .collect();
        assert_eq!(
            &creation[..4],
            &[0, 500, 1000, 1500].map(Duration::from_millis)
        );
        assert_eq!(
            creation
                .iter()
                .filter(|at| at.as_secs() >= 10 && at.as_secs() < 25)
                .count(),
            75
        );
        // The ramp's first second gets (600 - 6) / 360 + 6 = 7.65 users: 7, the 0.65 carried over.
        assert_eq!(creation.iter().filter(|at| at.as_secs() == 25).count(), 7);
    }

    #[test]
    fn a_scaled_profile_keeps_the_shape() {
        let arrivals = schedule(0.2, 1.0, DEFAULT_SEED);
        // 2/s for 2 s, about 5/s for 3 s, then 6 -> 600/s over 36 s: (6 + 600) / 2 * 36 = 10,908.
        let creation = sessions(&arrivals, Scenario::Creation);
        assert!(
            (4 + 10_908..4 + 10_908 + 40).contains(&creation),
            "{creation}"
        );
        assert_eq!(sessions(&arrivals, Scenario::ValidSearch), 10 + 1_908);
        assert_eq!(sessions(&arrivals, Scenario::InvalidSearch), 10 + 828);
    }

    /// Whether the last user starts before second `end`.
    fn ends_before(arrivals: &[Arrival], end: u64) -> bool {
        arrivals
            .last()
            .is_some_and(|last| last.at < Duration::from_secs(end))
    }

    #[test]
    fn a_rate_factor_multiplies_every_scenario_and_keeps_the_profiles_length() {
        let arrivals = schedule(1.0, 3.0, DEFAULT_SEED);
        assert_eq!(sessions(&arrivals, Scenario::ValidSearch), 3 * (50 + 9_540));
        assert_eq!(
            sessions(&arrivals, Scenario::InvalidSearch),
            3 * (50 + 4_140)
        );
        // The randomized step draws its own number around 3 x 75.
        let creation = sessions(&arrivals, Scenario::Creation);
        let randomized = creation - 3 * (20 + 54_540);
        assert!((150..300).contains(&randomized), "{creation}");
        assert!(ends_before(&arrivals, 205) && !ends_before(&arrivals, 204));
    }

    #[test]
    fn scale_and_rate_compose() {
        let arrivals = schedule(0.2, 3.0, DEFAULT_SEED);
        // 2 s + 3 s + 36 s for creation, 5 s + 36 s for the searches, at three times the rates.
        assert_eq!(sessions(&arrivals, Scenario::ValidSearch), 3 * (10 + 1_908));
        assert_eq!(sessions(&arrivals, Scenario::InvalidSearch), 3 * (10 + 828));
        let creation = sessions(&arrivals, Scenario::Creation);
        assert!(
            (3 * (4 + 10_908)..3 * (4 + 10_908 + 40)).contains(&creation),
            "{creation}"
        );
        assert!(ends_before(&arrivals, 41) && !ends_before(&arrivals, 40));
        let half = schedule(0.2, 0.5, DEFAULT_SEED);
        assert_eq!(sessions(&half, Scenario::ValidSearch), (10 + 1_908) / 2);
    }

    #[test]
    fn default_checks_accept_2xx_up_to_209_and_304() {
        assert!(default_status_ok(200) && default_status_ok(209) && default_status_ok(304));
        assert!(!default_status_ok(210) && !default_status_ok(404) && !default_status_ok(500));
    }
}
