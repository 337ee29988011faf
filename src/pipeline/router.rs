//! Which projections an event feeds: a lookup by `(topic, event type)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::KeyMap;
use crate::cache::Cache;
use crate::projection::Definition;

/// A projection definition with the cache it writes to.
#[derive(Clone)]
pub struct Route {
    pub definition: Definition,
    pub cache: Arc<dyn Cache>,
}

/// Routes by `(topic, event type)`, built once at start.
#[derive(Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// Topic -> event type -> routes; nested so a lookup by `&str` allocates
    /// nothing (it runs for every event, twice: a fast hasher, see [`KeyMap`]).
    by_type: KeyMap<String, KeyMap<String, Vec<usize>>>,
}

impl Router {
    /// Panics if a definition names a cache missing from `caches`: definitions are
    /// validated against the same settings the caches were built from.
    pub fn new(definitions: Vec<Definition>, caches: &BTreeMap<String, Arc<dyn Cache>>) -> Router {
        let mut routes = Vec::with_capacity(definitions.len());
        let mut by_type: KeyMap<String, KeyMap<String, Vec<usize>>> = KeyMap::default();
        for definition in definitions {
            let cache = Arc::clone(
                caches
                    .get(&definition.cache)
                    .expect("definitions are validated against the configured caches"),
            );
            let index = routes.len();
            for topic in &definition.topics {
                for event_type in &definition.event_types {
                    by_type
                        .entry(topic.clone())
                        .or_default()
                        .entry(event_type.clone())
                        .or_default()
                        .push(index);
                }
            }
            routes.push(Route { definition, cache });
        }
        Router { routes, by_type }
    }

    /// Indexes of the routes consuming this event, in definition order.
    pub fn routes_for(&self, topic: &str, event_type: &str) -> &[usize] {
        self.by_type
            .get(topic)
            .and_then(|types| types.get(event_type))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// How many routes (projection definitions) there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// Every topic some projection consumes, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .routes
            .iter()
            .flat_map(|route| route.definition.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Fold with `definition` instead of route `index`'s from now on (a newer
    /// version went live). Its topics and cache are the same (a version may
    /// not change them), but its event types may differ: the index is built
    /// again.
    pub fn replace(&mut self, index: usize, definition: Definition) {
        let caches: BTreeMap<String, Arc<dyn Cache>> = self
            .routes
            .iter()
            .map(|route| (route.definition.cache.clone(), Arc::clone(&route.cache)))
            .collect();
        let mut definitions: Vec<Definition> = self
            .routes
            .drain(..)
            .map(|route| route.definition)
            .collect();
        definitions[index] = definition;
        *self = Router::new(definitions, &caches);
    }
}
