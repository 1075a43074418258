//! Black-box tests: each starts the real `keyledger` binary on a free port with its own
//! fresh database, and speaks HTTP to it. One test binary; modules per area.

mod helpers;
mod platform;
