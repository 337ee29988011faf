//! Where a trial's daemons write: one Redis, or a Redis Cluster whose
//! counters are read from every primary and merged (each key lives on one).

use redis::AsyncCommands;

use super::ledger::{self, Counters, PROJECTION, Tally, parse_tally};
use crate::support::cluster::RedisCluster;
use crate::support::redis::RedisServer;

pub enum Store {
    Redis(RedisServer),
    Cluster(RedisCluster),
}

impl From<RedisServer> for Store {
    fn from(redis: RedisServer) -> Store {
        Store::Redis(redis)
    }
}

impl From<RedisCluster> for Store {
    fn from(cluster: RedisCluster) -> Store {
        Store::Cluster(cluster)
    }
}

impl Store {
    /// The `[caches.default]` lines that point the daemon here.
    pub fn cache_config(&self) -> String {
        match self {
            Store::Redis(redis) => format!("provider = \"redis\"\nURI = \"{}\"", redis.url(0)),
            Store::Cluster(cluster) => {
                format!("provider = \"redis_cluster\"\nnodes = {:?}", cluster.urls())
            }
        }
    }

    /// Every counter, from every primary on a cluster. A primary that is
    /// down (a failover under way) makes this an error, as a Redis that is
    /// down does.
    pub async fn read_counters(&self) -> Result<Counters, redis::RedisError> {
        match self {
            Store::Redis(redis) => ledger::read_counters(&redis.url(0)).await,
            Store::Cluster(cluster) => {
                let primaries = tokio::task::block_in_place(|| cluster.primaries());
                let mut counters = Counters::new();
                for port in primaries {
                    counters.extend(read_node(port).await?);
                }
                Ok(counters)
            }
        }
    }

    /// Key count and totals, to see whether a daemon is still writing.
    pub async fn totals(&self) -> Result<(usize, Tally), redis::RedisError> {
        let stored = self.read_counters().await?;
        let mut total = Tally::default();
        for tally in stored.values().flatten() {
            total.n += tally.n;
            total.sum += tally.sum;
        }
        Ok((stored.len(), total))
    }
}

/// The counters one cluster node holds: `SCAN`, then `GET`s in a pipeline
/// (a node refuses a multi-key `MGET` across slots, even its own).
async fn read_node(port: u16) -> Result<Counters, redis::RedisError> {
    const CHUNK: usize = 1_000;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let prefix = format!("{PROJECTION}:::");
    let mut keys: Vec<String> = Vec::new();
    {
        let options = redis::ScanOptions::default()
            .with_pattern(format!("{prefix}*"))
            .with_count(CHUNK);
        let mut iter: redis::AsyncIter<'_, String> = connection.scan_options(options).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
    }
    let mut counters = Counters::new();
    for chunk in keys.chunks(CHUNK) {
        let mut pipeline = redis::pipe();
        for key in chunk {
            pipeline.get(key);
        }
        let values: Vec<Option<String>> = pipeline.query_async(&mut connection).await?;
        for (key, value) in chunk.iter().zip(values) {
            let Some(text) = value else { continue };
            let account = key.strip_prefix(&prefix).unwrap_or(key).to_owned();
            counters.insert(account, parse_tally(&text).ok_or(text));
        }
    }
    Ok(counters)
}
