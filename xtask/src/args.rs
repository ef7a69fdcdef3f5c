//! Parsers of the command-line values several commands take.

use anyhow::{Result, bail};

use crate::topology::MAX_REPLICAS;

pub fn positive(text: &str) -> Result<f64> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => bail!("{text:?} is not a positive number"),
    }
}

pub fn replica_count(text: &str) -> Result<usize> {
    match text.parse::<usize>() {
        Ok(count) if (1..=MAX_REPLICAS).contains(&count) => Ok(count),
        _ => bail!("{text:?} is not a number of replicas from 1 to {MAX_REPLICAS}"),
    }
}
