//! Projectors: pure, synchronous folds `(current projection, event) -> outcome`.
//!
//! A projector does no IO and reads no clock: everything it may use is in its
//! arguments, so it is tested as a table and replays give the same result. The
//! [`Registry`] is the one place projectors are registered by name.

pub mod declarative;
pub mod examples;
mod registry;

use chrono::SecondsFormat;
use serde_json::Value;

use crate::event::Event;

pub use registry::Registry;

/// What a projector decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Store this JSON object as the new projection.
    Upsert(Value),
    /// Remove the projection.
    Delete,
    /// Leave the projection as it is.
    Skip,
}

/// Why a projector refused an event. Always permanent: the same event would fail
/// the same way again, so it is dead-lettered and passed over.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ProjectorError(pub String);

impl ProjectorError {
    pub fn new(message: impl Into<String>) -> Self {
        ProjectorError(message.into())
    }
}

/// The event time as projections store it: RFC 3339 in UTC with `Z`. One
/// spelling for every projector, so a declarative projection and its Rust twin
/// write the same text.
pub(crate) fn time_text(event: &Event) -> Option<String> {
    event
        .time
        .map(|time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// What [`Projector::apply`] did to the state it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folding {
    /// The state is the new projection (`None`: removed).
    Applied,
    /// The state is as it was.
    Skipped,
}

/// A registered fold over events (see the module docs).
pub trait Projector: Send + Sync {
    /// `current` is the projection as it stands (none when absent or expired).
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError>;

    /// The same fold on a state owned by the caller, changed in place: a
    /// projector that can works on it without copying it per event. After
    /// an error `state` may hold anything: the caller restores it (the
    /// pipeline keeps each key's loaded state for that). The default asks
    /// [`Projector::project`].
    fn apply(&self, state: &mut Option<Value>, event: &Event) -> Result<Folding, ProjectorError> {
        Ok(self.project(state.as_ref(), event)?.fold_into(state))
    }
}

impl Outcome {
    /// Make `state` what this outcome says, as [`Projector::apply`] would.
    pub fn fold_into(self, state: &mut Option<Value>) -> Folding {
        match self {
            Outcome::Upsert(value) => *state = Some(value),
            Outcome::Delete => *state = None,
            Outcome::Skip => return Folding::Skipped,
        }
        Folding::Applied
    }
}

/// Plain functions are projectors too.
impl<F> Projector for F
where
    F: Fn(Option<&Value>, &Event) -> Result<Outcome, ProjectorError> + Send + Sync,
{
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        self(current, event)
    }
}
