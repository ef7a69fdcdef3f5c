//! Runs against a stack and what they report: the stress test and its faults, the capacity
//! search, instructions per request, and hostile HTTP.

pub mod capacity;
pub mod fault;
pub mod hostile;
pub mod http_fuzz;
pub mod instructions;
pub mod stress;
