//! The one place projectors are registered by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Projector;

/// Projectors by name. A projection definition names its projector; an unknown
/// name is a config error listing [`Registry::names`].
#[derive(Clone, Default)]
pub struct Registry {
    projectors: BTreeMap<String, Arc<dyn Projector>>,
}

impl Registry {
    /// An empty registry, for a binary that registers only its own projectors.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The projectors shipped with Projectionist (the shop examples).
    pub fn with_builtins() -> Self {
        let mut registry = Registry::new();
        super::examples::register_all(&mut registry);
        registry
    }

    /// Register `projector` under `name`, replacing any projector of that name.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        projector: impl Projector + 'static,
    ) -> &mut Self {
        self.projectors.insert(name.into(), Arc::new(projector));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Projector>> {
        self.projectors.get(name).cloned()
    }

    /// Registered names, sorted, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.projectors.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("projectors", &self.names())
            .finish()
    }
}
