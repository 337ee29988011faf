//! Projectionist builds read models: it folds domain events from Kafka into
//! denormalized projections and writes them through a cache port.
//!
//! # Layout
//! - [`cache`]: the cache port (trait, key format, TTLs, glob) and its adapters,
//!   one module each: [`cache::memory`], [`cache::redis`] (with its URI and wire helpers),
//!   [`cache::cluster`] (Redis Cluster: hash slots, per-slot marks, lost-write replays).
//! - [`config`]: configuration read -> validated (no IO) -> [`config::Settings`].
//! - [`event`]: domain events and their decoding from Kafka records.
//! - [`json`]: JSON read from bytes with UTF-8 checked once (events, stored
//!   projections).
//! - [`projector`]: the pure projector trait, its registry, the Rust shop
//!   examples, and [`projector::declarative`] (TOML handlers with jq).
//! - [`projection`]: projection definitions (TOML) and identifier templates.
//! - [`pipeline`]: batch processing: route, load, fold, write, checkpoint.
//! - [`source`]: the ports the pipeline reads from and commits to, and
//!   [`source::kafka`], their Kafka adapter (consumer thread, dead letters).
//! - [`rebuild`]: projection versions: shadow builds beside the live
//!   version, promotion and rollback key by key, the live definitions kept
//!   in the cache.
//! - [`letters`]: dead letters taken up again: replayed exactly once after a
//!   fix, or purged (a checkpoint of their own beside the data).
//! - [`metrics`]: every Prometheus metric, on the program's own registry.
//! - [`health`]: liveness (heartbeat) and readiness state.
//! - [`status`]: the progress board (applied positions against the end of each
//!   log, pauses) and the states derived from it.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/projections/{name}/{id}`
//!   (which can wait for a position: read your own writes).
//! - [`admin`]: the operator's API (status, pause, resume, dead letters;
//!   bearer token for mutations) on a port of its own, and the CLI over it.
//! - [`app`]: wiring and the one shutdown path.
//! - [`dev`]: `projectionist dev`, the pipeline on an in-process mock Kafka.
//! - [`fixtures`]: event files (JSON lines of Kafka records).
//! - [`offline`]: the pipeline without Kafka: `projectionist test` (golden
//!   fixtures) and `projectionist replay` (backfill from a file).
//! - [`cli`]: the command line over all of the above.

pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dev;
pub mod event;
pub mod fixtures;
pub mod health;
pub mod http;
pub mod json;
pub mod letters;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod projection;
pub mod projector;
pub mod rebuild;
pub mod source;
pub mod status;
