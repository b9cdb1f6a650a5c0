//! Shoal's benchmarks: each scenario prints a table with a baseline measured in the same
//! run, and appends a JSON record under `bench/results/`. Tests never assert on timings;
//! these figures are read, not checked.

pub mod common;
pub mod failover;
pub mod fanout;
pub mod snapshot;
