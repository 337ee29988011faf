//! Which version of each projection is live, and its definition: read from
//! and written to the projection's cache, so every replica agrees.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::state::{Role, Shadow, State, definition_key, state_key};
use crate::cache::{Cache, CacheError, Partition};
use crate::config::Settings;
use crate::pipeline::Router;
use crate::projection::{self, Definition};
use crate::projector::Registry;
use crate::source::SourceError;
use crate::source::kafka::partitions_of;

/// How long a projection's partitions, once read, are taken as they were.
const PARTITIONS_TTL: Duration = Duration::from_secs(60);

/// Why a projection's versions could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The broker did not say which partitions a projection's topics have.
    #[error(transparent)]
    Broker(#[from] SourceError),
    /// Permanent: the stored state or definition cannot be used.
    #[error("projection {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Cache(error) => error.is_transient(),
            CatalogError::Broker(error) => error.is_transient(),
            CatalogError::Invalid { .. } => false,
        }
    }

    fn invalid(name: &str, reason: impl Into<String>) -> CatalogError {
        CatalogError::Invalid {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The projections' versions in their caches, and what it takes to compile
/// a stored definition.
#[derive(Clone)]
pub struct Catalog {
    pub group: String,
    settings: Arc<Settings>,
    registry: Registry,
    caches: BTreeMap<String, Arc<dyn Cache>>,
    /// Each projection's cache and topics, from the definition files (a
    /// version may change neither).
    cache_of: BTreeMap<String, String>,
    topics_of: BTreeMap<String, Vec<String>>,
    /// Each projection's partitions as last read from the broker, and when:
    /// the status reporter and `watch` ask every few seconds.
    partitions: Arc<Mutex<BTreeMap<String, ReadPartitions>>>,
}

/// A projection's partitions, and when the broker said so.
type ReadPartitions = (Instant, Vec<Partition>);

impl Catalog {
    pub fn new(
        settings: Arc<Settings>,
        registry: Registry,
        caches: BTreeMap<String, Arc<dyn Cache>>,
        files: &[Definition],
    ) -> Catalog {
        Catalog {
            group: settings.kafka.group_id.clone(),
            cache_of: files
                .iter()
                .map(|definition| (definition.name.clone(), definition.cache.clone()))
                .collect(),
            topics_of: files
                .iter()
                .map(|definition| {
                    let topics = definition.topics.iter().cloned().collect();
                    (definition.name.clone(), topics)
                })
                .collect(),
            partitions: Arc::default(),
            settings,
            registry,
            caches,
        }
    }

    /// The projections this replica knows, by name, with their caches.
    pub fn names(&self) -> impl Iterator<Item = (&String, &String)> {
        self.cache_of.iter()
    }

    pub fn cache(&self, name: &str) -> Result<&Arc<dyn Cache>, CatalogError> {
        self.cache_of
            .get(name)
            .and_then(|cache| self.caches.get(cache))
            .ok_or_else(|| CatalogError::invalid(name, "no such projection here"))
    }

    pub fn cache_name(&self, name: &str) -> Option<&str> {
        self.cache_of.get(name).map(String::as_str)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every partition of `name`'s topics, read from the broker at most once
    /// per [`PARTITIONS_TTL`] (a topic may gain partitions).
    pub async fn partitions(&self, name: &str) -> Result<Vec<Partition>, CatalogError> {
        let known = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        if let Some((read, partitions)) = known
            && read.elapsed() < PARTITIONS_TTL
        {
            return Ok(partitions);
        }
        let topics = self
            .topics_of
            .get(name)
            .cloned()
            .ok_or_else(|| CatalogError::invalid(name, "no such projection here"))?;
        let kafka = self.settings.kafka.clone();
        let found = tokio::task::spawn_blocking(move || partitions_of(&kafka, &topics))
            .await
            .map_err(|joined| {
                CatalogError::invalid(name, format!("metadata reader: {joined}"))
            })??;
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// `name`'s state, `None` before it was ever settled.
    pub async fn state(&self, name: &str) -> Result<Option<State>, CatalogError> {
        let text = self
            .cache(name)?
            .note(&state_key(&self.group, name))
            .await?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| {
                CatalogError::invalid(name, format!("stored rebuild state {text:?}: {error}"))
            })
        })
        .transpose()
    }

    pub async fn write_state(&self, name: &str, state: &State) -> Result<(), CatalogError> {
        let text = serde_json::to_string(state).expect("a state serializes");
        self.cache(name)?
            .set_note(&state_key(&self.group, name), Some(&text))
            .await?;
        Ok(())
    }

    /// Keep `definition`'s text as its version's.
    pub async fn store(&self, definition: &Definition) -> Result<(), CatalogError> {
        let key = definition_key(&self.group, &definition.name, definition.version);
        self.cache(&definition.name)?
            .set_note(&key, Some(&definition.text))
            .await?;
        Ok(())
    }

    /// Version `version` of `name`, compiled from its stored text.
    pub async fn load(&self, name: &str, version: u32) -> Result<Definition, CatalogError> {
        let key = definition_key(&self.group, name, version);
        let text = self.cache(name)?.note(&key).await?.ok_or_else(|| {
            CatalogError::invalid(
                name,
                format!("version {version} is not stored (no note {key:?})"),
            )
        })?;
        let origin = PathBuf::from(format!("{key} (stored)"));
        projection::load_text(&text, &origin, &self.settings, &self.registry)
            .map_err(|errors| CatalogError::invalid(name, errors.join("; ")))
    }

    /// `router` with every route folding its projection's live version.
    pub async fn live_router(&self, router: &Router) -> Result<Router, CatalogError> {
        let mut live = router.clone();
        for index in 0..router.len() {
            let definition = &router.route(index).definition;
            let Some(state) = self.state(&definition.name).await? else {
                continue;
            };
            if state.live != definition.version {
                live.replace(index, self.load(&definition.name, state.live).await?);
            }
        }
        Ok(live)
    }

    /// The live definitions, given this replica's files: a projection seen for
    /// the first time goes live with its file; one whose file holds a newer
    /// version than the live one stays on the live version, and the file's
    /// version is built as a candidate beside it.
    pub async fn settle(&self, files: Vec<Definition>) -> Result<Vec<Definition>, CatalogError> {
        let mut live = Vec::with_capacity(files.len());
        for file in files {
            let name = file.name.clone();
            let Some(mut state) = self.state(&name).await? else {
                self.store(&file).await?;
                let state = State {
                    live: file.version,
                    shadow: None,
                };
                self.write_state(&name, &state).await?;
                live.push(file);
                continue;
            };
            if state.live == file.version {
                // The same version edited in place (a fix without a rebuild)
                // folds from here on as edited, as it did before versions.
                self.store(&file).await?;
                live.push(file);
                continue;
            }
            let running = self.load(&name, state.live).await?;
            check_compatible(&running, &file)?;
            if file.version > state.live
                && state
                    .shadow
                    .as_ref()
                    .is_none_or(|shadow| shadow.version != file.version)
            {
                if state.shadow.as_ref().is_some_and(|shadow| shadow.promoting) {
                    warn!(projection = %name, "a promotion is under way; the new version waits for the next start");
                } else {
                    self.store(&file).await?;
                    state.shadow = Some(Shadow {
                        version: file.version,
                        role: Role::Candidate,
                        build: chrono::Utc::now().timestamp_millis(),
                        promoting: false,
                        outgoing: None,
                        rotating: false,
                        from_ms: None,
                    });
                    self.write_state(&name, &state).await?;
                    info!(projection = %name, live = state.live, candidate = file.version, "new version: rebuilding it beside the live one");
                }
            } else if file.version < state.live {
                warn!(projection = %name, file = file.version, live = state.live, "the files hold an older version than the live one; folding with the live one");
            }
            live.push(running);
        }
        Ok(live)
    }
}

/// A version may change how a projection folds, not where it lives or what
/// it reads: the daemon subscribes to its topics once, at start.
pub fn check_compatible(live: &Definition, next: &Definition) -> Result<(), CatalogError> {
    if live.cache != next.cache {
        return Err(CatalogError::invalid(
            &next.name,
            format!(
                "version {} moves it from cache {:?} to {:?}; a new version keeps its cache",
                next.version, live.cache, next.cache
            ),
        ));
    }
    if live.topics != next.topics {
        return Err(CatalogError::invalid(
            &next.name,
            format!(
                "version {} reads topics {:?} instead of {:?}; a new version keeps its topics (give it a new name to read others)",
                next.version, next.topics, live.topics
            ),
        ));
    }
    Ok(())
}
