//! The HTTP shell around the routes: the router ([`router::app`]), every layer in one
//! place and in order ([`middleware`]), bounds on what a client can make the server keep
//! ([`bounds`]), request metrics ([`metrics`]), the one error type and its problem+json
//! ([`error`]), and our own extractors ([`extract`]).

pub mod bounds;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod router;
