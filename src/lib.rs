//! Projectionist builds read models: it folds domain events from Kafka into
//! denormalized projections and writes them through a cache port.
//!
//! # Layout
//! - [`cache`]: the cache port (trait, key format, TTLs, glob) and its adapters.
//! - [`event`]: domain events and their decoding from Kafka records.
//! - [`projector`]: the projector trait, its registry and the shipped examples.
pub mod cache;
pub mod event;
pub mod projector;
