//! The contract cases for TTLs and expiry (the spec's Expiry table, `set_ttl`,
//! `get_ttl`), each an `async fn(&Fixture)` that runs against every adapter.

use projectionist::cache::{CacheError, Expiry, RemainingTtl, WriteOp};
use serde_json::json;

use crate::{
    DEFAULT_TTL_SECS, Fixture, add_secs, assert_between, default_ttl, pause, seconds_left,
    set_ttl_secs, ttl,
};

pub async fn add_uses_the_default_or_the_given_ttl(fixture: &Fixture) {
    let cache = &fixture.cache;
    assert_eq!(cache.default_ttl(), default_ttl());
    let by_default = fixture.projection("p", "default", json!({}));
    cache.add(&by_default, None).await.unwrap();
    let default_secs = DEFAULT_TTL_SECS as f64;
    assert_between(
        seconds_left(fixture, &by_default.key()).await,
        default_secs - 1.0,
        default_secs,
    );

    // Millisecond precision, in seconds on every adapter.
    let given = fixture.projection("p", "given", json!({}));
    cache.add(&given, Some(ttl(2.5))).await.unwrap();
    assert_between(seconds_left(fixture, &given.key()).await, 2.4, 2.5);
}

pub async fn an_expired_entry_is_absent_for_every_method(fixture: &Fixture) {
    let cache = &fixture.cache;
    let brief = fixture.projection("p", "brief", json!({"v": 1}));
    let key = brief.key();
    let pattern = fixture.pattern("p:::*");
    cache.add(&brief, Some(ttl(0.3))).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    pause(0.6).await;

    assert_eq!(cache.get(&key).await.unwrap(), None);
    assert_eq!(
        cache.get_many(std::slice::from_ref(&key)).await.unwrap(),
        vec![None]
    );
    assert!(cache.get_all(&pattern, 0, 10).await.unwrap().is_empty());
    assert_eq!(cache.count(&pattern).await.unwrap(), 0);
    assert_eq!(cache.get_ttl(&key).await.unwrap(), None);
    assert!(!cache.set_ttl(&key, ttl(60.0)).await.unwrap());
    cache.remove_by_key(&key).await.unwrap();
    assert_eq!(cache.remove_by_key_pattern(&pattern).await.unwrap(), 0);
    assert_eq!(cache.get(&key).await.unwrap(), None);
}

pub async fn re_adding_restarts_the_ttl(fixture: &Fixture) {
    let cache = &fixture.cache;
    let entry = fixture.projection("p", "renewed", json!({"v": 1}));
    cache.add(&entry, Some(ttl(1.0))).await.unwrap();
    pause(0.6).await;
    let renewed = fixture.projection("p", "renewed", json!({"v": 2}));
    cache.add(&renewed, Some(ttl(1.0))).await.unwrap();
    assert_between(seconds_left(fixture, &entry.key()).await, 0.8, 1.0);
    pause(0.6).await;
    // 1.2 s after the first add: alive only because the re-add restarted the clock.
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(renewed));
    pause(0.7).await;
    assert_eq!(cache.get(&entry.key()).await.unwrap(), None);
}

pub async fn set_ttl_never_resurrects_an_expired_entry(fixture: &Fixture) {
    let cache = &fixture.cache;
    let brief = fixture.projection("p", "gone", json!({}));
    cache.add(&brief, Some(ttl(0.3))).await.unwrap();
    pause(0.6).await;
    assert!(!cache.set_ttl(&brief.key(), ttl(60.0)).await.unwrap());
    assert_eq!(cache.get(&brief.key()).await.unwrap(), None);
    assert_eq!(cache.get_ttl(&brief.key()).await.unwrap(), None);
    assert_eq!(cache.count(&fixture.pattern("p:::*")).await.unwrap(), 0);
}

pub async fn set_ttl_on_a_missing_key_creates_nothing(fixture: &Fixture) {
    let cache = &fixture.cache;
    let key = fixture.key("p", "never-written");
    assert!(!cache.set_ttl(&key, ttl(60.0)).await.unwrap());
    assert_eq!(cache.get(&key).await.unwrap(), None);
    assert_eq!(cache.get_ttl(&key).await.unwrap(), None);
    assert_eq!(cache.count(&fixture.pattern("*")).await.unwrap(), 0);
}

pub async fn set_ttl_sets_the_remaining_life(fixture: &Fixture) {
    let cache = &fixture.cache;
    let entry = fixture.projection("p", "e", json!({"v": 1}));
    cache.add(&entry, None).await.unwrap();
    assert!(cache.set_ttl(&entry.key(), ttl(5.0)).await.unwrap());
    assert_between(seconds_left(fixture, &entry.key()).await, 4.9, 5.0);
    // Lengthening works as well as shortening.
    assert!(cache.set_ttl(&entry.key(), ttl(1000.0)).await.unwrap());
    assert_between(seconds_left(fixture, &entry.key()).await, 999.0, 1000.0);
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(entry.clone()));

    // An entry without expiry gets one.
    let forever = fixture.projection("p", "forever", json!({}));
    let upsert = WriteOp::Upsert {
        projection: forever.clone(),
        expiry: Expiry::Never,
    };
    cache.apply(&[upsert]).await.unwrap();
    assert!(cache.set_ttl(&forever.key(), ttl(0.3)).await.unwrap());
    pause(0.6).await;
    assert_eq!(cache.get(&forever.key()).await.unwrap(), None);
}

pub async fn an_invalid_ttl_leaves_the_cache_unchanged(fixture: &Fixture) {
    let cache = &fixture.cache;
    let original = fixture.projection("p", "kept", json!({"v": "original"}));
    cache.add(&original, Some(ttl(100.0))).await.unwrap();
    let replacement = fixture.projection("p", "kept", json!({"v": "replacement"}));
    let absent = fixture.projection("p", "absent", json!({}));
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = add_secs(cache.as_ref(), &replacement, bad)
            .await
            .unwrap_err();
        assert!(matches!(error, CacheError::Ttl(_)), "{bad}: {error}");
        assert!(add_secs(cache.as_ref(), &absent, bad).await.is_err());
        // Even for an absent key the TTL is checked first.
        let error = set_ttl_secs(cache.as_ref(), &absent.key(), bad)
            .await
            .unwrap_err();
        assert!(!error.is_transient(), "{bad}: {error}");
        assert!(
            set_ttl_secs(cache.as_ref(), &original.key(), bad)
                .await
                .is_err()
        );
    }
    assert_eq!(
        cache.get(&original.key()).await.unwrap(),
        Some(original.clone())
    );
    assert_between(seconds_left(fixture, &original.key()).await, 99.0, 100.0);
    assert_eq!(cache.get(&absent.key()).await.unwrap(), None);
    assert_eq!(cache.count(&fixture.pattern("p:::*")).await.unwrap(), 1);
}

pub async fn get_ttl_says_never_for_entries_without_expiry(fixture: &Fixture) {
    let cache = &fixture.cache;
    let entry = fixture.projection("p", "forever", json!({"v": 1}));
    let never = || WriteOp::Upsert {
        projection: entry.clone(),
        expiry: Expiry::Never,
    };
    cache.apply(&[never()]).await.unwrap();
    assert_eq!(
        cache.get_ttl(&entry.key()).await.unwrap(),
        Some(RemainingTtl::Never)
    );
    cache.add(&entry, Some(ttl(30.0))).await.unwrap();
    assert_between(seconds_left(fixture, &entry.key()).await, 29.0, 30.0);
    // Writing it again without expiry clears the old TTL.
    cache.apply(&[never()]).await.unwrap();
    assert_eq!(
        cache.get_ttl(&entry.key()).await.unwrap(),
        Some(RemainingTtl::Never)
    );
}
