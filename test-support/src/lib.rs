//! Test support for keyledger's test suites (a dev-dependency of `commands`, `projections`
//! and the black-box `tests`):
//!
//! - [`TestDb`]: a fresh database per test, on SQLite (a temp file) or Postgres (a database
//!   of its own on `KEYLEDGER_TEST_POSTGRES_URL`, dropped at the end). [`TestDb::new`]
//!   copies a template that was migrated once with every crate's migrations
//!   (`CREATE DATABASE .. TEMPLATE ..` on Postgres, as crates.io's `test_db` does);
//!   [`TestDb::empty`] is for the tests of migrations and first starts.
//! - [`backend_tests!`]: back ends as cases of one test.
//! - [`sql`]: raw SQL on a test database, the same on both back ends (tampering, counting
//!   rows, dumping every row).
//!
//! Postgres tests are skipped, with a line on stderr, when `KEYLEDGER_TEST_POSTGRES_URL`
//! is unset. Set but unreachable, they fail: CI sets it, and a Postgres that is down must
//! not pass as skipped.
#![forbid(unsafe_code)]
// Test support: a set-up step that fails must fail the test, loudly and at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod db;
pub mod sql;

pub use db::{Backend, TestDb, postgres_url};

/// One `#[tokio::test]` per case and back end: `sqlite::<case>` and `postgres::<case>`.
///
/// Each case is an async fn of the invoking module taking a [`Backend`]. After
/// `with FIXTURE;` it takes what the async fn `FIXTURE(Backend)` returns instead (a path
/// from the invoking module, e.g. `common::env`). `each #[..];` replaces the default
/// `#[tokio::test]` of every case (e.g. with a multi-threaded runtime); attributes written
/// before one case replace it for that case. The Postgres case returns at once, with a
/// note, when `KEYLEDGER_TEST_POSTGRES_URL` is unset; set but unreachable, it fails.
///
/// ```ignore
/// async fn it_should_answer_health(backend: Backend) { /* .. */ }
/// async fn it_should_drain(backend: Backend) { /* .. */ }
///
/// test_support::backend_tests!(
///     it_should_answer_health,
///     #[tokio::test(flavor = "multi_thread")]
///     it_should_drain,
/// );
/// ```
///
/// Invoke it once per module (it declares the modules `sqlite` and `postgres`).
#[macro_export]
macro_rules! backend_tests {
    (@case $backend:ident [] [$(#[$attr:meta])+] $case:ident) => {
        $(#[$attr])+
        async fn $case() {
            if $crate::Backend::$backend.skipped() {
                return;
            }
            super::$case($crate::Backend::$backend).await;
        }
    };
    (@case $backend:ident [$($fixture:ident)::+] [$(#[$attr:meta])+] $case:ident) => {
        $(#[$attr])+
        async fn $case() {
            if $crate::Backend::$backend.skipped() {
                return;
            }
            super::$case(super::$($fixture)::+($crate::Backend::$backend).await).await;
        }
    };
    (@test $backend:ident $fixture:tt $each:tt [] $case:ident) => {
        $crate::backend_tests!(@case $backend $fixture $each $case);
    };
    (@test $backend:ident $fixture:tt $each:tt [$(#[$attr:meta])+] $case:ident) => {
        $crate::backend_tests!(@case $backend $fixture [$(#[$attr])+] $case);
    };
    (@modules $fixture:tt $each:tt $($(#[$attr:meta])* $case:ident),* $(,)?) => {
        mod sqlite {
            $( $crate::backend_tests!(@test Sqlite $fixture $each [$(#[$attr])*] $case); )*
        }
        mod postgres {
            $( $crate::backend_tests!(@test Postgres $fixture $each [$(#[$attr])*] $case); )*
        }
    };
    (@parse $fixture:tt $each:tt with $($path:ident)::+; $($rest:tt)*) => {
        $crate::backend_tests!(@parse [$($path)::+] $each $($rest)*);
    };
    (@parse $fixture:tt $each:tt each $(#[$attr:meta])+; $($rest:tt)*) => {
        $crate::backend_tests!(@parse $fixture [$(#[$attr])+] $($rest)*);
    };
    (@parse $fixture:tt $each:tt $($rest:tt)*) => {
        $crate::backend_tests!(@modules $fixture $each $($rest)*);
    };
    ($($rest:tt)*) => {
        $crate::backend_tests!(@parse [] [#[::tokio::test]] $($rest)*);
    };
}
