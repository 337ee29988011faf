//! Walking a cluster's keyspace: every primary holds its own slots' keys, so
//! a pattern operation `SCAN`s each primary to its end. A `SCAN` cursor is
//! only meaningful on the node that gave it, so each walk is pinned to its
//! node by address, not routed by slot.

use std::collections::BTreeSet;

use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::{ClusterCache, concurrently, unavailable};
use crate::cache::{CacheError, CacheResult, glob};

/// Keys Redis examines per `SCAN` call, as on a single Redis.
const SCAN_COUNT: usize = 1000;

impl ClusterCache {
    /// The address of every primary that serves slots, from `CLUSTER SLOTS`.
    pub(super) async fn primaries(&self) -> CacheResult<BTreeSet<(String, u16)>> {
        let reply: Vec<Value> = self
            .route(
                &redis::cmd("CLUSTER").arg("SLOTS").to_owned(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(unavailable)?;
        let mut primaries = BTreeSet::new();
        for range in reply {
            // [first slot, last slot, [host, port, id, ...], replicas ...]
            let primary = match range {
                Value::Array(fields) => fields.into_iter().nth(2),
                _ => None,
            };
            let address = match primary {
                Some(Value::Array(node)) => {
                    let host: Option<String> = node
                        .first()
                        .and_then(|host| redis::from_redis_value_ref(host).ok());
                    let port: Option<u16> = node
                        .get(1)
                        .and_then(|port| redis::from_redis_value_ref(port).ok());
                    host.zip(port)
                }
                _ => None,
            };
            let Some(address) = address else {
                return Err(CacheError::Unavailable(
                    "CLUSTER SLOTS answered in a form this version does not read".to_owned(),
                ));
            };
            primaries.insert(address);
        }
        Ok(primaries)
    }

    /// Every primary answers `PING` (each asked by address, concurrently).
    pub(super) async fn ping_primaries(&self) -> CacheResult<()> {
        let primaries = self.primaries().await?;
        let pings = primaries
            .into_iter()
            .map(|(host, port)| async move {
                let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let reply: String = self
                    .route(&redis::cmd("PING"), node)
                    .await
                    .map_err(unavailable)?;
                if reply == "PONG" {
                    Ok(())
                } else {
                    Err(CacheError::Unavailable(format!("PING answered {reply:?}")))
                }
            })
            .collect();
        concurrently(pings).await.map(|_| ())
    }

    /// Every distinct projection key matching `pattern` on every primary,
    /// sorted bytewise.
    pub(super) async fn scan(&self, pattern: &str) -> CacheResult<BTreeSet<String>> {
        let redis_pattern = glob::to_redis(pattern);
        let primaries = self.primaries().await?;
        let walks = primaries
            .into_iter()
            .map(|(host, port)| self.scan_node(host, port, &redis_pattern))
            .collect();
        let per_primary = concurrently(walks).await?;
        Ok(per_primary.into_iter().flatten().collect())
    }

    async fn scan_node(
        &self,
        host: String,
        port: u16,
        redis_pattern: &str,
    ) -> CacheResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let command = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(redis_pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned();
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            });
            let (next, raw_keys): (u64, Vec<Vec<u8>>) =
                self.route(&command, node).await.map_err(unavailable)?;
            // A key that is not UTF-8 or lacks `:::` was not written by a cache.
            keys.extend(
                raw_keys
                    .into_iter()
                    .filter_map(|raw| String::from_utf8(raw).ok())
                    .filter(|key| crate::cache::is_entry_key(key)),
            );
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}
