//! A given / when / then harness for aggregate tests.

use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// The state after some past events.
pub(crate) struct Given<A: Aggregate> {
    state: A::State,
}

/// Folds `events` into a state.
pub(crate) fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given {
        state: A::replay(&events),
    }
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` against the state.
    pub(crate) fn when(self, command: A::Command) -> Then<A> {
        Then {
            result: A::decide(&self.state, command),
        }
    }
}

/// The outcome of a decision.
pub(crate) struct Then<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq + Debug,
    A::Error: Debug,
{
    /// Asserts the events decided.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        assert_eq!(self.result, Ok(expected));
    }

    /// Asserts that nothing happens (an idempotent or no-op command).
    #[track_caller]
    pub(crate) fn then_nothing(self) {
        assert_eq!(self.result, Ok(vec![]));
    }

    /// Asserts the refusal.
    #[track_caller]
    pub(crate) fn then_error(self, expected: A::Error) {
        assert_eq!(self.result, Err(expected));
    }

    /// The raw outcome, for assertions the helpers above cannot express.
    pub(crate) fn outcome(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
