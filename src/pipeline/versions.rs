//! A cache's definitions changed under the pipeline (a rebuilt projection
//! was promoted, or rolled back): its commit was refused as outdated. Hold
//! while a promotion is under way, then fold with the live versions.

use std::time::Duration;

use tracing::info;

use super::{Pipeline, PipelineError};
use crate::cache::Generation;

/// How often a held writer asks whether the promotion is over.
const HOLD_POLL: Duration = Duration::from_millis(100);

impl Pipeline {
    /// Adopt generation `stored` of cache `cache`'s definitions: wait until no
    /// projection of the cache is being promoted, then load each one's live
    /// version where it changed. The caller folds again; `true` when a
    /// route changed, so the chunk must be routed again first.
    pub(super) async fn adopt(
        &mut self,
        cache: usize,
        stored: Generation,
    ) -> Result<bool, PipelineError> {
        let Some(catalog) = self.catalog.clone() else {
            // A pipeline that cannot change definitions (a shadow build)
            // finds its scope fenced when it is retired: it stops.
            return Err(PipelineError::Retired(self.caches[cache].name.clone()));
        };
        let mut changed = false;
        let routes: Vec<usize> = (0..self.router.len())
            .filter(|&route| self.route_cache[route] == cache)
            .collect();
        loop {
            let mut promoting = false;
            let mut states = Vec::with_capacity(routes.len());
            for &route in &routes {
                let name = self.router.route(route).definition.name.clone();
                let state = self
                    .retry
                    .run("cache", || catalog.state(&name))
                    .await
                    .map_err(|error| PipelineError::Definitions(error.to_string()))?;
                promoting |= state
                    .as_ref()
                    .and_then(|state| state.shadow.as_ref())
                    .is_some_and(|shadow| shadow.promoting);
                states.push((route, state));
            }
            if promoting {
                tokio::time::sleep(HOLD_POLL).await;
                continue;
            }
            for (route, state) in states {
                let Some(state) = state else { continue };
                let current = &self.router.route(route).definition;
                if current.version == state.live {
                    continue;
                }
                let name = current.name.clone();
                let definition = self
                    .retry
                    .run("cache", || catalog.load(&name, state.live))
                    .await
                    .map_err(|error| PipelineError::Definitions(error.to_string()))?;
                info!(projection = %name, from = current.version, to = state.live, "folding with the live version from here on");
                self.router.replace(route, definition);
                changed = true;
            }
            self.caches[cache].generation = stored;
            return Ok(changed);
        }
    }
}
