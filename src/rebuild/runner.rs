//! Each replica's share of the shadow builds: every second it reads the
//! rebuild states of its projections and starts or stops one consumer per
//! shadow. The consumers of one shadow form a group of their own, so the
//! replicas split its partitions as they split the live ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::catalog::Catalog;
use super::shadow::ShadowCache;
use super::state::Shadow;
use crate::cache::{Cache, checkpoint_scope};
use crate::config::StartFrom;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Bound, Pipeline, PipelineError, Positioning, Retry, Router, Wiring};
use crate::source::kafka::KafkaSource;

/// How often the rebuild states are read.
const POLL: Duration = Duration::from_secs(1);

/// One running shadow build on this replica.
struct Build {
    shadow: Shadow,
    fetching: CancellationToken,
    source: KafkaSource,
    task: JoinHandle<Result<(), PipelineError>>,
}

/// Run this replica's shadow builds until `stop` is cancelled.
pub async fn run(catalog: Catalog, stop: CancellationToken) {
    let mut builds: BTreeMap<String, Build> = BTreeMap::new();
    let names: Vec<String> = catalog.names().map(|(name, _)| name.clone()).collect();
    loop {
        for name in &names {
            let wanted = match catalog.state(name).await {
                Ok(state) => state.and_then(|state| state.shadow),
                Err(error) => {
                    warn!(projection = %name, %error, "cannot read the rebuild state; asking again");
                    continue;
                }
            };
            let running = builds.get(name).map(|build| build.shadow.build);
            if running.is_some()
                && running != wanted.as_ref().map(|shadow| shadow.build)
                && let Some(build) = builds.remove(name)
            {
                finish(name, build).await;
            }
            if let Some(shadow) = wanted
                && !builds.contains_key(name)
            {
                match start(&catalog, name, shadow).await {
                    Ok(build) => {
                        builds.insert(name.clone(), build);
                    }
                    Err(error) => {
                        warn!(projection = %name, %error, "cannot start the shadow build; trying again");
                    }
                }
            }
        }
        // A build that stopped by itself failed: start it again next time.
        let failed: Vec<String> = builds
            .iter()
            .filter(|(_, build)| build.task.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in failed {
            if let Some(build) = builds.remove(&name) {
                finish(&name, build).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => break,
        }
    }
    for (name, build) in builds {
        finish(&name, build).await;
    }
}

/// Start folding `shadow` of projection `name` on this replica.
async fn start(catalog: &Catalog, name: &str, shadow: Shadow) -> anyhow::Result<Build> {
    let definition = catalog.load(name, shadow.version).await?;
    let live: Arc<dyn Cache> = Arc::clone(catalog.cache(name)?);
    let cache_name = definition.cache.clone();
    let keyspace: Arc<dyn Cache> = Arc::new(ShadowCache::new(
        Arc::clone(&live),
        shadow.prefix(&catalog.group, name),
    ));
    let topics: Vec<String> = definition.topics.iter().cloned().collect();
    let router = Router::new(
        vec![definition],
        &BTreeMap::from([(cache_name.clone(), keyspace)]),
    );
    let settings = catalog.settings();
    let group = shadow.group(&catalog.group, name);
    let mut kafka = settings.kafka.clone();
    kafka.group_id = group.clone();
    // A new build reads from the start of its topics; the checkpoint in the
    // cache decides where it resumes after that.
    kafka.start_from = StartFrom::Earliest;
    kafka.instance_id = None;
    // Its own health and metrics: the daemon's readiness and figures are
    // the live version's.
    let health = Health::new();
    let metrics = Metrics::new();
    let fetching = CancellationToken::new();
    let (source, deliveries) = KafkaSource::start(
        &kafka,
        &settings.pipeline,
        &topics,
        health.clone(),
        metrics.clone(),
        fetching.clone(),
    )?;
    let mut pipeline = Pipeline::new(Wiring {
        router,
        envelope: settings.envelope.clone(),
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: settings.pipeline.max_backoff,
            metrics,
            health,
        },
        source: source.control(),
        // The live version letters what fails; a shadow only folds.
        dead_letters: None,
        group,
        positioning: Positioning::Seek,
        catalog: None,
        bound: Some(Bound {
            cache: live,
            scope: checkpoint_scope(&catalog.group, &cache_name),
            share: settings.pipeline.rebuild_share,
        }),
    });
    info!(projection = %name, version = shadow.version, role = ?shadow.role, build = shadow.build, "shadow build started");
    let task = tokio::spawn(async move { pipeline.run(deliveries).await });
    Ok(Build {
        shadow,
        fetching,
        source,
        task,
    })
}

/// Stop a build: stop fetching, let the batch in hand finish, close.
async fn finish(name: &str, build: Build) {
    build.fetching.cancel();
    let mut task = build.task;
    match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
        Ok(Ok(Err(PipelineError::Retired(_)))) => {}
        Ok(Ok(Err(error))) => warn!(projection = %name, %error, "shadow build failed"),
        Ok(_) => {}
        Err(_) => task.abort(),
    }
    let source = build.source;
    let _ = tokio::task::spawn_blocking(move || source.close()).await;
    info!(projection = %name, build = build.shadow.build, "shadow build stopped");
}
