//! What Grafana and Prometheus are given matches what the daemon exports: every
//! metric the dashboard and the alert rules name is in a real `/metrics` scrape,
//! and liveness follows the heartbeat.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::daemon::setup;
use support::kafka::Broker;
use support::redis::RedisServer;

/// Every `projectionist_*` name in a file's text.
fn metric_names(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("projectionist_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Names exported by a scrape (histogram series included as exported).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let (shutdown, daemon) = setup.spawn();
    let records = support::shop::story(&setup.orders, &setup.inventory, 5, 2);
    for record in &records {
        broker
            .produce(&record.topic, &record.key, &record.payload(), &[], None)
            .await;
    }
    setup.wait_caught_up(broker, Duration::from_secs(60)).await;
    // The status reporter (every 5 s) runs after librdkafka's statistics
    // (every 5 s) told it where the logs end.
    let live = "projectionist_projection_state{projection=\"order_summary\",state=\"live\"} 1";
    support::daemon::wait_for(
        "order_summary to report live",
        Duration::from_secs(30),
        || async { setup.http("/metrics").1.contains(live) },
    )
    .await;
    let (status, scrape) = setup.http("/metrics");
    assert_eq!(status, 200);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();

    let scrape_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/metrics-scrape.txt");
    std::fs::write(&scrape_file, &scrape).unwrap();
    let exported = exported(&scrape);
    let mut used = metric_names("deploy/grafana/projectionist.json");
    used.extend(metric_names("deploy/prometheus/alerts.yaml"));
    assert!(
        used.len() > 10,
        "the dashboard and rules name metrics: {used:?}"
    );
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\n{scrape}"
    );
    for gauge in ["projectionist_ready 1", "projectionist_consumer_assigned 1"] {
        // Whole lines: the help text of the second starts with "1 while".
        assert!(
            scrape.lines().any(|line| line == gauge),
            "{gauge} missing in\n{scrape}"
        );
    }
    // The story's events happened weeks ago, but every one is applied: with
    // no lag against the end of the log, the projection is live.
    let states = [
        ("catching_up", 0),
        ("live", 1),
        ("stalled", 0),
        ("paused", 0),
    ];
    for (state, value) in states {
        let series = format!(
            "projectionist_projection_state{{projection=\"order_summary\",state=\"{state}\"}} {value}"
        );
        assert!(scrape.contains(&series), "{series} missing in\n{scrape}");
    }
}

#[tokio::test]
async fn liveness_fails_when_the_loop_stops_beating() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let health = projectionist::health::Health::new();
    let state = projectionist::http::AppState {
        metrics: projectionist::metrics::Metrics::new(),
        health: health.clone(),
        caches: Default::default(),
        projections: Default::default(),
        group: "group".to_owned(),
        admin_token: None,
        dead_letters: None,
        rebuilds: None,
    };
    let status = |app: axum::Router| async move {
        let request = Request::get("/healthz").body(Body::empty()).unwrap();
        app.oneshot(request).await.unwrap().status().as_u16()
    };
    assert_eq!(
        status(projectionist::http::router(state.clone())).await,
        200
    );
    health.backdate_heartbeat(projectionist::health::STALL_AFTER + Duration::from_secs(1));
    assert_eq!(
        status(projectionist::http::router(state.clone())).await,
        503
    );
    health.beat();
    assert_eq!(status(projectionist::http::router(state)).await, 200);
}
