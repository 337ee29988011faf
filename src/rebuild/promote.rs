//! Promotion, rollback, starting and collecting a shadow (see the module
//! docs of [`super`] for why each step is where it is).

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::info;

use super::catalog::{Catalog, CatalogError};
use super::progress::{Progress, measure};
use super::state::{Role, Shadow, State, live_key_of};
use crate::cache::{
    Advance, Cache, Commit, KEY_SEPARATOR, Partition, RotateWhen, Rotation, WriteOp,
    checkpoint_scope,
};
use crate::source::kafka::commit_offsets;

/// How often a promotion looks whether the shadow reached the live version.
const LEVEL_POLL: Duration = Duration::from_millis(100);

/// What a promotion did.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    pub live: u32,
    pub previous: u32,
    /// Live keys the new version replaced or created.
    pub replaced: usize,
    /// Live keys only the old version had: moved to its keyspace.
    pub retired: usize,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn invalid(name: &str, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

async fn settled(catalog: &Catalog, name: &str) -> Result<State, CatalogError> {
    catalog.state(name).await?.ok_or_else(|| {
        invalid(
            name,
            "no live version is recorded yet (the daemon has not started with it)",
        )
    })
}

/// Build the live version again (a fix in a Rust projector, a changed TTL
/// rule): a candidate of the same version, from the start of its topics or,
/// with `from`, from the offsets (one per partition of `partitions`) of the
/// first records at a time.
pub async fn start(
    catalog: &Catalog,
    name: &str,
    from: Option<(i64, Vec<i64>)>,
    partitions: &[Partition],
) -> Result<Shadow, CatalogError> {
    let mut state = settled(catalog, name).await?;
    match &state.shadow {
        Some(shadow) if shadow.role == Role::Candidate => {
            return Err(invalid(
                name,
                format!("version {} is being rebuilt already", shadow.version),
            ));
        }
        Some(shadow) => {
            return Err(invalid(
                name,
                format!(
                    "version {} is kept for a rollback; collect it first (projectionist rebuild {name} collect)",
                    shadow.version
                ),
            ));
        }
        None => {}
    }
    let shadow = Shadow {
        version: state.live,
        role: Role::Candidate,
        build: now_ms(),
        promoting: false,
        outgoing: None,
        rotating: false,
        from_ms: from.as_ref().map(|(time, _)| *time),
    };
    if let Some((_, offsets)) = &from {
        // Placed before the state names the build, so its first claim
        // finds where to begin.
        let positions: Vec<Option<i64>> = offsets.iter().copied().map(Some).collect();
        place_checkpoint(catalog, name, &shadow, &positions, partitions).await?;
    }
    state.shadow = Some(shadow.clone());
    catalog.write_state(name, &state).await?;
    info!(projection = %name, version = shadow.version, from_ms = ?shadow.from_ms, "rebuild started");
    Ok(shadow)
}

/// Promote `name`'s shadow (a candidate, or the previous version: a
/// rollback) over `partitions` (every partition of its topics), waiting up
/// to `wait` for it to reach the live version once the live writers hold.
pub async fn promote(
    catalog: &Catalog,
    name: &str,
    partitions: &[Partition],
    wait: Duration,
) -> Result<Promoted, CatalogError> {
    let mut state = settled(catalog, name).await?;
    let Some(mut shadow) = state.shadow.clone() else {
        return Err(invalid(
            name,
            "there is no rebuilt version to promote or roll back to",
        ));
    };
    let cache = catalog.cache(name)?.clone();
    let cache_name = catalog.cache_name(name).unwrap_or_default().to_owned();
    let live_scope = checkpoint_scope(&catalog.group, &cache_name);
    // 1. Hold the live writers: from the generation's advance on, nothing
    //    folded with the old definition lands; on a cluster, not in any slot
    //    either. A batch that landed in some slots before the hold and not
    //    yet in the checkpoint would be left half under the old definition:
    //    then the writers go on, finish it, and the hold is tried again.
    let deadline = Instant::now() + wait;
    loop {
        if !shadow.promoting {
            shadow.promoting = true;
            shadow.outgoing = Some(now_ms());
            state.shadow = Some(shadow.clone());
            catalog.write_state(name, &state).await?;
        }
        let generation = cache.advance_generation(&live_scope).await?;
        let mut live = Vec::with_capacity(partitions.len());
        for partition in partitions {
            live.push((
                partition.clone(),
                cache.applied(&live_scope, partition).await?,
            ));
        }
        if cache.fence_slots(&live_scope, generation, &live).await? {
            break;
        }
        if shadow.rotating || Instant::now() >= deadline {
            return Err(invalid(
                name,
                "a live batch kept landing slot by slot past the checkpoint; try again",
            ));
        }
        info!(projection = %name, "promotion: a live batch is half landed; letting it finish");
        shadow.promoting = false;
        shadow.outgoing = None;
        state.shadow = Some(shadow.clone());
        catalog.write_state(name, &state).await?;
        tokio::time::sleep(LEVEL_POLL * 2).await;
    }
    info!(projection = %name, version = shadow.version, "promotion: live writers hold");
    // 2. Wait for the shadow to stand exactly where the live version stands.
    let left = deadline.saturating_duration_since(Instant::now());
    let progress = match wait_level(catalog, name, &shadow, partitions, left).await {
        Ok(progress) => progress,
        Err(error) => {
            if !shadow.rotating {
                shadow.promoting = false;
                shadow.outgoing = None;
                state.shadow = Some(shadow);
                catalog.write_state(name, &state).await?;
            }
            return Err(error);
        }
    };
    // Its build stops here: whatever it would still write is past the swap.
    let incoming_scope = shadow.scope(&catalog.group, name, &cache_name);
    let fenced = cache.advance_generation(&incoming_scope).await?;
    cache.fence_slots(&incoming_scope, fenced, &[]).await?;
    let outgoing = Shadow {
        version: state.live,
        role: Role::Previous,
        build: shadow.outgoing.unwrap_or_else(now_ms),
        promoting: false,
        outgoing: None,
        rotating: false,
        from_ms: None,
    };
    let group = &catalog.group;
    let incoming_prefix = shadow.prefix(group, name);
    let outgoing_prefix = outgoing.prefix(group, name);
    let rotation = |live: &str| Rotation {
        live: live.to_owned(),
        incoming: super::state::shadow_key(&incoming_prefix, live),
        outgoing: super::state::shadow_key(&outgoing_prefix, live),
    };
    // 3. Retire the live keys the new version does not have, then move every
    //    new value in: a key both versions have is never missing.
    let mut retired = 0;
    if !shadow.rotating {
        let live_prefix = format!("{name}{KEY_SEPARATOR}");
        retired = rotate_all(
            cache.as_ref(),
            &live_prefix,
            RotateWhen::IncomingAbsent,
            |key| Some(rotation(key)),
        )
        .await?;
        shadow.rotating = true;
        state.shadow = Some(shadow.clone());
        catalog.write_state(name, &state).await?;
    }
    let replaced = rotate_all(
        cache.as_ref(),
        &incoming_prefix,
        RotateWhen::IncomingPresent,
        |key| live_key_of(&incoming_prefix, key).map(rotation),
    )
    .await?;
    // 4. The previous version goes on from the live checkpoint, for a rollback.
    let live: Vec<Option<i64>> = progress
        .partitions
        .iter()
        .map(|standing| standing.live)
        .collect();
    // On a cluster, slots keep marks of how far their keys stand; every key
    // of both keyspaces now stands exactly at the live checkpoint.
    let positions: Vec<(Partition, Option<i64>)> = partitions
        .iter()
        .cloned()
        .zip(live.iter().copied())
        .collect();
    cache.mark_slots(&live_scope, &positions).await?;
    cache
        .mark_slots(&outgoing.scope(group, name, &cache_name), &positions)
        .await?;
    place_checkpoint(catalog, name, &outgoing, &live, partitions).await?;
    // 5. The new version is live: the held writers load it and fold again.
    let promoted = Promoted {
        live: shadow.version,
        previous: state.live,
        replaced,
        retired,
    };
    catalog
        .write_state(
            name,
            &State {
                live: shadow.version,
                shadow: Some(outgoing),
            },
        )
        .await?;
    info!(projection = %name, live = promoted.live, previous = promoted.previous, replaced, retired, "promoted");
    Ok(promoted)
}

async fn wait_level(
    catalog: &Catalog,
    name: &str,
    shadow: &Shadow,
    partitions: &[Partition],
    wait: Duration,
) -> Result<Progress, CatalogError> {
    let started = Instant::now();
    loop {
        let progress = measure(catalog, name, shadow, partitions).await?;
        if progress.level() {
            return Ok(progress);
        }
        if started.elapsed() >= wait {
            return Err(invalid(
                name,
                format!(
                    "version {} did not reach the live version within {wait:?} ({} records behind); the live version goes on, try again when it has caught up",
                    shadow.version, progress.remaining
                ),
            ));
        }
        tokio::time::sleep(LEVEL_POLL).await;
    }
}

/// Rotate every key listed under `prefix`, a page per atomic script.
async fn rotate_all(
    cache: &dyn Cache,
    prefix: &str,
    when: RotateWhen,
    rotation: impl Fn(&str) -> Option<Rotation>,
) -> Result<usize, CatalogError> {
    let mut moved = 0;
    let mut cursor = None;
    loop {
        let (keys, next) = cache.keys_with_prefix(prefix, cursor).await?;
        let rotations: Vec<Rotation> = keys.iter().filter_map(|key| rotation(key)).collect();
        moved += cache.rotate(&rotations, when).await?;
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(moved),
        }
    }
}

/// Make `shadow`'s checkpoint stand at `positions` (one per partition;
/// `None` leaves a partition as it is), and its consumer group's offsets
/// with it, so its consumer starts right there.
async fn place_checkpoint(
    catalog: &Catalog,
    name: &str,
    shadow: &Shadow,
    positions: &[Option<i64>],
    partitions: &[Partition],
) -> Result<(), CatalogError> {
    let cache = catalog.cache(name)?;
    let cache_name = catalog.cache_name(name).unwrap_or_default();
    let scope = shadow.scope(&catalog.group, name, cache_name);
    let scope = scope.as_str();
    let claims = cache.claim(scope, partitions).await?;
    let advances: Vec<Advance> = partitions
        .iter()
        .zip(claims)
        .zip(positions)
        .filter_map(|((partition, claim), position)| {
            Some(Advance {
                partition: partition.clone(),
                epoch: claim.epoch,
                from: claim.next,
                to: (*position)?,
            })
        })
        .collect();
    let commit = Commit {
        scope,
        advances: &advances,
        expected: &[],
        writes: &[],
        generation: 0,
    };
    cache.commit(commit).await?;
    let kafka = catalog.settings().kafka.clone();
    let group = shadow.group(&catalog.group, name);
    let offsets: Vec<(Partition, i64)> = partitions
        .iter()
        .zip(positions)
        .filter_map(|(partition, position)| Some((partition.clone(), (*position)?)))
        .collect();
    tokio::task::spawn_blocking(move || commit_offsets(&kafka, &group, &offsets))
        .await
        .map_err(|joined| invalid(name, format!("offset writer: {joined}")))?
        .map_err(|failure| invalid(name, failure.to_string()))
}

/// Drop `name`'s shadow: a candidate (the rebuild is cancelled) or the
/// previous version (no rollback after this). Its checkpoint scope is
/// fenced first, so no replica's build writes another key; then its keys are
/// removed. Returns how many went.
pub async fn collect(catalog: &Catalog, name: &str) -> Result<usize, CatalogError> {
    let mut state = settled(catalog, name).await?;
    let Some(shadow) = state.shadow.take() else {
        return Err(invalid(name, "there is no shadow to collect"));
    };
    if shadow.promoting {
        return Err(invalid(
            name,
            "a promotion is under way; promote again to finish it",
        ));
    }
    catalog.write_state(name, &state).await?;
    let cache = catalog.cache(name)?;
    let cache_name = catalog.cache_name(name).unwrap_or_default();
    cache
        .advance_generation(&shadow.scope(&catalog.group, name, cache_name))
        .await?;
    let prefix = shadow.prefix(&catalog.group, name);
    let mut removed = 0;
    let mut cursor = None;
    loop {
        let (keys, next) = cache.keys_with_prefix(&prefix, cursor).await?;
        removed += keys.len();
        let deletes: Vec<WriteOp> = keys
            .into_iter()
            .map(|key| WriteOp::Delete { key })
            .collect();
        if !deletes.is_empty() {
            cache.apply(&deletes).await?;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    info!(projection = %name, version = shadow.version, removed, "shadow collected");
    Ok(removed)
}
