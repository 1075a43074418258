//! The shape every aggregate shares, for code generic over aggregates (a command
//! handler's load / decide / append loop, the audit replay).
//!
//! Each aggregate module also exposes the same operations as free functions
//! (`decide`, `evolve`); this trait only names them.

use crate::events::DomainEvent;

/// A pure decision model: a state folded from past events, and a decision that turns a
/// command into new events or refuses it.
pub trait Aggregate {
    /// The folded state, including "not yet created" (e.g. `Option<State>`).
    type State: Clone;
    /// What callers ask for, in the imperative.
    type Command;
    /// What happened, in the past tense.
    type Event: DomainEvent;
    /// Why a command was refused.
    type Error: std::error::Error + Clone + PartialEq + Eq;

    /// The state of a stream with no events.
    fn initial() -> Self::State;

    /// Decides what a command does to `state`: new events (possibly none) or an error.
    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event. Never fails: events are facts.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a stream's events, oldest first, into its state.
    fn replay<'a, I>(events: I) -> Self::State
    where
        I: IntoIterator<Item = &'a Self::Event>,
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::initial(), Self::evolve)
    }
}
