//! keyledger HTTP API.
#![forbid(unsafe_code)]
