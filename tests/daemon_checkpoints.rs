//! The checkpoints in Redis, end to end with the real broker: where a
//! restarted daemon resumes, and what it does when the log no longer holds
//! its checkpoint (a topic deleted and recreated, or truncated).

mod support;

use std::time::Duration;

use redis::AsyncCommands;

use support::daemon::{redis_projections, setup, wait_for};
use support::kafka::Broker;
use support::redis::RedisServer;
use support::shop::{produce, reference_fold, story};

const CATCH_UP: Duration = Duration::from_secs(90);

/// The checkpoint hash of the setup's group in the `default` cache.
fn checkpoint_key(group: &str) -> String {
    format!("@projectionist/checkpoint/{group}/default")
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Run a daemon over `records` to the end of the topics, then stop it.
async fn catch_up(broker: &Broker, setup: &support::daemon::Setup) {
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checkpoint_follows_the_data_and_a_restart_resumes_from_it() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 60, 10);
    let (first, second) = records.split_at(records.len() / 2);
    produce(broker, first).await;
    catch_up(broker, &setup).await;

    // The checkpoint holds, per partition, the end of what was applied.
    let mut redis_connection = connection(&setup.redis_url).await;
    let key = checkpoint_key(&setup.group);
    for (partition, end) in broker.end_offsets(&setup.orders).await {
        let next: Option<i64> = redis_connection
            .hget(&key, format!("n/{}/{partition}", setup.orders))
            .await
            .unwrap();
        assert_eq!(next.unwrap_or(0), end, "partition {partition}");
    }
    // The restarted daemon claims its partitions and seeks to the
    // checkpoint: what the first run applied is not applied again.
    produce(broker, second).await;
    catch_up(broker, &setup).await;
    let expected = reference_fold(&records, &setup.orders);
    assert_eq!(redis_projections(&setup.redis_url).await, expected);
}

/// On librdkafka's mock cluster, which (like Kafka, unlike tansu 0.6) answers a
/// fetch past the end of the log with `OFFSET_OUT_OF_RANGE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_that_no_longer_holds_the_checkpoint_halts_the_partition() {
    let broker = Broker::mock();
    let redis = RedisServer::start();
    let setup = setup(&broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 40, 10);
    produce(&broker, &records).await;
    catch_up(&broker, &setup).await;
    let expected = reference_fold(&records, &setup.orders);
    assert_eq!(redis_projections(&setup.redis_url).await, expected);

    // The topic is "recreated": the log no longer holds partition 0's
    // checkpoint (set past its end, as a shorter new log would be).
    let mut redis_connection = connection(&setup.redis_url).await;
    let key = checkpoint_key(&setup.group);
    let field = format!("n/{}/0", setup.orders);
    let ends = broker.end_offsets(&setup.orders).await;
    let beyond = ends[&0] + 1_000;
    let _: () = redis_connection.hset(&key, &field, beyond).await.unwrap();
    let (shutdown, daemon) = setup.spawn();
    wait_for("the reset to be reported", CATCH_UP, || async {
        let (_, metrics) = setup.http("/metrics");
        metrics.contains(&format!(
            "projectionist_partition_resets_total{{topic=\"{}\"}} 1",
            setup.orders
        ))
    })
    .await;
    // Halted: nothing skipped, nothing applied again, the checkpoint kept.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(redis_projections(&setup.redis_url).await, expected);
    let kept: i64 = redis_connection.hget(&key, &field).await.unwrap();
    assert_eq!(kept, beyond);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

/// A quiet stream is not held back by the batch timeout: with nothing queued
/// for the pipeline, a batch goes over as soon as nothing more has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_on_a_quiet_stream_is_applied_without_waiting_for_the_batch_timeout() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let config = std::fs::read_to_string(&setup.config).unwrap();
    let patient = config.replace("batch_timeout_ms = 20\n", "batch_timeout_ms = 20000\n");
    assert_ne!(config, patient, "the setup's batch timeout was replaced");
    std::fs::write(&setup.config, patient).unwrap();
    let records = story(&setup.orders, &setup.inventory, 4, 2);
    let (first, rest) = records.split_at(1);
    produce(broker, first).await;
    let (shutdown, daemon) = setup.spawn();
    // The first record waits for the group join; the rest measure the path.
    wait_for("the first event", CATCH_UP, || async {
        !redis_projections(&setup.redis_url).await.is_empty()
    })
    .await;
    let (measured, others) = rest.split_at(3);
    for record in measured {
        let started = std::time::Instant::now();
        produce(broker, std::slice::from_ref(record)).await;
        let end = setup.end(broker).await;
        wait_for(
            "the event, well before the batch timeout",
            Duration::from_secs(5),
            || async { setup.committed(broker).await >= end },
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    produce(broker, others).await;
    setup.wait_caught_up(broker, CATCH_UP).await;
    let expected = reference_fold(&records, &setup.orders);
    assert_eq!(redis_projections(&setup.redis_url).await, expected);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}
