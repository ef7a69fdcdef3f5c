//! A Rust replay of the contest's Gatling stress test (`gatling/simulations/rinha/RinhaBackendSimulation.scala`)
//! for machines without Gatling: the same open injection profiles computed the way Gatling computes them,
//! the same feeders, requests, pauses and checks, one connection per virtual user, and Gatling-style
//! results.

pub mod assertion;
pub mod cli;
pub mod client;
pub mod compare;
pub mod gatling;
pub mod junit;
pub mod metrics;
pub mod payloads;
pub mod printer;
pub mod report;
pub mod rng;
pub mod run;
pub mod rusage;
pub mod schedule;
pub mod simulation;
pub mod statistics;
pub mod summary;
pub mod validation;
