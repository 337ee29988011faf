//! Rebuilds: a projection's new version is folded from the start of its
//! topics into a shadow keyspace, beside the live version that readers keep
//! reading and the daemon keeps updating, then promoted key by key.
//!
//! # How the hand-over stays exact
//! - Each projection has a state note ([`state_key`]): its live version and
//!   at most one shadow (a candidate being built, or the previous version
//!   kept for a rollback). Every version's definition text is stored beside
//!   it ([`definition_key`]), so all replicas fold the live version with the
//!   same definition, whatever their own files say.
//! - A shadow is built by a consumer group of its own ([`Shadow::group`])
//!   into keys of its own ([`state::shadow_key`]), with its own checkpoint, and
//!   never applies a partition past the live checkpoint: the live version is
//!   always at or ahead of it.
//! - A promotion marks the state `promoting` and advances the live scope's
//!   generation: from then on every live commit is refused (it was folded
//!   with the old definition), so the live checkpoint stands still. Once the
//!   shadow has caught up to it exactly, each key rotates atomically (the
//!   shadow's value and TTL into the live key, the live one into the
//!   previous version's keyspace), the previous version's checkpoint is set
//!   to the live one, and the state names the new live version. The writers,
//!   refused, read it, load the new definition and fold again.
//! - A rollback is the same promotion the other way: the previous version
//!   kept being built after the promotion, so it is exact too. Collecting
//!   removes the previous keyspace, after which there is nothing to roll
//!   back to.
//!
//! # Layout
//! - [`state`]: the state note and the keys of a rebuild.
//! - [`catalog`]: which definition is live, read and written in the cache.
//! - [`shadow`]: the cache seen through a shadow keyspace.
//! - [`runner`]: each replica's share of the shadow builds.
//! - [`promote`]: promotion, rollback and collection.
//! - [`progress`]: how far a shadow is from the live version.

pub mod catalog;
pub mod progress;
pub mod promote;
pub mod runner;
pub mod shadow;
pub mod state;

pub use catalog::Catalog;
pub use state::{Role, Shadow, State, definition_key, state_key};
