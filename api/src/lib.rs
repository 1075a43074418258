//! keyledger's HTTP API and wiring: routes for commands and queries, configuration, and
//! the `keyledger` binary's commands. This is the one crate that picks concrete adapters
//! (SQLite or Postgres stores) from configuration and plugs them into the ports.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod wiring;
