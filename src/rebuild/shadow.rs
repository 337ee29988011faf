//! The cache as a shadow build sees it: the same port, with every projection
//! key `{name}:::{id}` stored under the shadow's keyspace instead (see
//! [`super::state::shadow_key`]). The pipeline folds into it exactly as into
//! the live keys, checkpoint, claims and all; the seed's own methods are
//! refused, since nothing but the build writes a shadow.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::state::{live_key_of, shadow_key};
use crate::cache::{
    Cache, CacheError, CacheResult, Claim, Commit, CommitOutcome, Connection, Floors, Generation,
    Partition, Projection, RemainingTtl, Ttl, Version, WriteOp, split_key,
};

/// A cache seen through a shadow keyspace.
#[derive(Debug)]
pub struct ShadowCache {
    inner: Arc<dyn Cache>,
    /// The keyspace's prefix ([`super::state::Shadow::prefix`]).
    prefix: String,
}

impl ShadowCache {
    pub fn new(inner: Arc<dyn Cache>, prefix: String) -> ShadowCache {
        ShadowCache { inner, prefix }
    }

    fn key(&self, live: &str) -> String {
        shadow_key(&self.prefix, live)
    }

    fn live<'a>(&self, shadow: &'a str) -> &'a str {
        live_key_of(&self.prefix, shadow).unwrap_or(shadow)
    }

    fn write(&self, op: &WriteOp) -> WriteOp {
        match op {
            WriteOp::Upsert { projection, expiry } => {
                let key = self.key(&projection.key());
                let (name, id) = split_key(&key).expect("a shadow key holds its live key");
                WriteOp::Upsert {
                    projection: Projection::new(name, id, projection.value().clone())
                        .expect("a shadow name is non-empty and the value an object"),
                    expiry: *expiry,
                }
            }
            WriteOp::Delete { key } => WriteOp::Delete { key: self.key(key) },
        }
    }

    fn expected(&self, expected: &[(String, Version)]) -> Vec<(String, Version)> {
        expected
            .iter()
            .map(|(key, version)| (self.key(key), version.clone()))
            .collect()
    }
}

fn refused() -> CacheError {
    CacheError::InvalidArgument(
        "a shadow keyspace is written by its rebuild only; read the live keys".to_owned(),
    )
}

#[async_trait]
impl Cache for ShadowCache {
    async fn ping(&self) -> bool {
        self.inner.ping().await
    }

    fn get_connection(&self) -> Connection {
        self.inner.get_connection()
    }

    fn default_ttl(&self) -> Ttl {
        self.inner.default_ttl()
    }

    async fn add(&self, _: &Projection, _: Option<Ttl>) -> CacheResult<()> {
        Err(refused())
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        let mut found = self.get_many(&[key.to_owned()]).await?;
        Ok(found.pop().flatten())
    }

    async fn get_all(&self, _: &str, _: usize, _: usize) -> CacheResult<Vec<Projection>> {
        Err(refused())
    }

    async fn count(&self, _: &str) -> CacheResult<usize> {
        Err(refused())
    }

    async fn remove_by_key(&self, _: &str) -> CacheResult<()> {
        Err(refused())
    }

    async fn remove_by_key_pattern(&self, _: &str) -> CacheResult<usize> {
        Err(refused())
    }

    async fn flush_all(&self) -> CacheResult<()> {
        Err(refused())
    }

    async fn set_ttl(&self, _: &str, _: Ttl) -> CacheResult<bool> {
        Err(refused())
    }

    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>> {
        self.inner.get_ttl(&self.key(key)).await
    }

    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> CacheResult<Vec<(Option<Projection>, Version)>> {
        let shadows: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        let found = self.inner.get_many_versioned(&shadows).await?;
        keys.iter()
            .zip(found)
            .map(|(key, (projection, version))| {
                let projection = projection
                    .map(|projection| Projection::from_key(key, projection.into_value()))
                    .transpose()
                    .map_err(|reason| CacheError::CorruptValue {
                        key: key.clone(),
                        reason,
                    })?;
                Ok((projection, version))
            })
            .collect()
    }

    async fn apply_if_unchanged(
        &self,
        _: &[WriteOp],
        _: &[(String, Version)],
    ) -> CacheResult<bool> {
        Err(refused())
    }

    async fn apply(&self, _: &[WriteOp]) -> CacheResult<()> {
        Err(refused())
    }

    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        self.inner.claim(scope, partitions).await
    }

    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        self.commit_over(commit, None).await
    }

    async fn applied(&self, scope: &str, partition: &Partition) -> CacheResult<Option<i64>> {
        self.inner.applied(scope, partition).await
    }

    /// A shadow is never paused: the live version it follows may be.
    async fn paused(&self, _: &str) -> CacheResult<BTreeSet<String>> {
        Ok(BTreeSet::new())
    }

    async fn set_paused(&self, _: &str, _: &str, _: bool) -> CacheResult<()> {
        Err(refused())
    }

    async fn note(&self, key: &str) -> CacheResult<Option<String>> {
        self.inner.note(key).await
    }

    async fn set_note(&self, key: &str, text: Option<&str>) -> CacheResult<()> {
        self.inner.set_note(key, text).await
    }

    async fn advance_generation(&self, scope: &str) -> CacheResult<Generation> {
        self.inner.advance_generation(scope).await
    }

    fn replay_window(&self) -> u64 {
        self.inner.replay_window()
    }

    async fn floors(
        &self,
        scope: &str,
        keys: &[String],
        partitions: &[Partition],
    ) -> CacheResult<Option<Floors>> {
        let shadows: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        let floors = self.inner.floors(scope, &shadows, partitions).await?;
        Ok(floors.map(|floors| floors.renamed(|key| self.live(key).to_owned())))
    }

    async fn commit_over(
        &self,
        commit: Commit<'_>,
        floors: Option<&Floors>,
    ) -> CacheResult<CommitOutcome> {
        let writes: Vec<WriteOp> = commit.writes.iter().map(|op| self.write(op)).collect();
        let expected = self.expected(commit.expected);
        let floors = floors.map(|floors| floors.renamed(|key| self.key(key)));
        let shadowed = Commit {
            writes: &writes,
            expected: &expected,
            ..commit
        };
        self.inner.commit_over(shadowed, floors.as_ref()).await
    }
}
