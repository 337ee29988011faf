//! When a trial is not exact: whether the topic itself holds what was
//! produced (if not, the harness or the broker is at fault, not the
//! daemon), and which records were lost or applied twice, found from the
//! counters' differences, so a figure can be traced to a partition and an
//! offset, and to the daemons' logs around it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::ledger::{Counters, Tally};
use crate::support::kafka::Broker;

/// How long reading the whole topic back may take.
const READ_BACK: Duration = Duration::from_secs(120);
/// Records named at most, so a large failure stays readable.
const NAMED: usize = 20;

/// One deposit as the topic holds it.
struct Deposit {
    partition: i32,
    offset: i64,
    amount: i64,
}

/// Read `topic` back from the beginning and explain how `stored` differs
/// from `expected` (by account key).
pub async fn explain(
    broker: &Broker,
    topic: &str,
    expected: &BTreeMap<String, Tally>,
    stored: &Counters,
) -> String {
    let mut by_account: BTreeMap<String, Vec<Deposit>> = BTreeMap::new();
    for record in broker.consume_all(topic, READ_BACK).await {
        let event: Value = serde_json::from_slice(record.payload.as_deref().unwrap_or_default())
            .expect("the trial produced JSON");
        let data = &event["data"];
        let account = data["account"].as_str().expect("an account").to_owned();
        by_account.entry(account).or_default().push(Deposit {
            partition: record.partition,
            offset: record.offset,
            amount: data["amount"].as_i64().expect("an amount"),
        });
    }
    let mut lines = Vec::new();
    let folded = |deposits: &[Deposit]| Tally {
        n: deposits.len() as i64,
        sum: deposits.iter().map(|d| d.amount).sum(),
    };
    let unlike_topic = expected
        .iter()
        .filter(|(account, want)| {
            by_account
                .get(*account)
                .map(|d| folded(d))
                .unwrap_or_default()
                != **want
        })
        .count();
    lines.push(if unlike_topic == 0 {
        "the topic, read back from the beginning, folds exactly to what was produced: \
         the differences arose while consuming"
            .to_owned()
    } else {
        format!(
            "the topic itself differs from what was produced in {unlike_topic} accounts: \
             a harness or broker fault, not the daemon's"
        )
    });
    lines.push(by_home_partition(&by_account, expected, stored));
    // A count off by one whose sum is off by the amount of exactly one of
    // the account's deposits names that record; the rest stay unexplained.
    let mut named: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (account, want) in expected {
        let got = match stored.get(account) {
            Some(Ok(tally)) => *tally,
            Some(Err(_)) => continue,
            None => Tally::default(),
        };
        if got == *want {
            continue;
        }
        let (extra, amount) = (got.n - want.n, got.sum - want.sum);
        let deposits = by_account
            .get(account)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let matching: Vec<&Deposit> = deposits
            .iter()
            .filter(|d| d.amount == amount.abs())
            .collect();
        match (extra, matching.as_slice()) {
            (1 | -1, [deposit]) if extra.signum() == amount.signum() => {
                let what = if extra > 0 { "applied twice" } else { "lost" };
                let offsets = named.entry((what, deposit.partition)).or_default();
                offsets.push(deposit.offset);
            }
            _ => unexplained.push(format!("{account} {extra:+} (amount {amount:+})")),
        }
    }
    for ((what, partition), mut offsets) in named {
        offsets.sort_unstable();
        let shown: Vec<String> = offsets.iter().take(NAMED).map(i64::to_string).collect();
        lines.push(format!(
            "{what}: {} records of partition {partition} (offsets {}..={}): {}{}",
            offsets.len(),
            offsets[0],
            offsets[offsets.len() - 1],
            shown.join(", "),
            if offsets.len() > NAMED { ", ..." } else { "" },
        ));
    }
    if !unexplained.is_empty() {
        let shown = unexplained.len().min(NAMED);
        lines.push(format!(
            "{} accounts off by more than one record (or ambiguously): {}{}",
            unexplained.len(),
            unexplained[..shown].join(", "),
            if unexplained.len() > NAMED {
                ", ..."
            } else {
                ""
            },
        ));
    }
    lines.join("\n  ")
}

/// Applications off per partition, over the accounts whose deposits all sit
/// in one partition, and over the others: shows which partitions went wrong.
fn by_home_partition(
    by_account: &BTreeMap<String, Vec<Deposit>>,
    expected: &BTreeMap<String, Tally>,
    stored: &Counters,
) -> String {
    let mut off: BTreeMap<Option<i32>, (i64, i64)> = BTreeMap::new();
    for (account, want) in expected {
        let got = match stored.get(account) {
            Some(Ok(tally)) => tally.n,
            Some(Err(_)) => continue,
            None => 0,
        };
        let deposits = by_account
            .get(account)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let home = deposits.first().map(|d| d.partition);
        let shared = deposits.iter().any(|d| Some(d.partition) != home);
        let (doubled, lost) = off.entry(if shared { None } else { home }).or_default();
        *doubled += (got - want.n).max(0);
        *lost += (want.n - got).max(0);
    }
    let parts: Vec<String> = off
        .iter()
        .map(|(home, (doubled, lost))| {
            let name = home.map_or("shared".to_owned(), |p| format!("partition {p}"));
            format!("{name} +{doubled}/-{lost}")
        })
        .collect();
    format!(
        "applications doubled/lost, by the partition feeding the account: {}",
        parts.join(", ")
    )
}
