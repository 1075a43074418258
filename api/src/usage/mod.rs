//! Usage: what the auth layer records about every call that identified a key (step 6 of
//! the auth order, [`crate::auth`]). [`recorder`] is the group-commit writer of
//! `ApiCallRecorded` events; the HTTP reads of usage are in `routes/usage.rs`, the read
//! model in `projections/src/usage.rs`.

pub mod recorder;

pub use recorder::{Durability, RecorderConfig, RecorderTask, UsageRecorder};
