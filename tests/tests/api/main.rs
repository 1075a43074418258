//! Black-box tests: each starts the real `keyledger` binary on a free port with its own
//! fresh database, and speaks HTTP to it. One test binary; modules per area.
// Test support: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod bounds;
mod cluster;
mod console;
mod contract;
mod crash;
mod data;
mod data_reads;
mod data_resources;
mod flood;
mod gateway;
mod helpers;
mod hotpath;
mod keys;
mod operator;
mod platform;
mod seed_flows;
mod tamper;
mod usage;
