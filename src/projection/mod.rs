//! Projection definitions: one TOML file per projection in the projections folder.
//!
//! A definition says which events a projection consumes, how its identifier is
//! taken from an event, which cache it lives in, for how long, and what folds
//! it: a registered Rust projector (`projector = "name"`) or declarative
//! `[[handler]]` tables, exactly one of the two. Loading validates everything
//! against the registry and the configured caches, and compiles the handlers,
//! reporting every mistake with its file and projection.

mod identifier;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::cache::Expiry;
use crate::config::{ConfigError, RawScalar, Settings};
use crate::projector::declarative::{self, HandlerSpec};
use crate::projector::{Projector, Registry};

pub use identifier::Template;

/// A validated projection definition.
#[derive(Clone)]
pub struct Definition {
    /// The key prefix: keys are `{name}:::{identifier}`.
    pub name: String,
    /// Which version of the projection this is (`version`, 1 when absent): a
    /// new version is rebuilt beside the live one before it replaces it.
    pub version: u32,
    /// Whether the TTL counts from the newest event's time instead of from
    /// the write (`ttl_from = "event"`): a rebuild then does not bring back
    /// projections that had expired.
    pub ttl_from_event: bool,
    /// The definition's TOML text: stored with the live version, so every
    /// replica folds with the same definition whatever its files say.
    pub text: Arc<str>,
    pub cache: String,
    pub expiry: Expiry,
    pub topics: BTreeSet<String>,
    pub event_types: BTreeSet<String>,
    pub identifier: Template,
    pub projector_name: String,
    pub projector: Arc<dyn Projector>,
    /// The file it came from, for messages.
    pub file: PathBuf,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("cache", &self.cache)
            .field("expiry", &self.expiry)
            .field("topics", &self.topics)
            .field("event_types", &self.event_types)
            .field("identifier", &self.identifier.as_str())
            .field("projector", &self.projector_name)
            .finish()
    }
}

impl Definition {
    pub fn consumes(&self, topic: &str, event_type: &str) -> bool {
        self.topics.contains(topic) && self.event_types.contains(event_type)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    name: String,
    version: Option<i64>,
    /// `"write"` (the default: a sliding TTL) or `"event"`.
    ttl_from: Option<String>,
    cache: Option<String>,
    /// Seconds, or `"never"`; absent = the cache's TTL.
    ttl: Option<RawScalar>,
    topics: Vec<String>,
    /// Required with `projector`; with handlers it is derived from their `on`.
    event_types: Option<Vec<String>>,
    identifier: String,
    projector: Option<String>,
    #[serde(default)]
    handler: Vec<HandlerSpec>,
}

/// Load every `*.toml` file of `settings.projections_dir`, sorted by file name.
pub fn load_dir(settings: &Settings, registry: &Registry) -> Result<Vec<Definition>, ConfigError> {
    let dir = &settings.projections_dir;
    let files = definition_files(dir).map_err(|error| {
        ConfigError::one(format!(
            "{}: cannot read the projections folder: {error}",
            dir.display()
        ))
    })?;
    let mut errors = Vec::new();
    let mut definitions: Vec<Definition> = Vec::new();
    for file in &files {
        match load_file(file, settings, registry) {
            Ok(definition) => definitions.push(definition),
            Err(mut file_errors) => errors.append(&mut file_errors),
        }
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for definition in &definitions {
        if let Some(first) = seen.insert(&definition.name, &definition.file) {
            errors.push(format!(
                "{}: projection {:?} is already defined in {}",
                definition.file.display(),
                definition.name,
                first.display()
            ));
        }
    }
    if files.is_empty() {
        errors.push(format!(
            "{}: no projection definitions (*.toml) found",
            dir.display()
        ));
    }
    if errors.is_empty() {
        Ok(definitions)
    } else {
        Err(ConfigError { errors })
    }
}

/// The definition files of `dir`: its `*.toml` files, sorted by name.
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Load and validate one definition file.
pub fn load_file(
    file: &Path,
    settings: &Settings,
    registry: &Registry,
) -> Result<Definition, Vec<String>> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|error| vec![format!("{shown}: {error}")])?;
    load_text(&text, file, settings, registry)
}

/// Load and validate a definition from its TOML `text`; `origin` names it in
/// messages (its file, or where a stored version came from).
pub fn load_text(
    text: &str,
    origin: &Path,
    settings: &Settings,
    registry: &Registry,
) -> Result<Definition, Vec<String>> {
    let file = origin;
    let shown = origin.display().to_string();
    let raw: RawDefinition = toml::from_str(text)
        .map_err(|error| vec![format!("{shown}: {}", error.to_string().trim_end())])?;
    let mut errors = Vec::new();
    let name = raw.name.clone();
    let mut fail =
        |message: String| errors.push(format!("{shown}: projection {name:?}: {message}"));
    let name_is_valid = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_is_valid {
        fail("name must be snake_case (a-z, 0-9, _), since it is the key prefix".to_owned());
    }
    let cache = raw.cache.unwrap_or_else(|| "default".to_owned());
    if !settings.caches.contains_key(&cache) {
        let known: Vec<&str> = settings.caches.keys().map(String::as_str).collect();
        fail(format!(
            "cache = {cache:?} is not configured (caches: {})",
            known.join(", ")
        ));
    }
    let expiry = match &raw.ttl {
        None => Expiry::CacheDefault,
        Some(RawScalar::Text(text)) if text.trim() == "never" => Expiry::Never,
        Some(value) => match value.to_ttl() {
            Some(ttl) => Expiry::After(ttl),
            None => {
                fail(format!(
                    "ttl = {value} is not a positive number of seconds or \"never\""
                ));
                Expiry::CacheDefault
            }
        },
    };
    let version = match raw.version {
        None => 1,
        Some(version) => u32::try_from(version)
            .ok()
            .filter(|&version| version >= 1)
            .unwrap_or_else(|| {
                fail(format!(
                    "version = {version} is not a whole number from 1 up"
                ));
                1
            }),
    };
    let ttl_from_event = match raw.ttl_from.as_deref() {
        None | Some("write") => false,
        Some("event") => {
            if matches!(expiry, Expiry::Never) {
                fail("ttl_from = \"event\" needs a ttl: \"never\" has nothing to count".to_owned());
            }
            true
        }
        Some(other) => {
            fail(format!(
                "ttl_from = {other:?} is not \"write\" or \"event\""
            ));
            false
        }
    };
    // Counted from the event, the cache's TTL is this projection's own.
    let expiry = match (expiry, settings.caches.get(&cache)) {
        (Expiry::CacheDefault, Some(cache)) if ttl_from_event => Expiry::After(cache.ttl),
        (expiry, _) => expiry,
    };
    if raw.topics.is_empty() {
        fail("topics is empty: name the Kafka topics it consumes".to_owned());
    }
    let identifier = Template::parse(&raw.identifier)
        .map_err(|error| fail(format!("identifier: {error}")))
        .ok();
    let folding = match (&raw.projector, raw.handler.is_empty()) {
        (Some(name), true) => {
            rust_projector(name, raw.event_types.as_deref(), registry).map_err(&mut fail)
        }
        (None, false) => {
            declarative_projector(&raw.handler, raw.event_types.as_deref()).map_err(|problems| {
                for problem in problems {
                    fail(problem);
                }
            })
        }
        (Some(_), false) => {
            fail(
                "give either projector = \"name\" (Rust) or [[handler]] tables, not both"
                    .to_owned(),
            );
            Err(())
        }
        (None, true) => {
            fail(
                "nothing folds it: name a registered Rust projector with projector = \"name\", or write [[handler]] tables"
                    .to_owned(),
            );
            Err(())
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let folding = folding.expect("a projector that could not be made was reported above");
    Ok(Definition {
        name: raw.name,
        version,
        ttl_from_event,
        text: Arc::from(text),
        cache,
        expiry,
        topics: raw.topics.into_iter().collect(),
        event_types: folding.event_types,
        identifier: identifier.expect("an invalid identifier was reported above"),
        projector_name: folding.name,
        projector: folding.projector,
        file: file.to_path_buf(),
    })
}

/// What folds a projection, and the event types it consumes.
struct Folding {
    name: String,
    projector: Arc<dyn Projector>,
    event_types: BTreeSet<String>,
}

fn rust_projector(
    name: &str,
    event_types: Option<&[String]>,
    registry: &Registry,
) -> Result<Folding, String> {
    let event_types: BTreeSet<String> = event_types.unwrap_or_default().iter().cloned().collect();
    if event_types.is_empty() {
        return Err("event_types is empty: name the event types it consumes".to_owned());
    }
    let projector = registry.get(name).ok_or_else(|| {
        format!(
            "projector = {name:?} is not registered (registered: {})",
            registry.names().join(", ")
        )
    })?;
    Ok(Folding {
        name: name.to_owned(),
        projector,
        event_types,
    })
}

fn declarative_projector(
    handlers: &[HandlerSpec],
    event_types: Option<&[String]>,
) -> Result<Folding, Vec<String>> {
    let projector = declarative::compile(handlers)?;
    let handled = projector.event_types();
    if let Some(listed) = event_types {
        let listed: BTreeSet<String> = listed.iter().cloned().collect();
        if listed != handled {
            return Err(vec![format!(
                "event_types = {listed:?} differs from the event types the handlers are on, {handled:?}: leave it out or make them equal"
            )]);
        }
    }
    Ok(Folding {
        name: declarative::NAME.to_owned(),
        projector: Arc::new(projector),
        event_types: handled,
    })
}
