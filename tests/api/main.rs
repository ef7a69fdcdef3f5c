//! The integration tests, one binary: each module one concern, all of them over one throwaway
//! PostgreSQL cluster (see `support::postgres`), each test in a database of its own.

mod connections;
mod contract;
mod isolation;
mod lifecycle;
mod nginx;
mod observability;
mod partition;
mod replicas;
mod routing;
mod support;
mod validation_agreement;
