//! Operating the daemon, end to end with the real broker and Redis: the admin
//! API's status and pauses (obeyed by every replica, kept over a restart,
//! refused without the token), readiness when the broker freezes, and reads
//! that wait for their own writes.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::daemon::{
    ADMIN_TOKEN, assert_same_projections, http_get, http_request, redis_projections, setup,
    spawn_in_process, wait_for,
};
use support::kafka::Broker;
use support::redis::RedisServer;
use support::shop::{produce, reference_fold, story};

const CATCH_UP: Duration = Duration::from_secs(90);
const STRUCTURED: [(&str, &[u8]); 1] = [("content-type", b"application/cloudevents+json")];

/// One projection in a replica's `/admin/status`.
fn projection_status(admin_port: u16, name: &str) -> Value {
    let (status, body) = http_request(admin_port, "GET", "/admin/status", None);
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|projection| projection["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing in {body}"))
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(args)
        .env("PROJECTIONIST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("the projectionist binary runs")
}

fn assigned(http_port: u16) -> bool {
    // A whole line: the metric's help text starts with "1 while".
    http_get(http_port, "/metrics")
        .1
        .lines()
        .any(|line| line == "projectionist_consumer_assigned 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_holds_every_replica_survives_a_restart_and_a_resume_loses_nothing() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 60, 10);
    let (first, second) = records.split_at(records.len() / 2);
    produce(broker, first).await;
    let (first_shutdown, first_daemon) = setup.spawn();
    let (second_config, second_http, second_admin) = setup.second_member();
    let (second_shutdown, second_daemon) = spawn_in_process(&second_config);
    wait_for("both replicas to own partitions", CATCH_UP, || async {
        assigned(setup.http_port) && assigned(second_http)
    })
    .await;
    setup.wait_caught_up(broker, CATCH_UP).await;

    let pause = "/admin/projections/order_summary/pause";
    assert_eq!(setup.admin("POST", pause, None).0, 401, "no token");
    let wrong = "not-the-token-not-the-token";
    assert_eq!(
        setup.admin("POST", pause, Some(wrong)).0,
        401,
        "wrong token"
    );
    assert_eq!(
        projection_status(setup.admin_port, "order_summary")["paused"],
        false
    );

    // Paused through one replica; the other obeys too.
    let (status, body) = http_request(second_admin, "POST", pause, Some(ADMIN_TOKEN));
    assert_eq!(status, 200, "{body}");
    for port in [setup.admin_port, second_admin] {
        wait_for(
            "every replica to hold the cache",
            Duration::from_secs(10),
            || async {
                let paused = projection_status(port, "order_summary");
                let held = projection_status(port, "customer_orders");
                paused["state"] == "paused"
                    && paused["paused"] == true
                    && held["state"] == "paused"
                    && held["held_by"] == json!(["order_summary"])
            },
        )
        .await;
    }
    produce(broker, second).await;
    // The records arrive and are counted as lag; none is written.
    wait_for("the lag to show", Duration::from_secs(30), || async {
        let lag = |port| {
            projection_status(port, "order_summary")["lag"]
                .as_i64()
                .unwrap_or(0)
        };
        lag(setup.admin_port) + lag(second_admin) > 0
    })
    .await;
    let before_pause = reference_fold(first, &setup.orders);
    assert_same_projections(&redis_projections(&setup.redis_url).await, &before_pause);

    // A restart keeps the pause. One member leaves at a time (tansu 0.6 can
    // keep a group whose members all left at once waiting to rebalance).
    second_shutdown.cancel();
    second_daemon.await.unwrap().unwrap();
    wait_for(
        "the first replica to own every partition",
        CATCH_UP,
        || async {
            let status = projection_status(setup.admin_port, "order_summary");
            status["partitions"].as_array().map(Vec::len) == Some(4)
        },
    )
    .await;
    first_shutdown.cancel();
    first_daemon.await.unwrap().unwrap();
    let (shutdown, daemon) = setup.spawn();
    wait_for(
        "the restarted replica to own partitions",
        CATCH_UP,
        || async { assigned(setup.http_port) },
    )
    .await;
    assert_eq!(
        projection_status(setup.admin_port, "order_summary")["state"],
        "paused"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &before_pause);

    // Resumed from the command line: everything missed is applied, once.
    let admin = format!("http://127.0.0.1:{}", setup.admin_port);
    let resumed = cli(&["resume", "order_summary", "--admin", &admin]);
    assert!(resumed.status.success(), "{resumed:?}");
    setup.wait_caught_up(broker, CATCH_UP).await;
    assert_same_projections(
        &redis_projections(&setup.redis_url).await,
        &reference_fold(&records, &setup.orders),
    );
    wait_for(
        "order_summary to be live again",
        Duration::from_secs(30),
        || async { projection_status(setup.admin_port, "order_summary")["state"] == "live" },
    )
    .await;
    let shown = cli(&["status", "--admin", &admin]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains("order_summary"),
        "{shown:?}"
    );
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_turns_false_within_seconds_of_the_broker_freezing() {
    // A broker of its own: freezing the shared one would stall other tests.
    let broker = Broker::tansu();
    let redis = RedisServer::start();
    let setup = setup(&broker, &redis.url(0), "").await;
    // librdkafka's own verdict would come at the session timeout: make that
    // long, so readiness cannot owe its answer to it.
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "\"session.timeout.ms\" = \"6000\"",
        "\"session.timeout.ms\" = \"30000\"",
    );
    std::fs::write(&setup.config, config).unwrap();
    let (shutdown, daemon) = setup.spawn();
    wait_for("readiness", CATCH_UP, || async {
        setup.http("/readyz").0 == 200
    })
    .await;

    broker.freeze(true);
    let frozen = Instant::now();
    wait_for(
        "readiness to turn false",
        Duration::from_secs(6),
        || async { setup.http("/readyz").0 == 503 },
    )
    .await;
    let noticed = frozen.elapsed();
    let (_, body) = setup.http("/readyz");
    broker.freeze(false);
    assert!(body.contains("broker does not answer"), "{body}");
    wait_for(
        "readiness to come back",
        Duration::from_secs(60),
        || async { setup.http("/readyz").0 == 200 },
    )
    .await;
    eprintln!("not ready {noticed:?} after the broker froze");
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_waits_for_its_own_write_and_says_behind_when_the_wait_runs_out() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 20, 5);
    produce(broker, &records).await;
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;
    // Events weeks old, every one applied: live, with no lag.
    wait_for(
        "a historical stream at its end to be live",
        Duration::from_secs(30),
        || async {
            let status = projection_status(setup.admin_port, "order_summary");
            status["state"] == "live" && status["lag"] == 0
        },
    )
    .await;

    // The write lands while the projection is paused: the read waits for it,
    // and answers once the resume applied it.
    let admin_path = |verb: &str| format!("/admin/projections/order_summary/{verb}");
    assert_eq!(
        setup
            .admin("POST", &admin_path("pause"), Some(ADMIN_TOKEN))
            .0,
        200
    );
    let placed = json!({"specversion": "1.0", "type": "shop.order.placed", "id": "ryw-1",
        "source": "/shop", "time": "2026-11-02T10:00:00Z",
        "data": {"order_id": "ord-ryw", "customer_id": "cus-ryw", "currency": "EUR"}});
    let (partition, offset) = broker
        .produce(
            &setup.orders,
            "ord-ryw",
            &placed.to_string(),
            &STRUCTURED,
            None,
        )
        .await;
    let position = format!(
        "topic={}&partition={partition}&offset={offset}",
        setup.orders
    );
    let port = setup.http_port;
    let path = format!("/projections/order_summary/ord-ryw?{position}&wait_ms=20000");
    let asked = Instant::now();
    let read = tokio::task::spawn_blocking(move || http_get(port, &path));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        setup
            .admin("POST", &admin_path("resume"), Some(ADMIN_TOKEN))
            .0,
        200
    );
    let (status, body) = read.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "answered before the resume"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["order_id"],
        "ord-ryw"
    );

    // A position past the end: behind, once the wait ran out.
    let beyond = format!(
        "topic={}&partition={partition}&offset={}",
        setup.orders,
        offset + 1000
    );
    let asked = Instant::now();
    let (status, body) = setup.http(&format!(
        "/projections/order_summary/ord-ryw?{beyond}&wait_ms=700"
    ));
    assert_eq!(status, 409, "{body}");
    assert!(asked.elapsed() >= Duration::from_millis(700));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "behind");
    assert_eq!(body["applied"], offset + 1);
    // A topic the projection does not read, or half a position, is a mistake.
    let other = format!("topic={}&partition=0&offset=0", setup.inventory);
    assert_eq!(
        setup
            .http(&format!("/projections/order_summary/ord-ryw?{other}"))
            .0,
        400
    );
    assert_eq!(
        setup.http("/projections/order_summary/ord-ryw?offset=3").0,
        400
    );
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_from_before_the_first_record_holds_it_back_and_a_resume_applies_it() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    // Paused before this group ever applied anything: no checkpoint to go back to.
    let client = redis::Client::open(setup.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let pauses = format!("@projectionist/paused/{}", setup.group);
    let _: i64 = redis::AsyncCommands::sadd(&mut connection, &pauses, "daily_sales")
        .await
        .unwrap();
    let (shutdown, daemon) = setup.spawn();
    wait_for("the replica to own partitions", CATCH_UP, || async {
        assigned(setup.http_port)
    })
    .await;
    let records = story(&setup.orders, &setup.inventory, 30, 5);
    produce(broker, &records).await;
    // Every record is fetched, and held back.
    wait_for(
        "the records to be fetched",
        Duration::from_secs(30),
        || async {
            let (_, metrics) = setup.http("/metrics");
            let consumed: f64 = metrics
                .lines()
                .filter(|line| line.starts_with("projectionist_events_consumed_total{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            consumed >= records.len() as f64
        },
    )
    .await;
    assert_eq!(
        projection_status(setup.admin_port, "order_summary")["held_by"],
        json!(["daily_sales"])
    );
    assert!(redis_projections(&setup.redis_url).await.is_empty());

    let resume = "/admin/projections/daily_sales/resume";
    assert_eq!(setup.admin("POST", resume, Some(ADMIN_TOKEN)).0, 200);
    setup.wait_caught_up(broker, CATCH_UP).await;
    assert_same_projections(
        &redis_projections(&setup.redis_url).await,
        &reference_fold(&records, &setup.orders),
    );
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test]
async fn mutations_are_refused_without_the_token_and_without_a_configured_one() {
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Arc;
    use tower::ServiceExt;

    let memory: Arc<dyn projectionist::cache::Cache> =
        Arc::new(projectionist::cache::memory::MemoryCache::new(
            projectionist::cache::Ttl::from_secs_f64(60.0).unwrap(),
        ));
    let served = projectionist::http::Served {
        cache: "default".to_owned(),
        topics: vec!["shop.orders".to_owned()],
    };
    let state = |token: Option<&str>| projectionist::http::AppState {
        metrics: projectionist::metrics::Metrics::new(),
        health: projectionist::health::Health::new(),
        caches: [("default".to_owned(), Arc::clone(&memory))].into(),
        projections: [("order_summary".to_owned(), served.clone())].into(),
        group: "group".to_owned(),
        admin_token: token.map(|token| {
            let raw = format!("[admin]\ntoken = {token:?}\n");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.toml");
            std::fs::write(&path, raw).unwrap();
            let settings = projectionist::config::load_with_env(&path, Default::default()).unwrap();
            settings.admin.token.unwrap()
        }),
        dead_letters: None,
        rebuilds: None,
    };
    let call = |state, path: &str, token: Option<&str>| {
        let mut request = Request::post(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).unwrap();
        async move {
            let app = projectionist::admin::router(state);
            app.oneshot(request).await.unwrap().status().as_u16()
        }
    };
    let pause = "/admin/projections/order_summary/pause";
    assert_eq!(
        call(state(None), pause, Some(ADMIN_TOKEN)).await,
        403,
        "no token configured"
    );
    let configured = || state(Some(ADMIN_TOKEN));
    assert_eq!(call(configured(), pause, None).await, 401);
    assert_eq!(
        call(configured(), pause, Some("bearer-of-another-token")).await,
        401
    );
    let unknown = "/admin/projections/nothing_here/pause";
    assert_eq!(call(configured(), unknown, Some(ADMIN_TOKEN)).await, 404);
    assert!(
        memory.paused("group").await.unwrap().is_empty(),
        "nothing paused by refusals"
    );
    assert_eq!(call(configured(), pause, Some(ADMIN_TOKEN)).await, 200);
    assert_eq!(memory.paused("group").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_and_shown_whole_without_moving_anything() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 5, 2);
    produce(broker, &records).await;
    let garbage = "{this is not json";
    let (garbage_partition, garbage_offset) = broker
        .produce(&setup.orders, "ord-x", garbage, &[("trace", b"kept")], None)
        .await;
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;

    let (status, body) = setup.admin("GET", "/admin/dead-letters", None);
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let letters = body["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{body}");
    let letter = &letters[0];
    assert_eq!(letter["reason"], "invalid_json");
    assert_eq!(letter["source"]["topic"], setup.orders.as_str());
    assert_eq!(letter["source"]["partition"], garbage_partition);
    assert_eq!(letter["source"]["offset"], garbage_offset);
    assert!(
        letter.get("record").is_none(),
        "a listing leaves payloads out"
    );

    let path = format!(
        "/admin/dead-letters/{}/{}",
        letter["partition"], letter["offset"]
    );
    let (status, body) = setup.admin("GET", &path, None);
    assert_eq!(status, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(whole["record"]["payload"], garbage);
    assert_eq!(whole["record"]["key"], "ord-x");
    assert!(
        whole["record"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["trace", "kept"])),
        "{whole}"
    );
    let beyond = format!("/admin/dead-letters/{}/999", letter["partition"]);
    assert_eq!(setup.admin("GET", &beyond, None).0, 404);

    // The command line shows the same letter.
    let admin = format!("http://127.0.0.1:{}", setup.admin_port);
    let listed = cli(&["dead-letters", "--admin", &admin]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && text.contains("invalid_json"),
        "{listed:?}"
    );
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}
