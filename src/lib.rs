//! rinha: the Rinha de Backend 2023 Q3 people API over PostgreSQL.

pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod index;
pub mod memory;
pub mod metrics;
pub mod mirror;
pub mod probe;
pub mod routes;
pub mod startup;
pub mod store;
pub mod writer;
