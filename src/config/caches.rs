//! `[caches.<name>]` tables, exactly as the seed spells them: `provider`, `URI`, `TTL`;
//! and `nodes`, the seed nodes of a Redis Cluster.

use std::collections::BTreeMap;

use super::raw::{RawCache, RawScalar};
use crate::cache::Ttl;
use crate::cache::cluster::{DEFAULT_REPLAY_WINDOW, validate_nodes};
use crate::cache::redis::validate_uri;

/// The TTL of a cache that names none, in seconds (the seed's default).
pub const DEFAULT_TTL_SECS: u64 = 300;

/// The providers `provider` may name.
pub const PROVIDERS: [&str; 3] = ["memory", "redis", "redis_cluster"];

#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    Memory,
    Redis {
        uri: String,
    },
    /// A Redis Cluster reached through any of its `nodes`, folding `rewind`
    /// offsets below the checkpoint again on every claim.
    RedisCluster {
        nodes: Vec<String>,
        rewind: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub provider: Provider,
    pub ttl: Ttl,
}

impl CacheSettings {
    pub fn memory_default() -> CacheSettings {
        CacheSettings {
            provider: Provider::Memory,
            ttl: default_ttl(),
        }
    }
}

fn default_ttl() -> Ttl {
    Ttl::from_secs(DEFAULT_TTL_SECS).expect("300 s is a valid TTL")
}

/// Validate every cache, pushing one message per mistake onto `errors`.
pub fn validate_caches(
    raw: BTreeMap<String, RawCache>,
    errors: &mut Vec<String>,
) -> BTreeMap<String, CacheSettings> {
    if raw.is_empty() {
        return BTreeMap::from([("default".to_owned(), CacheSettings::memory_default())]);
    }
    if !raw.contains_key("default") {
        errors.push(format!(
            "caches: a [caches.default] table is required when caches are configured (found: {})",
            raw.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut caches = BTreeMap::new();
    for (name, cache) in raw {
        if let Some(settings) = validate_cache(&name, cache, errors) {
            caches.insert(name, settings);
        }
    }
    caches
}

fn validate_cache(name: &str, raw: RawCache, errors: &mut Vec<String>) -> Option<CacheSettings> {
    let ttl = match raw.ttl.or(raw.ttl_seed) {
        None => Some(default_ttl()),
        Some(value) => {
            let ttl = value.to_ttl();
            if ttl.is_none() {
                errors.push(format!(
                    "caches.{name}.TTL = {value} is not a positive number of seconds"
                ));
            }
            ttl
        }
    };
    let uri = raw.uri.or(raw.uri_seed).map(|value| value.to_text());
    let nodes = raw.nodes.as_ref().map(|nodes| nodes.to_list());
    let provider_name = raw.provider.as_ref().map(RawScalar::to_text);
    for (key, given) in [("nodes", nodes.is_some()), ("rewind", raw.rewind.is_some())] {
        if given && provider_name.as_deref() != Some("redis_cluster") {
            errors.push(format!(
                "caches.{name}.{key} is only for provider = \"redis_cluster\""
            ));
        }
    }
    let rewind = match &raw.rewind {
        None => Some(DEFAULT_REPLAY_WINDOW),
        Some(value) => {
            let offsets = match value {
                RawScalar::Int(offsets) => u64::try_from(*offsets).ok(),
                RawScalar::Text(text) => text.trim().parse().ok(),
                _ => None,
            };
            if offsets.is_none() {
                errors.push(format!(
                    "caches.{name}.rewind = {value} is not a whole number of offsets (0 or more)"
                ));
            }
            offsets
        }
    };
    let provider = match provider_name.as_deref() {
        None | Some("memory") => Some(Provider::Memory),
        Some("redis") => match uri {
            None => {
                errors.push(format!(
                    "caches.{name}.URI is required when provider = \"redis\" (e.g. \"redis://localhost:6379/0\")"
                ));
                None
            }
            Some(uri) => match validate_uri(&uri) {
                Ok(()) => Some(Provider::Redis { uri }),
                Err(reason) => {
                    errors.push(format!("caches.{name}.URI is not a Redis URI: {reason}"));
                    None
                }
            },
        },
        Some("redis_cluster") => match (nodes, uri) {
            (_, Some(_)) => {
                errors.push(format!(
                    "caches.{name}.URI is not used by provider = \"redis_cluster\"; name the seed nodes in nodes"
                ));
                None
            }
            (None, None) => {
                errors.push(format!(
                    "caches.{name}.nodes is required when provider = \"redis_cluster\" (e.g. [\"redis://10.0.0.1:6379\"])"
                ));
                None
            }
            (Some(nodes), None) => match validate_nodes(&nodes) {
                Ok(()) => rewind.map(|rewind| Provider::RedisCluster { nodes, rewind }),
                Err(reason) => {
                    errors.push(format!("caches.{name}.nodes: {reason}"));
                    None
                }
            },
        },
        Some(other) => {
            errors.push(format!(
                "caches.{name}.provider = {other:?} is not a cache provider (valid: {})",
                PROVIDERS.join(", ")
            ));
            None
        }
    };
    // Each `None` above was reported as it was found.
    Some(CacheSettings {
        provider: provider?,
        ttl: ttl?,
    })
}
