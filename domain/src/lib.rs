//! keyledger's domain: the pure types and rules of an event-sourced API key service.
//!
//! Nothing in this crate performs I/O (the one exception is reading the OS CSPRNG when a
//! token is generated). Ports (`EventStore`, ...) are traits here; adapters live in
//! `commands` and `api`, and `api` wires them together.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregate;
pub mod apikey;
mod base62;
pub mod bus;
pub mod chain;
pub mod events;
pub mod ids;
pub mod organization;
pub mod plan;
pub mod policy;
pub mod scope;
pub mod store;
#[cfg(test)]
mod testing;
pub mod token;
pub mod values;

pub use aggregate::Aggregate;
pub use apikey::{ApiKey, KeyStatus};
pub use bus::{RevocationBus, RevocationNotice};
pub use events::{
    ApiKeyEvent, DecodeError, DomainEvent, OrganizationEvent, SecretHash, UsageEvent,
};
pub use ids::{KeyId, OrgId, StreamId};
pub use organization::Organization;
pub use plan::Plan;
pub use scope::{Scope, Scopes};
pub use token::{Environment, ParsedToken, Token, TokenError};
pub use values::{AllowedIps, Cidr, KeyName, OrgName, RateLimit};
