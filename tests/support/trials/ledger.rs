//! The trials' workload and its verdict: deposits to accounts, generated from
//! a seed; what they must fold to (per account, how many deposits and their
//! sum); and the comparison with what Redis holds, counted as lost and doubled
//! applications rather than printed key by key.
//!
//! Counters are not idempotent: an event applied twice adds twice, an event
//! skipped is missing, so `n` (applications) and `sum` (varied amounts) give
//! every mistake away, and a loss and a double that cancel out in `n` still
//! show in `sum`.

use std::collections::BTreeMap;
use std::fmt;

use redis::AsyncCommands;
use serde_json::Value;

use super::chaos::Rng;

/// The projection's name, so its keys are `counters:::<account>`.
pub const PROJECTION: &str = "counters";
/// The one event type it handles.
const EVENT_TYPE: &str = "trial.deposited";
/// A tenth of the deposits go to these few accounts, so batches keep
/// touching the same keys.
const HOT_ACCOUNTS: u64 = 16;
/// Accounts `k` with `k % SHARED_EVERY == 3` are deposited to on any
/// partition, so their keys are written from several partitions (and
/// daemons); the others live on one partition each.
const SHARED_EVERY: u64 = 10;
/// Keys asked for at once (`SCAN` count, `MGET`).
const READ_CHUNK: usize = 1_000;

/// The declarative definition of the counters projection, reading `topic`.
pub fn projection(topic: &str) -> String {
    format!(
        r#"name = "{PROJECTION}"
ttl = "never"
topics = [{topic:?}]
identifier = "{{data.account}}"

[[handler]]
on = "{EVENT_TYPE}"
do = [
  {{ increment = "n", by_value = 1 }},
  {{ increment = "sum", by = ".data.amount" }},
]
"#
    )
}

/// How many deposits an account received and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub n: i64,
    pub sum: i64,
}

/// Every deposit produced so far, folded.
pub struct Ledger {
    partitions: i32,
    expected: Vec<Tally>,
    produced: u64,
    rng: Rng,
}

impl Ledger {
    pub fn new(accounts: usize, partitions: i32, seed: u64) -> Ledger {
        Ledger {
            partitions,
            expected: vec![Tally::default(); accounts],
            produced: 0,
            rng: Rng::new(seed),
        }
    }

    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The next `count` deposits as `(partition, key, payload)` records,
    /// counted as produced.
    pub fn deposits(&mut self, count: usize) -> Vec<(i32, String, String)> {
        let accounts = self.expected.len() as u64;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let account = if self.rng.below(10) == 0 {
                self.rng.below(HOT_ACCOUNTS.min(accounts))
            } else {
                self.rng.below(accounts)
            };
            let amount = 1 + self.rng.below(10_000) as i64;
            let partition = if account % SHARED_EVERY == 3 {
                self.rng.below(self.partitions as u64) as i32
            } else {
                (account % self.partitions as u64) as i32
            };
            let tally = &mut self.expected[account as usize];
            tally.n += 1;
            tally.sum += amount;
            self.produced += 1;
            let payload = format!(
                r#"{{"specversion":"1.0","type":"{EVENT_TYPE}","id":"d-{id}","source":"/trials","time":"2024-05-01T12:00:00Z","data":{{"account":"{key}","amount":{amount}}}}}"#,
                id = self.produced,
                key = account_key(account),
            );
            records.push((partition, account_key(account), payload));
        }
        records
    }

    /// What every account that received deposits must hold, by key.
    pub fn expected(&self) -> BTreeMap<String, Tally> {
        let received = self.expected.iter().enumerate().filter(|(_, t)| t.n > 0);
        received
            .map(|(account, tally)| (account_key(account as u64), *tally))
            .collect()
    }

    /// Compare the counters read from Redis ([`read_counters`]) with the fold.
    pub fn compare(&self, stored: &Counters) -> Comparison {
        let mut comparison = Comparison {
            accounts: self.expected.iter().filter(|t| t.n > 0).count(),
            events: self.produced,
            keys: stored.len(),
            ..Comparison::default()
        };
        for (index, want) in self.expected.iter().enumerate() {
            let key = account_key(index as u64);
            let got = match stored.get(&key) {
                Some(Ok(tally)) => *tally,
                Some(Err(text)) => {
                    comparison.unreadable.push(format!("{key} = {text}"));
                    continue;
                }
                None => Tally::default(),
            };
            comparison.add(&key, got, *want);
        }
        let known = |key: &String| parse_account(key).is_some_and(|a| a < self.expected.len());
        comparison.unexpected = stored.keys().filter(|key| !known(key)).cloned().collect();
        comparison
    }
}

/// Redis key count and totals, to see whether a daemon is still writing.
pub async fn totals(redis_url: &str) -> Result<(usize, Tally), redis::RedisError> {
    let stored = read_counters(redis_url).await?;
    let mut total = Tally::default();
    for tally in stored.values().flatten() {
        total.n += tally.n;
        total.sum += tally.sum;
    }
    Ok((stored.len(), total))
}

fn account_key(account: u64) -> String {
    format!("a-{account}")
}

fn parse_account(key: &str) -> Option<usize> {
    key.strip_prefix("a-")?.parse().ok()
}

/// Counters by account key; a value that is not `{n, sum}` is kept as text.
pub type Counters = BTreeMap<String, Result<Tally, String>>;

/// Every counter in Redis.
pub async fn read_counters(redis_url: &str) -> Result<Counters, redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let prefix = format!("{PROJECTION}:::");
    let pattern = format!("{prefix}*");
    let mut keys: Vec<String> = Vec::new();
    {
        let options = redis::ScanOptions::default()
            .with_pattern(&pattern)
            .with_count(READ_CHUNK);
        let mut iter: redis::AsyncIter<'_, String> = connection.scan_options(options).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
    }
    let mut counters = BTreeMap::new();
    for chunk in keys.chunks(READ_CHUNK) {
        let values: Vec<Option<String>> = connection.mget(chunk).await?;
        for (key, value) in chunk.iter().zip(values) {
            let Some(text) = value else { continue };
            let account = key.strip_prefix(&prefix).unwrap_or(key).to_owned();
            counters.insert(account, parse_tally(&text).ok_or(text));
        }
    }
    Ok(counters)
}

pub fn parse_tally(text: &str) -> Option<Tally> {
    let value: Value = serde_json::from_str(text).ok()?;
    Some(Tally {
        n: value.get("n")?.as_i64()?,
        sum: value.get("sum")?.as_i64()?,
    })
}

/// Applications off in one direction: how many accounts, events and amount.
#[derive(Debug, Default)]
pub struct Off {
    pub accounts: usize,
    pub events: i64,
    pub amount: i64,
}

/// The verdict: exact, or how many accounts are off and by how much.
#[derive(Debug, Default)]
pub struct Comparison {
    pub accounts: usize,
    pub events: u64,
    pub keys: usize,
    /// Accounts with more applications than deposits.
    pub doubled: Off,
    /// Accounts with fewer applications than deposits (absent keys included).
    pub lost: Off,
    /// Accounts whose count is right but whose sum is not: a loss and a
    /// double that cancelled out in `n`.
    pub swapped: usize,
    pub unreadable: Vec<String>,
    pub unexpected: Vec<String>,
    examples: Vec<String>,
}

impl Comparison {
    pub fn is_exact(&self) -> bool {
        self.doubled.accounts == 0
            && self.lost.accounts == 0
            && self.swapped == 0
            && self.unreadable.is_empty()
            && self.unexpected.is_empty()
    }

    fn add(&mut self, key: &str, got: Tally, want: Tally) {
        if got == want {
            return;
        }
        let off = match got.n.cmp(&want.n) {
            std::cmp::Ordering::Greater => &mut self.doubled,
            std::cmp::Ordering::Less => &mut self.lost,
            std::cmp::Ordering::Equal => {
                self.swapped += 1;
                self.example(key, got, want);
                return;
            }
        };
        off.accounts += 1;
        off.events += (got.n - want.n).abs();
        off.amount += (got.sum - want.sum).abs();
        self.example(key, got, want);
    }

    fn example(&mut self, key: &str, got: Tally, want: Tally) {
        if self.examples.len() < 5 {
            self.examples.push(format!(
                "{key}: n {} (expected {}), sum {} (expected {})",
                got.n, want.n, got.sum, want.sum
            ));
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = self.doubled.accounts + self.lost.accounts + self.swapped;
        write!(
            f,
            "{} events over {} accounts, {} keys in Redis: {off} accounts off; \
             doubled: {} applications in {} accounts (amount +{}); \
             lost: {} applications in {} accounts (amount -{}); \
             right count but wrong sum: {} accounts",
            self.events,
            self.accounts,
            self.keys,
            self.doubled.events,
            self.doubled.accounts,
            self.doubled.amount,
            self.lost.events,
            self.lost.accounts,
            self.lost.amount,
            self.swapped,
        )?;
        if !self.unreadable.is_empty() {
            write!(f, "; unreadable values: {:?}", self.unreadable)?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unexpected keys: {:?}", self.unexpected)?;
        }
        for example in &self.examples {
            write!(f, "\n  {example}")?;
        }
        Ok(())
    }
}
