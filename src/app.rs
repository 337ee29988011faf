//! Wiring: settings + registry -> caches, consumer, pipeline, HTTP; and the one
//! shutdown path: stop fetching, drain within the deadline, commit, stop
//! serving, return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::cache::memory::MemoryCache;
use crate::cache::redis::masked_uri;
use crate::cache::{Cache, CacheError};
use crate::config::{CacheSettings, Provider, Settings};
use crate::health::Health;
use crate::http::{self, AppState, Served};
use crate::letters::DeadLetterTopic;
use crate::metrics::{Metrics, PROJECTION_STATES};
use crate::pipeline::{Pipeline, Positioning, Retry, Router, Wiring};
use crate::projection;
use crate::projector::Registry;
use crate::rebuild::{self, Catalog};
use crate::source::DeadLetters;
use crate::source::kafka::{KafkaDeadLetters, KafkaSource};
use crate::status::{load_pauses, watch_pauses};

/// How often the status gauges (cache up, ready, heartbeat, states) refresh.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Open one cache: the one `match` on the provider.
pub async fn connect_cache(settings: &CacheSettings) -> Result<Arc<dyn Cache>, CacheError> {
    match &settings.provider {
        Provider::Memory => Ok(Arc::new(MemoryCache::new(settings.ttl))),
        Provider::Redis { uri } => Ok(Arc::new(
            crate::cache::redis::connect(uri, settings.ttl).await?,
        )),
        Provider::RedisCluster { nodes, rewind } => Ok(Arc::new(
            crate::cache::cluster::connect(nodes, settings.ttl)
                .await?
                .with_replay_window(*rewind),
        )),
    }
}

/// Open every configured cache, waiting (with backoff) for unreachable ones:
/// a Redis that is still starting is not a reason to crash-loop.
pub async fn connect_caches(
    settings: &Settings,
    retry: &Retry,
) -> anyhow::Result<BTreeMap<String, Arc<dyn Cache>>> {
    let mut caches = BTreeMap::new();
    for (name, cache_settings) in &settings.caches {
        let target = match &cache_settings.provider {
            Provider::Memory => "memory".to_owned(),
            Provider::Redis { uri } => masked_uri(uri),
            Provider::RedisCluster { nodes, .. } => {
                let shown: Vec<String> = nodes.iter().map(|uri| masked_uri(uri)).collect();
                format!("cluster {}", shown.join(","))
            }
        };
        let component = format!("cache {name}");
        let cache = retry
            .run(&component, || connect_cache(cache_settings))
            .await
            .with_context(|| format!("caches.{name}: cannot open {target}"))?;
        info!(cache = %name, target = %target, ttl_secs = cache_settings.ttl.as_secs_f64(), "cache ready");
        caches.insert(name.clone(), cache);
    }
    Ok(caches)
}

/// Run the daemon until `shutdown` is cancelled (a signal) or the pipeline fails.
pub async fn run(
    settings: Settings,
    registry: &Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let files = projection::load_dir(&settings, registry)?;
    let metrics = Metrics::new();
    let health = Health::new();
    let retry = Retry {
        max_backoff: settings.pipeline.max_backoff,
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let caches = tokio::select! {
        caches = connect_caches(&settings, &retry) => caches?,
        () = shutdown.cancelled() => return Ok(()),
    };
    // Every replica folds the live version recorded in the cache; a newer
    // version in the files is rebuilt beside it.
    let catalog = Catalog::new(
        Arc::new(settings.clone()),
        registry.clone(),
        caches.clone(),
        &files,
    );
    let definitions = tokio::select! {
        live = retry.run("cache", || catalog.settle(files.clone())) => live.context("projection versions")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let projections: BTreeMap<String, Served> = definitions
        .iter()
        .map(|definition| {
            let served = Served {
                cache: definition.cache.clone(),
                topics: definition.topics.iter().cloned().collect(),
            };
            (definition.name.clone(), served)
        })
        .collect();
    // A pause survives restarts: in force before the first record is applied.
    let cache_of: BTreeMap<String, String> = definitions
        .iter()
        .map(|definition| (definition.name.clone(), definition.cache.clone()))
        .collect();
    let group = &settings.kafka.group_id;
    let pauses = tokio::select! {
        pauses = retry.run("cache", || load_pauses(&caches, &cache_of, group)) => pauses?,
        () = shutdown.cancelled() => return Ok(()),
    };
    health.progress().set_pauses(pauses);
    let router = Router::new(definitions, &caches);
    let topics = router.topics();

    let serving = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("server.listen = {}: cannot listen", settings.server.listen))?;
    let address = listener.local_addr()?;
    // Bound before anything serves: a port taken fails the start with
    // nothing left running. An admin.listen equal to server.listen (`dev`,
    // which has no Service to keep it from) serves both on one listener.
    let admin_beside_http = settings.admin.listen == Some(settings.server.listen);
    let admin_listener = match settings.admin.listen {
        Some(listen) if !admin_beside_http => Some(
            tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("admin.listen = {listen}: cannot listen"))?,
        ),
        _ => None,
    };
    let app_state = AppState {
        metrics: metrics.clone(),
        health: health.clone(),
        caches: caches.clone(),
        projections,
        group: settings.kafka.group_id.clone(),
        admin_token: settings.admin.token.clone(),
        dead_letters: settings.kafka.dead_letter_topic.as_ref().map(|topic| {
            Arc::new(DeadLetterTopic {
                kafka: settings.kafka.clone(),
                topic: topic.clone(),
                router: router.clone(),
                envelope: settings.envelope.clone(),
                pipeline: settings.pipeline.clone(),
                busy: Arc::default(),
                stop: shutdown.clone(),
            })
        }),
        rebuilds: Some(catalog.clone()),
    };
    let names: Vec<&str> = app_state.projections.keys().map(String::as_str).collect();
    let cache_names: Vec<&str> = caches.keys().map(String::as_str).collect();
    metrics.prepare(&names, &cache_names, &topics);
    let mut app = http::router(app_state.clone());
    if admin_beside_http {
        app = app.merge(admin::router(app_state.clone()));
    }
    let server = tokio::spawn({
        let serving = serving.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(serving.cancelled_owned())
                .await
        }
    });
    info!(%address, "http listening");
    let admin = match admin_listener {
        Some(listener) => Some(serve_admin(listener, app_state.clone(), serving.clone())?),
        None => None,
    };
    let pause_watcher = tokio::spawn(watch_pauses(
        health.progress().clone(),
        caches.clone(),
        cache_of,
        settings.kafka.group_id.clone(),
        serving.clone(),
    ));
    let reporter = tokio::spawn(report_status(app_state, serving.clone()));

    let fetching = shutdown.child_token();
    let (source, deliveries) = KafkaSource::start(
        &settings.kafka,
        &settings.pipeline,
        &topics,
        health.clone(),
        metrics.clone(),
        fetching.clone(),
    )?;
    let dead_letters: Option<Arc<dyn DeadLetters>> = match &settings.kafka.dead_letter_topic {
        Some(topic) => Some(Arc::new(KafkaDeadLetters::new(
            &settings.kafka,
            topic,
            metrics.clone(),
        )?)),
        None => None,
    };
    let mut pipeline = Pipeline::new(Wiring {
        router,
        envelope: settings.envelope.clone(),
        metrics: metrics.clone(),
        retry,
        source: source.control(),
        dead_letters,
        group: settings.kafka.group_id.clone(),
        positioning: Positioning::Seek,
        catalog: Some(catalog.clone()),
        bound: None,
    });
    let mut processing = tokio::spawn(async move { pipeline.run(deliveries).await });
    let shadows = tokio::spawn(rebuild::runner::run(catalog, fetching.clone()));

    let stopped_early = tokio::select! {
        finished = &mut processing => Some(finished),
        () = shutdown.cancelled() => None,
    };
    // The one shutdown path, whichever way we got here.
    fetching.cancel();
    let finished = match stopped_early {
        Some(finished) => Some(finished),
        None => {
            info!(
                timeout_secs = settings.pipeline.drain_timeout.as_secs(),
                "shutting down: draining"
            );
            let drained =
                tokio::time::timeout(settings.pipeline.drain_timeout, &mut processing).await;
            if drained.is_err() {
                warn!(
                    "drain timeout passed; abandoning the batch in flight (it will be read again)"
                );
                processing.abort();
            }
            drained.ok()
        }
    };
    // A batch abandoned at the deadline is no failure: its offsets were not committed.
    let outcome = match finished {
        Some(joined) => joined
            .map_err(anyhow::Error::from)
            .and_then(|result| result.map_err(anyhow::Error::from)),
        None => Ok(()),
    };
    // The shadow builds stop with the fetching; each finishes its batch.
    let _ = shadows.await;
    tokio::task::spawn_blocking(move || source.close()).await?;
    serving.cancel();
    reporter.abort();
    pause_watcher.abort();
    server.await??;
    if let Some(admin) = admin {
        admin.await??;
    }
    if let Err(error) = &outcome {
        error!(%error, "pipeline stopped");
        bail!("pipeline stopped: {error:#}");
    }
    info!("stopped");
    Ok(())
}

/// Refresh the gauges nobody else sets on their own schedule: cache health,
/// readiness, the heartbeat and each projection's state (from its lag).
async fn report_status(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let down = http::readiness(&state).await;
        let metrics = &state.metrics;
        metrics.ready.set(i64::from(down.is_empty()));
        metrics
            .heartbeat_timestamp
            .set(state.health.heartbeat_unix_secs());
        for status in admin::statuses(&state) {
            let current = status.state.as_str();
            for candidate in PROJECTION_STATES {
                metrics
                    .projection_state
                    .with_label_values(&[status.name.as_str(), candidate])
                    .set(i64::from(candidate == current));
            }
        }
        if let Some(catalog) = &state.rebuilds {
            rebuild::progress::publish(catalog, metrics).await;
        }
    }
}

/// Serve the admin API on its own listener until `serving` is cancelled.
fn serve_admin(
    listener: tokio::net::TcpListener,
    state: AppState,
    serving: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let address = listener.local_addr()?;
    let mutations = if state.admin_token.is_some() {
        "token"
    } else {
        "refused"
    };
    info!(%address, mutations, "admin api listening");
    let app = admin::router(state);
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(serving.cancelled_owned())
            .await
    }))
}
