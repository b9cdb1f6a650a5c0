//! Shoal's benchmarks: each scenario prints a table with a baseline measured in the same
//! run, appends a JSON record under `bench/results/` and draws PNG plots under
//! `bench/results/plots/`. Tests never assert on timings; these figures are read, not
//! checked.

pub mod activation;
pub mod agent;
pub mod common;
pub mod detection;
pub mod failover;
pub mod fanout;
pub mod plot;
pub mod snapshot;
pub mod throughput;
