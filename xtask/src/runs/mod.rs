//! Runs against a stack and what they report: the stress test and its faults, the capacity
//! search, instructions per request, hostile HTTP and the latency of single searches.

pub mod capacity;
pub mod fault;
pub mod hostile;
pub mod http_fuzz;
pub mod instructions;
pub mod search_probe;
pub mod stress;
