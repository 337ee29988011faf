//! What only the memory adapter must show: it reclaims expired entries without
//! reads, and it stays consistent under many concurrent writers and readers.

use std::sync::Arc;

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{Cache, Connection, Expiry, Projection, WriteOp};
use serde_json::json;

use crate::{default_ttl, pause, ttl};

fn store_of(cache: &MemoryCache) -> Arc<projectionist::cache::memory::Store> {
    match cache.get_connection() {
        Connection::Memory(store) => store,
        other => panic!("the memory cache handed out {other:?}"),
    }
}

fn projection(name: &str, id: usize) -> Projection {
    Projection::new(name, id.to_string(), json!({ "id": id })).unwrap()
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_reclaimed_without_reads() {
    let cache = MemoryCache::new(default_ttl());
    let store = store_of(&cache);
    for id in 0..100 {
        cache
            .add(&projection("brief", id), Some(ttl(1.0)))
            .await
            .unwrap();
    }
    for id in 0..50 {
        cache
            .add(&projection("lasting", id), Some(ttl(100.0)))
            .await
            .unwrap();
    }
    assert_eq!(store.stored_entries(), 150);
    // Nobody reads; only the background sweep can drop the dead entries.
    pause(2.5).await;
    assert_eq!(store.stored_entries(), 50);
    pause(100.0).await;
    assert_eq!(store.stored_entries(), 0);
}

/// The sweep walks the keys a share at a time and resumes where it stopped:
/// expired entries that sort after many live ones are still reached.
#[tokio::test(start_paused = true)]
async fn the_sweep_reaches_expired_entries_behind_many_live_ones() {
    let cache = MemoryCache::new(default_ttl());
    let store = store_of(&cache);
    let lasting: Vec<WriteOp> = (0..30_000)
        .map(|id| WriteOp::Upsert {
            projection: projection("a_lasting", id),
            expiry: Expiry::CacheDefault,
        })
        .collect();
    cache.apply(&lasting).await.unwrap();
    let brief: Vec<WriteOp> = (0..100)
        .map(|id| WriteOp::Upsert {
            projection: projection("b_brief", id),
            expiry: Expiry::After(ttl(1.0)),
        })
        .collect();
    cache.apply(&brief).await.unwrap();
    // 10,000 entries a second at this size: the walk passes the 30,000 live
    // entries in three seconds and then finds the expired ones.
    pause(5.5).await;
    assert_eq!(store.stored_entries(), 30_000);
    assert_eq!(
        cache.get("a_lasting:::0").await.unwrap(),
        Some(projection("a_lasting", 0))
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_store() {
    let cache = MemoryCache::new(default_ttl());
    let clone = cache.clone();
    clone.add(&projection("p", 1), None).await.unwrap();
    assert_eq!(cache.get("p:::1").await.unwrap(), Some(projection("p", 1)));
    assert_eq!(store_of(&cache).stored_entries(), 1);
    assert!(Arc::ptr_eq(&store_of(&cache), &store_of(&clone)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_see_consistent_entries() {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(default_ttl()));
    let writers = 8;
    let per_writer = 500;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            let name = format!("w{writer}");
            for id in 0..per_writer {
                if id % 2 == 0 {
                    cache.add(&projection(&name, id), None).await.unwrap();
                } else {
                    let batch = [
                        WriteOp::Upsert {
                            projection: projection(&name, id),
                            expiry: Expiry::CacheDefault,
                        },
                        WriteOp::Delete {
                            key: format!("{name}:::gone{id}"),
                        },
                    ];
                    cache.apply(&batch).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for _reader in 0..4 {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                // Every entry a reader sees is whole: its value matches its key.
                for entry in cache.get_all("w*", 0, 50).await.unwrap() {
                    assert_eq!(entry.value()["id"].to_string(), entry.id());
                }
                let seen = cache.count("*").await.unwrap();
                assert!(seen <= writers * per_writer);
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(cache.count("*").await.unwrap(), writers * per_writer);
    for writer in 0..writers {
        let name = format!("w{writer}");
        let keys: Vec<String> = (0..per_writer).map(|id| format!("{name}:::{id}")).collect();
        let found = cache.get_many(&keys).await.unwrap();
        for (id, entry) in found.into_iter().enumerate() {
            assert_eq!(entry, Some(projection(&name, id)));
        }
    }
}
