//! What only the Redis adapter must show: outages and reconnects, URIs (password,
//! TLS), the stored format, foreign values and keys, and agreement with the memory
//! adapter. Every test here runs on a private `redis-server`.

use std::time::{Duration, Instant};

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::redis::{RedisCache, connect};
use projectionist::cache::{Cache, CacheError, Connection, Expiry, Projection, WriteOp};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

use crate::default_ttl;
use crate::support::redis::{RedisServer, free_port};

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn cache_on(server: &RedisServer, db: u32) -> RedisCache {
    connect(&server.url(db), default_ttl()).await.unwrap()
}

fn projection(name: &str, id: &str, value: Value) -> Projection {
    Projection::new(name, id, value).unwrap()
}

#[tokio::test]
async fn ping_is_false_while_redis_is_down_and_the_cache_reconnects_after_a_restart() {
    let mut server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let entry = projection("p", "1", json!({"v": 1}));
    cache.add(&entry, None).await.unwrap();
    assert!(cache.ping().await);

    server.stop();
    let started = Instant::now();
    assert!(!cache.ping().await);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let error = cache.get(&entry.key()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let error = cache
        .apply(&[WriteOp::Delete { key: entry.key() }])
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.ping().await {
        assert!(Instant::now() < deadline, "no reconnect after the restart");
    }
    // The same cache object works again; the restarted server kept nothing.
    assert_eq!(cache.get(&entry.key()).await.unwrap(), None);
    cache.add(&entry, None).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(entry));
}

#[tokio::test]
async fn the_first_command_after_a_restart_succeeds() {
    let mut server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    assert!(cache.ping().await);
    // Redis goes away and comes back while nobody uses the cache: the old
    // connection is dead, and the next command must not pay for it.
    server.restart();
    let entry = projection("p", "1", json!({}));
    cache.add(&entry, None).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(entry));
}

#[tokio::test]
async fn connect_rejects_a_bad_uri_and_reports_an_unreachable_server() {
    for bad in [
        "http://127.0.0.1:6379",
        "redis://127.0.0.1/notadb",
        "nonsense",
    ] {
        let error = connect(bad, default_ttl()).await.unwrap_err();
        assert!(
            matches!(error, CacheError::InvalidArgument(_)),
            "{bad}: {error}"
        );
    }
    let started = Instant::now();
    let nobody = format!("redis://127.0.0.1:{}/0", free_port());
    let error = connect(&nobody, default_ttl()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_password_in_the_uri_is_used_and_never_shown() {
    let server = RedisServer::start_with_password("s3cret-pw");
    let cache = cache_on(&server, 3).await;
    let entry = projection("p", "1", json!({"v": 1}));
    cache.add(&entry, None).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(entry));
    assert!(!format!("{cache:?}").contains("s3cret-pw"));

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port());
    let error = connect(&wrong, default_ttl()).await.unwrap_err();
    assert!(!error.to_string().contains("wrong-pw"), "{error}");
    let anonymous = format!("redis://127.0.0.1:{}/0", server.port());
    let cache = connect(&anonymous, default_ttl()).await;
    // Connecting may succeed lazily, but no command may.
    if let Ok(cache) = cache {
        assert!(!cache.ping().await);
        assert!(cache.get("p:::1").await.is_err());
    }
}

#[tokio::test]
async fn a_rediss_uri_speaks_tls() {
    let server = RedisServer::start_tls();
    assert!(server.url(0).starts_with("rediss://"));
    let cache = cache_on(&server, 0).await;
    assert!(cache.ping().await);
    let entry = projection("p", "tls", json!({"secure": true}));
    cache.add(&entry, None).await.unwrap();
    assert_eq!(cache.get(&entry.key()).await.unwrap(), Some(entry));
}

#[tokio::test]
async fn flush_all_leaves_other_databases_and_foreign_keys_alone() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let neighbour = cache_on(&server, 1).await;
    let mut db0 = raw(&server.url(0)).await;
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("x")
        .query_async(&mut db0)
        .await
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("queue")
        .arg("job")
        .query_async(&mut db0)
        .await
        .unwrap();
    let theirs = projection("other", "1", json!({"db": 1}));
    neighbour.add(&theirs, None).await.unwrap();
    for id in ["1", "2", "3"] {
        cache
            .add(&projection("mine", id, json!({})), None)
            .await
            .unwrap();
    }
    assert_eq!(
        cache.count("*").await.unwrap(),
        3,
        "foreign keys are not entries"
    );

    cache.flush_all().await.unwrap();
    assert_eq!(cache.count("*").await.unwrap(), 0);
    let size: usize = redis::cmd("DBSIZE").query_async(&mut db0).await.unwrap();
    assert_eq!(size, 2, "plain and queue stay");
    assert_eq!(neighbour.get(&theirs.key()).await.unwrap(), Some(theirs));
    assert_eq!(cache.remove_by_key_pattern("*").await.unwrap(), 0);
    let size: usize = redis::cmd("DBSIZE").query_async(&mut db0).await.unwrap();
    assert_eq!(size, 2);
}

#[tokio::test]
async fn values_are_json_text_with_millisecond_ttls() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let mut db = raw(&server.url(0)).await;
    let entry = projection(
        "order_summary",
        "ord-1",
        json!({"total": 12.5, "items": ["a"]}),
    );
    cache
        .add(
            &entry,
            Some(projectionist::cache::Ttl::from_secs_f64(2.5).unwrap()),
        )
        .await
        .unwrap();
    let text: String = redis::cmd("GET")
        .arg("order_summary:::ord-1")
        .query_async(&mut db)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        *entry.value()
    );
    let millis: i64 = redis::cmd("PTTL")
        .arg(entry.key())
        .query_async(&mut db)
        .await
        .unwrap();
    assert!((2400..=2500).contains(&millis), "{millis}");

    let forever = WriteOp::Upsert {
        projection: entry.clone(),
        expiry: Expiry::Never,
    };
    cache.apply(&[forever]).await.unwrap();
    let millis: i64 = redis::cmd("PTTL")
        .arg(entry.key())
        .query_async(&mut db)
        .await
        .unwrap();
    assert_eq!(millis, -1, "a plain SET clears the old TTL");
}

#[tokio::test]
async fn a_foreign_value_is_an_error_naming_its_key() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let mut db = raw(&server.url(0)).await;
    for (key, text) in [
        ("p:::bad", "not json {"),
        ("p:::array", "[1,2]"),
        ("p:::good", "{\"ok\":true}"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(text)
            .query_async(&mut db)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("RPUSH")
        .arg("p:::list")
        .arg("x")
        .query_async(&mut db)
        .await
        .unwrap();

    let corrupt_key = |error: CacheError| match error {
        CacheError::CorruptValue { ref key, .. } => {
            assert!(error.to_string().contains(key.as_str()), "{error}");
            assert!(!error.is_transient());
            key.clone()
        }
        other => panic!("expected a corrupt value, got {other}"),
    };
    for key in ["p:::bad", "p:::array", "p:::list"] {
        assert_eq!(corrupt_key(cache.get(key).await.unwrap_err()), key);
    }
    let keys = ["p:::good".to_owned(), "p:::bad".to_owned()];
    assert_eq!(
        corrupt_key(cache.get_many(&keys).await.unwrap_err()),
        "p:::bad"
    );
    // Key order: array < bad < good < list; the first foreign value is reported.
    assert_eq!(
        corrupt_key(cache.get_all("p:::*", 0, 10).await.unwrap_err()),
        "p:::array"
    );
    assert_eq!(
        corrupt_key(cache.get_all("p:::[gl]*", 0, 10).await.unwrap_err()),
        "p:::list"
    );
    assert_eq!(cache.get_all("p:::g*", 0, 10).await.unwrap().len(), 1);
    assert_eq!(cache.count("p:::*").await.unwrap(), 4);
    assert_eq!(cache.remove_by_key_pattern("p:::*").await.unwrap(), 4);
}

#[tokio::test]
async fn apply_is_one_transaction() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let mut db = raw(&server.url(0)).await;
    let batch: Vec<WriteOp> = (0..200)
        .map(|n| WriteOp::Upsert {
            projection: projection("p", &n.to_string(), json!({ "n": n })),
            expiry: Expiry::CacheDefault,
        })
        .collect();
    cache.apply(&batch).await.unwrap();
    assert_eq!(command_calls(&mut db, "exec").await, Some(1));
    assert_eq!(command_calls(&mut db, "set").await, Some(200));
}

/// How often the server ran `command`, from `INFO commandstats`.
async fn command_calls(db: &mut MultiplexedConnection, command: &str) -> Option<u64> {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(db)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map(|calls| calls.parse().unwrap())
}

#[tokio::test]
async fn pattern_ops_scan_and_unlink_in_batches_never_keys_or_flush() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    let mut db = raw(&server.url(0)).await;
    let batch: Vec<WriteOp> = (0..2500)
        .map(|n| WriteOp::Upsert {
            projection: projection("p", &n.to_string(), json!({})),
            expiry: Expiry::CacheDefault,
        })
        .collect();
    cache.apply(&batch).await.unwrap();
    assert_eq!(cache.count("p:::*").await.unwrap(), 2500);
    assert_eq!(cache.get_all("p:::*", 2000, 1000).await.unwrap().len(), 500);
    assert_eq!(cache.remove_by_key_pattern("p:::*").await.unwrap(), 2500);
    cache.flush_all().await.unwrap();
    assert!(command_calls(&mut db, "scan").await.unwrap() >= 4);
    assert_eq!(
        command_calls(&mut db, "unlink").await,
        Some(5),
        "500 keys a batch"
    );
    for never in ["keys", "flushdb", "flushall", "del"] {
        assert_eq!(command_calls(&mut db, never).await, None, "{never}");
    }
}

#[tokio::test]
async fn get_connection_is_a_working_raw_handle() {
    let server = RedisServer::start();
    let cache = cache_on(&server, 0).await;
    cache
        .add(&projection("p", "1", json!({})), None)
        .await
        .unwrap();
    let Connection::Redis(mut connection) = cache.get_connection() else {
        panic!("the Redis cache handed out another connection");
    };
    let size: usize = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(size, 1);
}

#[tokio::test]
async fn memory_and_redis_agree_on_every_pattern() {
    let server = RedisServer::start();
    let redis_cache = cache_on(&server, 0).await;
    let memory_cache = MemoryCache::new(default_ttl());
    let ids = [
        "a", "b", "ab", "a.b", "a*b", "é", "日本", "A", "[x]", "\\", "-", "a:::b", "",
    ];
    for name in ["alpha", "beta"] {
        for id in ids {
            let entry = projection(name, id, json!({ "id": id }));
            redis_cache.add(&entry, None).await.unwrap();
            memory_cache.add(&entry, None).await.unwrap();
        }
    }
    let patterns = [
        "*",
        "*:::*",
        "alpha:::*",
        "?eta:::*",
        "*:::?",
        "*:::??",
        "*[ab]",
        "*[^ab]",
        "*[!ab]",
        "*[a-b]",
        "*\\*b",
        "*.b",
        "*:::\\[*",
        "*\\\\",
        "alpha:::",
        "*:::a:::*",
        "[ab]*:::a",
        "*:::[",
        "*:::[a",
        "*[é]",
        "beta*",
        "BETA*",
        "*-",
    ];
    for pattern in patterns {
        let from_redis = redis_cache.get_all(pattern, 0, 100).await.unwrap();
        let from_memory = memory_cache.get_all(pattern, 0, 100).await.unwrap();
        assert_eq!(from_redis, from_memory, "{pattern}");
        assert_eq!(
            redis_cache.count(pattern).await.unwrap(),
            memory_cache.count(pattern).await.unwrap(),
            "{pattern}"
        );
    }
}
