//! keyledger write side.
#![forbid(unsafe_code)]
