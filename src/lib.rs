//! Projectionist builds read models: it folds domain events from Kafka into
//! denormalized projections and writes them through a cache port.
//!
//! # Layout
//! - [`cache`]: the cache port (trait, key format, TTLs, glob) and its adapters.
//! - [`config`]: configuration read -> validated (no IO) -> [`config::Settings`].
//! - [`event`]: domain events and their decoding from Kafka records.
//! - [`projection`]: projection definitions (TOML) and identifier templates.
//! - [`projector`]: the projector trait, its registry and the shipped examples.
pub mod cache;
pub mod config;
pub mod event;
pub mod projection;
pub mod projector;
pub mod health;
pub mod metrics;
pub mod pipeline;
pub mod source;
