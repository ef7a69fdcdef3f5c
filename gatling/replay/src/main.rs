//! A Rust replay of the contest's Gatling simulation.

fn main() {}
