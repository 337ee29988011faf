//! The contract cases for the Methods table of the spec, each an
//! `async fn(&Fixture)` that runs unchanged against every adapter.

use projectionist::cache::{CacheError, Connection, Expiry, RemainingTtl, WriteOp};
use serde_json::json;

use crate::{Adapter, DEFAULT_TTL_SECS, Fixture, assert_between, pause, seconds_left, ttl};

pub use crate::checkpoints::*;
pub use crate::expiry::*;
pub use crate::patterns::*;

pub async fn ping_answers(fixture: &Fixture) {
    assert!(fixture.cache.ping().await);
}

pub async fn get_connection_hands_out_the_adapters_handle(fixture: &Fixture) {
    let connection = fixture.cache.get_connection();
    match (fixture.adapter, &connection) {
        (Adapter::Memory, Connection::Memory(_))
        | (Adapter::Redis, Connection::Redis(_))
        | (Adapter::Cluster, Connection::Cluster(_)) => {}
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

pub async fn apply_if_unchanged_writes_only_over_what_was_read(fixture: &Fixture) {
    let cache = &fixture.cache;
    let p = |id: &str, n: i64| fixture.projection("p", id, json!({ "n": n }));
    let upsert = |id: &str, n: i64| WriteOp::Upsert {
        projection: p(id, n),
        expiry: Expiry::Never,
    };
    cache.add(&p("a", 1), None).await.unwrap();
    let keys = [fixture.key("p", "a"), fixture.key("p", "fresh")];
    let read = cache.get_many_versioned(&keys).await.unwrap();
    assert_eq!(read[0].0, Some(p("a", 1)));
    assert!(read[0].1.is_some(), "a present key has a version");
    assert_eq!(
        read[1],
        (None, None),
        "an absent key: no projection, no version"
    );
    let expected: Vec<_> = keys
        .iter()
        .cloned()
        .zip(read.iter().map(|(_, v)| v.clone()))
        .collect();

    // Nothing changed since the read: the batch lands.
    let batch = [upsert("a", 2), upsert("fresh", 1)];
    assert!(cache.apply_if_unchanged(&batch, &expected).await.unwrap());
    assert_eq!(cache.get(&keys[0]).await.unwrap(), Some(p("a", 2)));

    // The same versions are stale now, for the changed key and for the key that
    // was absent and exists now: nothing of the batch is written.
    let stale_a = [upsert("a", 3)];
    assert!(
        !cache
            .apply_if_unchanged(&stale_a, &expected[..1])
            .await
            .unwrap()
    );
    let stale_fresh = [upsert("fresh", 9), upsert("other", 9)];
    assert!(
        !cache
            .apply_if_unchanged(&stale_fresh, &expected[1..])
            .await
            .unwrap()
    );
    assert_eq!(cache.get(&keys[0]).await.unwrap(), Some(p("a", 2)));
    assert_eq!(cache.get(&keys[1]).await.unwrap(), Some(p("fresh", 1)));
    assert_eq!(cache.get(&fixture.key("p", "other")).await.unwrap(), None);

    // Read again, and a delete lands.
    let again = cache.get_many_versioned(&keys[..1]).await.unwrap();
    let delete = [WriteOp::Delete {
        key: keys[0].clone(),
    }];
    assert!(
        cache
            .apply_if_unchanged(&delete, &[(keys[0].clone(), again[0].1.clone())])
            .await
            .unwrap()
    );
    assert_eq!(cache.get(&keys[0]).await.unwrap(), None);
}
