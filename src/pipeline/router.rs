//! Which projections an event feeds: a lookup by `(topic, event type)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    by_type: HashMap<(String, String), Vec<usize>>,
}

impl Router {
    /// Panics if a definition names a cache missing from `caches`: definitions are
    /// validated against the same settings the caches were built from.
    pub fn new(definitions: Vec<Definition>, caches: &BTreeMap<String, Arc<dyn Cache>>) -> Router {
        let mut routes = Vec::with_capacity(definitions.len());
        let mut by_type: HashMap<(String, String), Vec<usize>> = HashMap::new();
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
                        .entry((topic.clone(), event_type.clone()))
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
        // Building the tuple key allocates; a batch does this once per event, which
        // is small next to decoding the event's JSON.
        self.by_type
            .get(&(topic.to_owned(), event_type.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
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

    pub fn find(&self, projection: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.definition.name == projection)
    }
}
