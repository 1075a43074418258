//! Versions and positions: ours (versions from 1, one position per event) and
//! KurrentDB's (revisions from 0, `$all` log positions); see the module docs.

use ::kurrentdb::{CurrentRevision, Position, ResolvedEvent, StreamPosition, StreamState};
use domain::store::{ExpectedVersion, StoreError};

/// Our expectation as KurrentDB's (versions from 1, revisions from 0).
pub(super) fn expected_to_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => StreamState::NoStream,
        ExpectedVersion::Exact(n) => StreamState::StreamRevision(n - 1),
    }
}

/// The version of a stream whose last event has `revision`.
pub(super) fn revision_to_version(revision: u64) -> u64 {
    revision.saturating_add(1)
}

/// The revision of the event with `version` (`None` for 0: no event).
pub(super) fn version_to_revision(version: u64) -> Option<u64> {
    version.checked_sub(1)
}

/// Our stream version from a wrong-expected-version answer.
pub(super) fn actual_version(current: CurrentRevision) -> u64 {
    match current {
        CurrentRevision::Current(revision) => revision_to_version(revision),
        CurrentRevision::NoStream => 0,
    }
}

/// Where a read or subscription of `$all` starts for events after our position `after`.
pub(super) fn from_position(after: u64) -> StreamPosition<Position> {
    if after == 0 {
        StreamPosition::Start
    } else {
        StreamPosition::Position(Position {
            commit: after,
            prepare: after,
        })
    }
}

/// Our position of an event at `$all` position `position`.
pub(super) fn our_position(position: Position) -> Result<u64, StoreError> {
    if position.commit == u64::MAX || position.prepare == u64::MAX {
        return Err(StoreError::Unavailable(
            "KurrentDB returned an event without its $all position (EventStoreDB before 22.6 \
             does so on stream reads); keyledger needs EventStoreDB 22.6 or later, or KurrentDB"
                .into(),
        ));
    }
    if position.commit != position.prepare {
        return Err(StoreError::Corrupt {
            position: position.commit,
            reason: format!(
                "event at {position} was written in an explicit transaction (commit and prepare \
                 positions differ); keyledger cannot give it a position of its own"
            ),
        });
    }
    if position.commit == 0 {
        return Err(StoreError::Corrupt {
            position: 0,
            reason: "event at log position 0".into(),
        });
    }
    Ok(position.commit)
}

/// A write's position, unless the server sent none (an idempotent replay).
pub(super) fn valid_position(position: Position) -> Option<u64> {
    our_position(position).ok()
}

/// The event itself (a link's target is not resolved: links are system events here).
pub(super) fn original(event: &ResolvedEvent) -> Option<&::kurrentdb::RecordedEvent> {
    event.event.as_ref().or(event.link.as_ref())
}

/// The stream name as keyledger knows it, or `None` for events that are not this
/// store's: system events (`$`-types or `$`-streams) and, with a prefix, other streams.
pub(super) fn accept<'a>(stream: &'a str, event_type: &str, prefix: &str) -> Option<&'a str> {
    if stream.starts_with('$') || event_type.starts_with('$') {
        return None;
    }
    stream.strip_prefix(prefix).filter(|s| !s.is_empty())
}
