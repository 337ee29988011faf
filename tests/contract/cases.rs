//! The contract cases for the Methods and Expiry tables of the spec, each an
//! `async fn(&Fixture)` that runs unchanged against every adapter.

use projectionist::cache::{CacheError, Connection, Expiry, RemainingTtl, WriteOp};
use serde_json::json;

use crate::{Adapter, DEFAULT_TTL_SECS, Fixture, add_secs, default_ttl, pause, set_ttl_secs, ttl};

pub use crate::patterns::*;

/// The remaining life of `key` in seconds; panics when it has none.
async fn seconds_left(fixture: &Fixture, key: &str) -> f64 {
    match fixture.cache.get_ttl(key).await.unwrap() {
        Some(RemainingTtl::Seconds(secs)) => secs,
        other => panic!("{key} should expire, get_ttl says {other:?}"),
    }
}

fn assert_between(value: f64, low: f64, high: f64) {
    assert!(
        low <= value && value <= high,
        "{value} is not in [{low}, {high}]"
    );
}

pub async fn ping_answers(fixture: &Fixture) {
    assert!(fixture.cache.ping().await);
}

pub async fn get_connection_hands_out_the_adapters_handle(fixture: &Fixture) {
    let connection = fixture.cache.get_connection();
    match (fixture.adapter, &connection) {
        (Adapter::Memory, Connection::Memory(_)) | (Adapter::Redis, Connection::Redis(_)) => {}
        (adapter, connection) => panic!("{adapter:?} handed out {connection:?}"),
    }
}

pub async fn keys_are_name_and_identifier(fixture: &Fixture) {
    let cache = &fixture.cache;
    let order = fixture.projection("order_summary", "ord-123", json!({"total": 42}));
    cache.add(&order, None).await.unwrap();
    let read = cache
        .get(&fixture.key("order_summary", "ord-123"))
        .await
        .unwrap();
    assert_eq!(read, Some(order.clone()));
    assert_eq!(order.key(), fixture.key("order_summary", "ord-123"));

    // Only the first `:::` separates: the identifier keeps its own.
    let nested = fixture.projection("order_summary", "a:::b", json!({"x": 1}));
    cache.add(&nested, None).await.unwrap();
    let read = cache
        .get(&fixture.key("order_summary", "a:::b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.id(), "a:::b");
    assert_eq!(read.name(), nested.name());
}

pub async fn get_of_a_missing_key_is_none(fixture: &Fixture) {
    let key = fixture.key("order_summary", "nobody");
    assert_eq!(fixture.cache.get(&key).await.unwrap(), None);
    assert_eq!(fixture.cache.get_ttl(&key).await.unwrap(), None);
}

pub async fn re_add_replaces_the_whole_value(fixture: &Fixture) {
    let cache = &fixture.cache;
    let first = fixture.projection("user", "u1", json!({"name": "Ada", "email": "a@x"}));
    let second = fixture.projection("user", "u1", json!({"name": "Ada L."}));
    cache.add(&first, None).await.unwrap();
    cache.add(&second, None).await.unwrap();
    let read = cache.get(&second.key()).await.unwrap().unwrap();
    assert_eq!(
        read.value(),
        &json!({"name": "Ada L."}),
        "no field survives a re-add"
    );
    assert_eq!(cache.count(&fixture.pattern("user:::*")).await.unwrap(), 1);
}

pub async fn reads_never_alter_what_is_stored(fixture: &Fixture) {
    let cache = &fixture.cache;
    let stored = fixture.projection("user", "u1", json!({"tags": ["a"], "n": 1}));
    cache.add(&stored, None).await.unwrap();
    let mut read = cache
        .get(&stored.key())
        .await
        .unwrap()
        .unwrap()
        .into_value();
    read["n"] = json!(999);
    read["tags"].as_array_mut().unwrap().push(json!("b"));
    let mut listed = cache
        .get_all(&fixture.pattern("user:::*"), 0, 10)
        .await
        .unwrap();
    listed.clear();
    assert_eq!(cache.get(&stored.key()).await.unwrap(), Some(stored));
}

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

pub async fn get_all_pages_in_bytewise_key_order(fixture: &Fixture) {
    let cache = &fixture.cache;
    let ids = [
        "b", "a", "é", "Z", "ä", "日本", "a-1", "~", "A", "a:::x", "0", "a b", "z",
    ];
    for (n, id) in ids.iter().enumerate() {
        cache
            .add(&fixture.projection("item", id, json!({ "n": n })), None)
            .await
            .unwrap();
    }
    // Neighbours that must not show up.
    cache
        .add(&fixture.projection("items", "a", json!({})), None)
        .await
        .unwrap();
    cache
        .add(&fixture.projection("iteM", "a", json!({})), None)
        .await
        .unwrap();

    let mut expected: Vec<String> = ids.iter().map(|id| fixture.key("item", id)).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let pattern = fixture.pattern("item:::*");
    for size in [1, 3, 5, ids.len(), 100] {
        let mut seen = Vec::new();
        loop {
            let page = cache.get_all(&pattern, seen.len(), size).await.unwrap();
            assert!(page.len() <= size);
            if page.is_empty() {
                break;
            }
            seen.extend(page.iter().map(|projection| projection.key()));
        }
        assert_eq!(seen, expected, "page size {size}");
    }
    assert!(
        cache
            .get_all(&pattern, ids.len(), 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        cache
            .get_all(&pattern, ids.len() + 10, 3)
            .await
            .unwrap()
            .is_empty()
    );
    let first = cache.get_all(&pattern, 0, 1).await.unwrap();
    assert_eq!(
        first[0].value(),
        &json!({"n": 10}),
        "values come with their keys"
    );
}

pub async fn get_all_rejects_a_zero_page_size(fixture: &Fixture) {
    let cache = &fixture.cache;
    cache
        .add(&fixture.projection("p", "1", json!({})), None)
        .await
        .unwrap();
    let error = cache
        .get_all(&fixture.pattern("*"), 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(error, CacheError::InvalidArgument(_)), "{error}");
}

pub async fn count_counts_distinct_live_matches(fixture: &Fixture) {
    let cache = &fixture.cache;
    let entry = fixture.projection("p", "1", json!({}));
    cache.add(&entry, None).await.unwrap();
    cache.add(&entry, None).await.unwrap();
    cache
        .add(&fixture.projection("p", "2", json!({})), None)
        .await
        .unwrap();
    cache
        .add(&fixture.projection("q", "1", json!({})), None)
        .await
        .unwrap();
    cache
        .add(&fixture.projection("p", "brief", json!({})), Some(ttl(0.3)))
        .await
        .unwrap();
    assert_eq!(cache.count(&fixture.pattern("p:::*")).await.unwrap(), 3);
    pause(0.6).await;
    assert_eq!(cache.count(&fixture.pattern("p:::*")).await.unwrap(), 2);
    assert_eq!(cache.count(&fixture.pattern("*")).await.unwrap(), 3);
}

pub async fn pattern_ops_on_no_match_are_silent(fixture: &Fixture) {
    let cache = &fixture.cache;
    cache
        .add(&fixture.projection("p", "1", json!({})), None)
        .await
        .unwrap();
    let nothing = fixture.pattern("nothing:::*");
    assert_eq!(cache.count(&nothing).await.unwrap(), 0);
    assert!(cache.get_all(&nothing, 0, 25).await.unwrap().is_empty());
    assert_eq!(cache.remove_by_key_pattern(&nothing).await.unwrap(), 0);
    assert_eq!(cache.count(&fixture.pattern("*")).await.unwrap(), 1);
}

pub async fn remove_and_remove_by_key_are_silent_when_absent(fixture: &Fixture) {
    let cache = &fixture.cache;
    let entry = fixture.projection("p", "1", json!({}));
    cache.remove(&entry).await.unwrap();
    cache.remove_by_key(&entry.key()).await.unwrap();
    cache.add(&entry, None).await.unwrap();
    cache.remove(&entry).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), None);
    cache.add(&entry, None).await.unwrap();
    cache.remove_by_key(&entry.key()).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), None);
}

pub async fn remove_by_key_pattern_removes_only_matches(fixture: &Fixture) {
    let cache = &fixture.cache;
    for id in ["1", "2", "3"] {
        cache
            .add(&fixture.projection("doomed", id, json!({})), None)
            .await
            .unwrap();
        cache
            .add(&fixture.projection("kept", id, json!({})), None)
            .await
            .unwrap();
    }
    let removed = cache
        .remove_by_key_pattern(&fixture.pattern("doomed:::*"))
        .await
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(
        cache.count(&fixture.pattern("doomed:::*")).await.unwrap(),
        0
    );
    assert_eq!(cache.count(&fixture.pattern("kept:::*")).await.unwrap(), 3);
}

pub async fn get_many_keeps_order_and_reports_missing(fixture: &Fixture) {
    let cache = &fixture.cache;
    assert!(cache.get_many(&[]).await.unwrap().is_empty());
    let one = fixture.projection("p", "1", json!({"v": 1}));
    let two = fixture.projection("p", "2", json!({"v": 2}));
    cache.add(&one, None).await.unwrap();
    cache.add(&two, None).await.unwrap();
    let keys = [two.key(), fixture.key("p", "missing"), one.key(), two.key()];
    let found = cache.get_many(&keys).await.unwrap();
    assert_eq!(found, vec![Some(two.clone()), None, Some(one), Some(two)]);
}

pub async fn apply_writes_a_batch_in_order_with_its_own_ttls(fixture: &Fixture) {
    let cache = &fixture.cache;
    cache.apply(&[]).await.unwrap();
    let p = |id: &str| fixture.projection("p", id, json!({ "id": id }));
    cache.add(&p("doomed"), None).await.unwrap();
    let upsert = |id: &str, expiry| WriteOp::Upsert {
        projection: p(id),
        expiry,
    };
    let delete = |id: &str| WriteOp::Delete {
        key: fixture.key("p", id),
    };
    let batch = [
        upsert("short", Expiry::After(ttl(10.0))),
        upsert("forever", Expiry::Never),
        upsert("default", Expiry::CacheDefault),
        delete("doomed"),
        upsert("written-then-deleted", Expiry::Never),
        delete("written-then-deleted"),
        delete("deleted-then-written"),
        upsert("deleted-then-written", Expiry::After(ttl(20.0))),
        delete("never-existed"),
    ];
    cache.apply(&batch).await.unwrap();

    let key = |id: &str| fixture.key("p", id);
    assert_between(seconds_left(fixture, &key("short")).await, 9.0, 10.0);
    assert_eq!(
        cache.get_ttl(&key("forever")).await.unwrap(),
        Some(RemainingTtl::Never)
    );
    let default_secs = DEFAULT_TTL_SECS as f64;
    assert_between(
        seconds_left(fixture, &key("default")).await,
        default_secs - 1.0,
        default_secs,
    );
    assert_between(
        seconds_left(fixture, &key("deleted-then-written")).await,
        19.0,
        20.0,
    );
    for gone in ["doomed", "written-then-deleted", "never-existed"] {
        assert_eq!(cache.get(&key(gone)).await.unwrap(), None, "{gone}");
    }
    assert_eq!(cache.get(&key("short")).await.unwrap(), Some(p("short")));
    assert_eq!(cache.count(&fixture.pattern("p:::*")).await.unwrap(), 4);
}

/// More keys than one `SCAN` page or one delete batch holds.
pub async fn many_keys_page_count_and_delete(fixture: &Fixture) {
    let cache = &fixture.cache;
    let total = 2500;
    let batch: Vec<WriteOp> = (0..total)
        .map(|n| WriteOp::Upsert {
            projection: fixture.projection("bulk", &format!("{n:05}"), json!({ "n": n })),
            expiry: Expiry::CacheDefault,
        })
        .collect();
    cache.apply(&batch).await.unwrap();
    let pattern = fixture.pattern("bulk:::*");
    assert_eq!(cache.count(&pattern).await.unwrap(), total);
    let mut seen = Vec::new();
    loop {
        let page = cache.get_all(&pattern, seen.len(), 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(
            page.into_iter()
                .map(|projection| projection.id().to_owned()),
        );
    }
    let expected: Vec<String> = (0..total).map(|n| format!("{n:05}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(cache.remove_by_key_pattern(&pattern).await.unwrap(), total);
    assert_eq!(cache.count(&pattern).await.unwrap(), 0);
}

pub async fn flush_all_empties_the_cache_and_keeps_it_usable(fixture: &Fixture) {
    let cache = &fixture.cache;
    for name in ["a", "b", "c"] {
        for id in ["1", "2"] {
            cache
                .add(&fixture.projection(name, id, json!({})), None)
                .await
                .unwrap();
        }
    }
    cache.flush_all().await.unwrap();
    assert_eq!(cache.count("*").await.unwrap(), 0);
    assert!(cache.get_all("*", 0, 10).await.unwrap().is_empty());
    cache.flush_all().await.unwrap();

    let again = fixture.projection("a", "1", json!({"back": true}));
    cache.add(&again, None).await.unwrap();
    assert_eq!(cache.get(&again.key()).await.unwrap(), Some(again.clone()));
    let default_secs = DEFAULT_TTL_SECS as f64;
    assert_between(
        seconds_left(fixture, &again.key()).await,
        default_secs - 1.0,
        default_secs,
    );
}
