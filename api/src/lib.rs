//! keyledger's HTTP API and wiring: routes for commands and queries, the auth layer,
//! configuration, and the `keyledger` binary's commands. This is the one crate that picks
//! concrete adapters (SQLite or Postgres stores) from configuration and plugs them into
//! the ports.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod console;
pub mod http;
pub mod idempotency;
pub mod openapi;
pub mod routes;
pub mod usage;
pub mod wiring;

/// The global allocator of the `keyledger` binary (and its black-box copy): mimalloc.
/// Under load glibc malloc/free took about 30% of the server's CPU; the binaries install
/// this with `#[global_allocator]` in `main.rs`.
pub use mimalloc::MiMalloc as Allocator;
