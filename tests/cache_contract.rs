//! The cache contract (`shared/spec/cache-port.md`), written once against the
//! `Cache` trait and run against every adapter.
//!
//! Each case in `contract/` (`cases.rs`, `expiry.rs`, `patterns.rs`) is an `async fn(&Fixture)`; the
//! `contract_suite!` macro turns it into one `#[tokio::test]` per adapter:
//! `memory::<case>` (with tokio's clock paused, so TTL waits cost nothing) and
//! `redis::<case>` (against a `redis-server` the test starts on a free port, or
//! `REDIS_URL` with a key prefix of its own) and `cluster::<case>` (against a
//! local Redis Cluster of three primaries with a replica each, shared by the
//! process's tests, each within a key prefix of its own). Checks that only make sense for one
//! adapter live in `contract/memory_only.rs` and `contract/redis_only.rs`.

mod support;

#[path = "contract/cases.rs"]
mod cases;
#[path = "contract/checkpoints.rs"]
mod checkpoints;
#[path = "contract/cluster_marks.rs"]
mod cluster_marks;
#[path = "contract/cluster_only.rs"]
mod cluster_only;
#[path = "contract/expiry.rs"]
mod expiry;
#[path = "contract/memory_only.rs"]
mod memory_only;
#[path = "contract/patterns.rs"]
mod patterns;
#[path = "contract/redis_only.rs"]
mod redis_only;

use std::time::Duration;

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{
    Cache, CacheError, Projection, RemainingTtl, Ttl, cluster as cluster_cache,
    redis as redis_cache,
};
use serde_json::Value;
use support::cluster::RedisCluster;
use support::redis::{RedisServer, shared_url, unique_prefix};

/// The default TTL of every cache under test, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    Memory,
    Redis,
    Cluster,
}

/// A cache under test plus the key prefix the test must stay within.
pub struct Fixture {
    pub cache: Box<dyn Cache>,
    pub adapter: Adapter,
    /// Prepended to every projection name (and so to every key and pattern), so
    /// that tests sharing a `REDIS_URL` server never see each other's keys.
    /// Empty for the memory cache and for a private server.
    pub prefix: String,
    /// Keeps a private server alive as long as the fixture.
    _server: Option<RedisServer>,
    /// Keeps a private cluster alive as long as the fixture.
    _cluster: Option<RedisCluster>,
}

pub fn default_ttl() -> Ttl {
    Ttl::from_secs(DEFAULT_TTL_SECS).unwrap()
}

impl Fixture {
    pub fn memory() -> Self {
        Fixture {
            cache: Box::new(MemoryCache::new(default_ttl())),
            adapter: Adapter::Memory,
            prefix: String::new(),
            _server: None,
            _cluster: None,
        }
    }

    /// `REDIS_URL` with a fresh prefix when set, else a private server.
    pub async fn redis_shared() -> Self {
        match shared_url() {
            Some(url) => Fixture {
                cache: Box::new(redis_cache::connect(&url, default_ttl()).await.unwrap()),
                adapter: Adapter::Redis,
                prefix: unique_prefix(),
                _server: None,
                _cluster: None,
            },
            None => Self::redis_private().await,
        }
    }

    /// A cache on a server of its own, for cases that touch the whole database.
    pub async fn redis_private() -> Self {
        let server = RedisServer::start();
        let cache = redis_cache::connect(&server.url(0), default_ttl())
            .await
            .unwrap();
        Fixture {
            cache: Box::new(cache),
            adapter: Adapter::Redis,
            prefix: String::new(),
            _server: Some(server),
            _cluster: None,
        }
    }

    /// The process's shared cluster, with a fresh prefix.
    pub async fn cluster_shared() -> Self {
        let nodes = support::cluster::shared().urls();
        Fixture {
            cache: Box::new(cluster_cache::connect(&nodes, default_ttl()).await.unwrap()),
            adapter: Adapter::Cluster,
            prefix: unique_prefix(),
            _server: None,
            _cluster: None,
        }
    }

    /// A cluster of its own, for cases that touch every key.
    pub async fn cluster_private() -> Self {
        let cluster = RedisCluster::start();
        let cache = cluster_cache::connect(&cluster.urls(), default_ttl())
            .await
            .unwrap();
        Fixture {
            cache: Box::new(cache),
            adapter: Adapter::Cluster,
            prefix: String::new(),
            _server: None,
            _cluster: Some(cluster),
        }
    }

    /// The projection `{prefix}{name}:::{id}`.
    pub fn projection(&self, name: &str, id: &str, value: Value) -> Projection {
        Projection::new(format!("{}{name}", self.prefix), id, value).unwrap()
    }

    pub fn key(&self, name: &str, id: &str) -> String {
        format!("{}{name}:::{id}", self.prefix)
    }

    pub fn pattern(&self, pattern: &str) -> String {
        format!("{}{pattern}", self.prefix)
    }

    /// Remove what the test wrote on a shared server.
    pub async fn cleanup(self) {
        if !self.prefix.is_empty() {
            let mine = format!("{}*", glob_escape(&self.prefix));
            self.cache.remove_by_key_pattern(&mine).await.unwrap();
        }
    }
}

/// `text` as a glob that matches only itself.
pub fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Write with a TTL given in seconds, the way a caller holding a raw number does:
/// the TTL is checked first, and an invalid one stops the write.
pub async fn add_secs(
    cache: &dyn Cache,
    projection: &Projection,
    secs: f64,
) -> Result<(), CacheError> {
    let ttl = Ttl::from_secs_f64(secs)?;
    cache.add(projection, Some(ttl)).await
}

pub async fn set_ttl_secs(cache: &dyn Cache, key: &str, secs: f64) -> Result<bool, CacheError> {
    let ttl = Ttl::from_secs_f64(secs)?;
    cache.set_ttl(key, ttl).await
}

/// Let `secs` pass: instantly for the memory cache (its tests run on a paused
/// clock that jumps ahead), for real against Redis.
pub async fn pause(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

pub fn ttl(secs: f64) -> Ttl {
    Ttl::from_secs_f64(secs).unwrap()
}

/// The remaining life of `key` in seconds; panics when it has none.
pub async fn seconds_left(fixture: &Fixture, key: &str) -> f64 {
    match fixture.cache.get_ttl(key).await.unwrap() {
        Some(RemainingTtl::Seconds(secs)) => secs,
        other => panic!("{key} should expire, get_ttl says {other:?}"),
    }
}

pub fn assert_between(value: f64, low: f64, high: f64) {
    assert!(
        low <= value && value <= high,
        "{value} is not in [{low}, {high}]"
    );
}

/// One `#[tokio::test]` per (case, adapter). `shared` cases may run on a shared
/// `REDIS_URL` server inside their prefix; `private` ones touch the whole
/// database (`flush_all`) and always get a server of their own.
macro_rules! contract_suite {
    (shared: [$($shared:ident),* $(,)?], private: [$($private:ident),* $(,)?] $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $shared() {
                    super::cases::$shared(&super::Fixture::memory()).await;
                }
            )*
            $(
                #[tokio::test(start_paused = true)]
                async fn $private() {
                    super::cases::$private(&super::Fixture::memory()).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test]
                async fn $shared() {
                    let fixture = super::Fixture::redis_shared().await;
                    super::cases::$shared(&fixture).await;
                    fixture.cleanup().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $private() {
                    let fixture = super::Fixture::redis_private().await;
                    super::cases::$private(&fixture).await;
                }
            )*
        }

        mod cluster {
            $(
                #[tokio::test]
                async fn $shared() {
                    let fixture = super::Fixture::cluster_shared().await;
                    super::cases::$shared(&fixture).await;
                    fixture.cleanup().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $private() {
                    let fixture = super::Fixture::cluster_private().await;
                    super::cases::$private(&fixture).await;
                }
            )*
        }
    };
}

contract_suite! {
    shared: [
        ping_answers,
        get_connection_hands_out_the_adapters_handle,
        keys_are_name_and_identifier,
        get_of_a_missing_key_is_none,
        re_add_replaces_the_whole_value,
        reads_never_alter_what_is_stored,
        add_uses_the_default_or_the_given_ttl,
        an_expired_entry_is_absent_for_every_method,
        re_adding_restarts_the_ttl,
        set_ttl_never_resurrects_an_expired_entry,
        set_ttl_on_a_missing_key_creates_nothing,
        set_ttl_sets_the_remaining_life,
        an_invalid_ttl_leaves_the_cache_unchanged,
        get_ttl_says_never_for_entries_without_expiry,
        get_all_pages_in_bytewise_key_order,
        get_all_rejects_a_zero_page_size,
        count_counts_distinct_live_matches,
        pattern_ops_on_no_match_are_silent,
        remove_and_remove_by_key_are_silent_when_absent,
        remove_by_key_pattern_removes_only_matches,
        get_many_keeps_order_and_reports_missing,
        apply_writes_a_batch_in_order_with_its_own_ttls,
        apply_if_unchanged_writes_only_over_what_was_read,
        many_keys_page_count_and_delete,
        pattern_dot_is_literal_and_case_matters,
        pattern_question_mark_is_one_byte,
        pattern_classes_ranges_and_negation,
        pattern_escapes,
        claims_hand_out_ever_larger_epochs,
        a_commit_writes_and_advances_together,
        a_commit_repeated_after_it_landed_is_refused_as_moved_to_its_end,
        an_older_epoch_is_fenced_and_writes_nothing,
        a_commit_in_a_scope_never_claimed_is_unclaimed,
        a_changed_read_key_or_a_wrong_start_refuses_the_whole_commit,
        applied_reads_the_checkpoint_a_commit_advanced,
        pauses_are_kept_per_group_and_setting_one_twice_is_harmless,
    ],
    private: [
        flush_all_empties_the_cache_and_keeps_it_usable,
    ],
}
