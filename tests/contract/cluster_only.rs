//! What only the Redis Cluster adapter must show: keys spread over every
//! primary and still seen by pattern operations, slots computed as Redis
//! computes them, per-slot marks that make a slot which already landed a
//! batch skip it, a primary killed (its replica promoted) and a slot migrated
//! while the cache keeps working.

use std::collections::BTreeSet;

use projectionist::cache::cluster::slots::slot_of;
use projectionist::cache::cluster::{ClusterCache, connect, mark_key};
use projectionist::cache::{
    Advance, Cache, Commit, CommitOutcome, Expiry, Partition, Projection, Version, WriteOp,
};
use redis::cluster_async::ClusterConnection;
use serde_json::json;

use crate::default_ttl;
use crate::support::cluster::{RedisCluster, shared};
use crate::support::redis::unique_prefix;

async fn cache_on(cluster: &RedisCluster) -> ClusterCache {
    connect(&cluster.urls(), default_ttl()).await.unwrap()
}

fn raw(cache: &ClusterCache) -> ClusterConnection {
    match cache.get_connection() {
        projectionist::cache::Connection::Cluster(connection) => connection,
        other => panic!("a cluster cache handed out {other:?}"),
    }
}

fn upsert(name: &str, id: &str, n: i64) -> WriteOp {
    WriteOp::Upsert {
        projection: Projection::new(name, id, json!({ "n": n })).unwrap(),
        expiry: Expiry::CacheDefault,
    }
}

/// Two keys of `name` in different slots.
fn two_slots(name: &str) -> (String, String) {
    let a = format!("{name}:::a");
    let b = (0..)
        .map(|i| format!("{name}:::b{i}"))
        .find(|key| slot_of(key.as_bytes()) != slot_of(a.as_bytes()))
        .expect("some key hashes elsewhere");
    (a, b)
}

#[tokio::test]
async fn slots_are_the_ones_redis_computes() {
    let cache = cache_on(shared()).await;
    let mut connection = raw(&cache);
    for key in [
        "foo",
        "order_summary:::ord-1",
        "{user1000}.following",
        "a{}b",
        "x{y}z",
    ] {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(slot_of(key.as_bytes()), slot, "{key}");
    }
}

#[tokio::test]
async fn pattern_operations_see_every_primary() {
    let cluster = shared();
    let cache = cache_on(cluster).await;
    let name = format!("{}spread", unique_prefix());
    let batch: Vec<WriteOp> = (0..300).map(|i| upsert(&name, &i.to_string(), i)).collect();
    cache.apply(&batch).await.unwrap();
    let primaries: BTreeSet<u16> = batch
        .iter()
        .map(|op| cluster.primary_of(slot_of(op.key().as_bytes())))
        .collect();
    assert_eq!(primaries.len(), 3, "300 keys land on every primary");
    let pattern = format!("{name}:::*");
    assert_eq!(cache.count(&pattern).await.unwrap(), 300);
    let mut seen = Vec::new();
    loop {
        let page = cache.get_all(&pattern, seen.len(), 40).await.unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|projection| projection.key()));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "pages are sorted, each key once");
    assert_eq!(seen.len(), 300);
    assert_eq!(cache.remove_by_key_pattern(&pattern).await.unwrap(), 300);
    assert_eq!(cache.count(&pattern).await.unwrap(), 0);
}

/// A crash between two slots' writes: one slot landed the batch, the other
/// did not, and the checkpoint did not move. Read again, the landed slot's
/// floor is past the batch start (so the fold skips what it holds) and the
/// batch lands only where it was missing; a writer still holding the old
/// floors is refused.
#[tokio::test]
async fn a_slot_that_landed_a_batch_is_skipped_by_its_floor() {
    let cache = cache_on(shared()).await;
    let prefix = unique_prefix();
    let scope = format!("{prefix}group/cache");
    let name = format!("{prefix}counters");
    let partition = Partition::new("orders", 0);
    let (a, b) = two_slots(&name);
    let [claim] = cache
        .claim(&scope, std::slice::from_ref(&partition))
        .await
        .unwrap()[..]
    else {
        panic!("one claim");
    };
    let keys = [a.clone(), b.clone()];
    let floors = cache
        .floors(&scope, &keys, std::slice::from_ref(&partition))
        .await
        .unwrap()
        .expect("a cluster commits slot by slot");
    assert_eq!(floors.mark(&a, &partition), None);
    let advance = [Advance {
        partition: partition.clone(),
        epoch: claim.epoch,
        from: None,
        to: 10,
    }];
    let (a_id, b_id) = (&a[name.len() + 3..], &b[name.len() + 3..]);
    let writes = [upsert(&name, a_id, 1), upsert(&name, b_id, 1)];
    let expected: Vec<(String, Version)> = vec![(a.clone(), None), (b.clone(), None)];
    let commit = Commit {
        scope: &scope,
        advances: &advance,
        expected: &expected,
        writes: &writes,
        generation: 0,
    };
    let outcome = cache.commit_over(commit, Some(&floors)).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Applied);

    // Slot of `a` lands the next batch (10 -> 20), then the writer dies.
    let mut connection = raw(&cache);
    let field = partition.field();
    let _: () = redis::pipe()
        .atomic()
        .set(&a, json!({"n": 2}).to_string())
        .hset(mark_key(&scope, slot_of(a.as_bytes())), &field, 20)
        .query_async(&mut connection)
        .await
        .unwrap();

    let floors = cache
        .floors(&scope, &keys, std::slice::from_ref(&partition))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(floors.mark(&a, &partition), Some(20));
    assert_eq!(floors.mark(&b, &partition), Some(10));
    assert!(floors.holds(&a, "orders", 0, 15) && !floors.holds(&b, "orders", 0, 15));

    let advance = [Advance {
        partition: partition.clone(),
        epoch: claim.epoch,
        from: Some(10),
        to: 20,
    }];
    let read = cache.get_many_versioned(&keys).await.unwrap();
    let expected_b: Vec<(String, Version)> = vec![(b.clone(), read[1].1.clone())];
    let writes_b = [upsert(&name, b_id, 2)];
    let retry = Commit {
        scope: &scope,
        advances: &advance,
        expected: &expected_b,
        writes: &writes_b,
        generation: 0,
    };
    // Without the floors it read, a writer would apply 10..20 to `a` again.
    let stale = [upsert(&name, a_id, 3), upsert(&name, b_id, 2)];
    let expected_stale: Vec<(String, Version)> = keys
        .iter()
        .cloned()
        .zip(read.iter().map(|(_, version)| version.clone()))
        .collect();
    let blind = Commit {
        scope: &scope,
        advances: &advance,
        expected: &expected_stale,
        writes: &stale,
        generation: 0,
    };
    assert_eq!(cache.commit(blind).await.unwrap(), CommitOutcome::Conflict);
    let outcome = cache.commit_over(retry, Some(&floors)).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Applied);
    let values = cache.get_many(&keys).await.unwrap();
    let n: Vec<i64> = values
        .iter()
        .map(|value| value.as_ref().unwrap().value()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(n, [2, 2], "each key got batch 10..20 once");
    let [claim] = cache
        .claim(&scope, std::slice::from_ref(&partition))
        .await
        .unwrap()[..]
    else {
        panic!("one claim");
    };
    assert_eq!(claim.next, Some(20));
    // Marks are bookkeeping: no seed method sees them.
    assert_eq!(cache.count(&format!("{prefix}*")).await.unwrap(), 2);
    cache
        .remove_by_key_pattern(&format!("{prefix}*"))
        .await
        .unwrap();
}

/// A primary is killed: its replica is promoted, and the same cache object
/// reads what was acknowledged before (replicated in time here, as nothing
/// was written just before the kill) and writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_by_its_replica_and_the_cache_carries_on() {
    let mut cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let batch: Vec<WriteOp> = (0..200)
        .map(|i| upsert("failover", &i.to_string(), i))
        .collect();
    cache.apply(&batch).await.unwrap();
    // Let the replicas catch up, as a failover after a quiet moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let victim_slot = slot_of(b"failover:::0");
    let (old, new) = tokio::task::block_in_place(|| cluster.kill_primary_of(victim_slot));
    assert_ne!(old, new);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cache.ping().await {
        assert!(std::time::Instant::now() < deadline, "ping never came back");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(cache.count("failover:::*").await.unwrap(), 200);
    cache
        .add(
            &Projection::new("failover", "0", json!({"n": -1})).unwrap(),
            None,
        )
        .await
        .unwrap();
    let value = cache.get("failover:::0").await.unwrap().unwrap();
    assert_eq!(value.value()["n"], -1);
}

/// A slot moves to another primary: keys, marks and all. Reads, writes and
/// commits follow it through `ASK` and `MOVED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_slot_is_followed_with_its_marks() {
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster).await;
    let scope = "group/cache";
    let partition = Partition::new("orders", 0);
    let key = "moving:::a".to_owned();
    let slot = slot_of(key.as_bytes());
    let [claim] = cache
        .claim(scope, std::slice::from_ref(&partition))
        .await
        .unwrap()[..]
    else {
        panic!("one claim");
    };
    let advance = [Advance {
        partition: partition.clone(),
        epoch: claim.epoch,
        from: None,
        to: 5,
    }];
    let writes = [upsert("moving", "a", 1)];
    let expected = [(key.clone(), None)];
    let commit = Commit {
        scope,
        advances: &advance,
        expected: &expected,
        writes: &writes,
        generation: 0,
    };
    assert_eq!(cache.commit(commit).await.unwrap(), CommitOutcome::Applied);
    let from = cluster.primary_of(slot);
    let to = cluster
        .slot_map()
        .values()
        .map(|(_, primary, _)| *primary)
        .find(|primary| *primary != from)
        .unwrap();
    let moved = tokio::task::block_in_place(|| cluster.migrate_slot(slot, to));
    assert_eq!(moved, 2, "the key and its slot's mark hash");
    assert_eq!(cluster.primary_of(slot), to);
    let floors = cache
        .floors(
            scope,
            std::slice::from_ref(&key),
            std::slice::from_ref(&partition),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        floors.mark(&key, &partition),
        Some(5),
        "the mark moved with the key"
    );
    let read = cache
        .get_many_versioned(std::slice::from_ref(&key))
        .await
        .unwrap();
    let advance = [Advance {
        partition: partition.clone(),
        epoch: claim.epoch,
        from: Some(5),
        to: 9,
    }];
    let writes = [upsert("moving", "a", 2)];
    let expected = [(key.clone(), read[0].1.clone())];
    let commit = Commit {
        scope,
        advances: &advance,
        expected: &expected,
        writes: &writes,
        generation: 0,
    };
    let outcome = cache.commit_over(commit, Some(&floors)).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(cache.get(&key).await.unwrap().unwrap().value()["n"], 2);
}

/// Writers keep batching over many slots while slots move under them: every
/// batch lands within a few seconds, retried as the pipeline retries a
/// transient error (a stalled client connection is replaced after one
/// timeout), never stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_landing_while_slots_move() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("redis=trace")
        .try_init();
    let cluster = RedisCluster::start();
    let cache = std::sync::Arc::new(cache_on(&cluster).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (cache, stop) = (cache.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                let batch: Vec<WriteOp> = (0..300)
                    .map(|i| upsert("busy", &format!("{writer}-{i}"), round))
                    .collect();
                let keys: Vec<String> = batch.iter().map(WriteOp::key).collect();
                let round_trip = async {
                    loop {
                        let landed = match cache.apply(&batch).await {
                            Ok(()) => cache.get_many(&keys).await.map(|_| ()),
                            Err(error) => Err(error),
                        };
                        match landed {
                            Ok(()) => return,
                            Err(error) if error.is_transient() => continue,
                            Err(error) => panic!("{error}"),
                        }
                    }
                };
                tokio::time::timeout(std::time::Duration::from_secs(10), round_trip)
                    .await
                    .expect("a batch stalled");
            }
            round
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let slots: BTreeSet<u16> = (0..300)
        .map(|i| slot_of(format!("busy:::0-{i}").as_bytes()))
        .take(20)
        .collect();
    for slot in slots {
        let from = cluster.primary_of(slot);
        let to = cluster
            .primaries()
            .into_iter()
            .find(|&p| p != from)
            .unwrap();
        tokio::task::block_in_place(|| cluster.migrate_slot(slot, to));
    }
    // Writers on a busy machine may have spent the migrations in a stall and
    // its retry: give them time to land rounds after it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        let rounds = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the writers finish")
            .unwrap();
        assert!(rounds > 1, "a writer landed only {rounds} round(s)");
    }
}
