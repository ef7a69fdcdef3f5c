//! rinha: the Rinha de Backend 2023 Q3 people API over PostgreSQL.
//!
//! Layers: `http` (the transport) calls `people` (the application) alone, which keeps its
//! people with `writer` (group commit) and `store` (PostgreSQL) and searches them in `mirror`
//! (over `index`); `startup` wires them. `domain`, `config` and `metrics` serve every layer.

pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod index;
mod memory;
mod metrics;
mod mirror;
mod people;
pub mod startup;
pub mod store;
mod writer;
