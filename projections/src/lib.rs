//! keyledger read side.
#![forbid(unsafe_code)]
