//! The cluster's exactly-once marks cost memory per slot and partition, not
//! per key (issue #12: "Memory for the marks does not grow with the number
//! of keys"): ten times the keys in the same slots leave the same marks.

use std::collections::BTreeSet;

use projectionist::cache::cluster::connect;
use projectionist::cache::cluster::slots::slot_of;
use projectionist::cache::{
    Advance, Cache, Commit, CommitOutcome, Expiry, Partition, Projection, WriteOp,
};
use serde_json::json;

use crate::default_ttl;
use crate::support::cluster::shared;
use crate::support::redis::unique_prefix;

/// Hash tags the keys are spread over: a fixed set of slots, so that only
/// the number of keys changes between the rounds.
const TAGS: usize = 8;
const PARTITIONS: i32 = 3;
/// Keys per partition in the first round; the second writes ten times more.
const FIRST_ROUND: usize = 40;

#[tokio::test]
async fn marks_are_bounded_by_slots_times_partitions_not_by_keys() {
    let cluster = shared();
    let cache = connect(&cluster.urls(), default_ttl()).await.unwrap();
    let prefix = unique_prefix();
    let scope = format!("{prefix}group/cache");
    let name = format!("{prefix}wide");
    let partitions: Vec<Partition> = (0..PARTITIONS)
        .map(|partition| Partition::new("orders", partition))
        .collect();
    let claims = cache.claim(&scope, &partitions).await.unwrap();
    let mut next: Vec<Option<i64>> = vec![None; partitions.len()];
    let mut written = 0;
    let mut counted = Vec::new();
    for keys_per_partition in [FIRST_ROUND, FIRST_ROUND * 10] {
        // Every key is new: the marks a per-key design kept would grow
        // with them.
        let writes: Vec<WriteOp> = (written..written + keys_per_partition * partitions.len())
            .map(|i| {
                let id = format!("{{tag{}}}-{i}", i % TAGS);
                WriteOp::Upsert {
                    projection: Projection::new(&name, &id, json!({ "n": i })).unwrap(),
                    expiry: Expiry::CacheDefault,
                }
            })
            .collect();
        written += writes.len();
        let advances: Vec<Advance> = partitions
            .iter()
            .zip(&claims)
            .zip(&next)
            .map(|((partition, claim), from)| Advance {
                partition: partition.clone(),
                epoch: claim.epoch,
                from: *from,
                to: from.unwrap_or(0) + keys_per_partition as i64,
            })
            .collect();
        let commit = Commit {
            scope: &scope,
            advances: &advances,
            expected: &[],
            writes: &writes,
            generation: 0,
        };
        assert_eq!(cache.commit(commit).await.unwrap(), CommitOutcome::Applied);
        next = advances.iter().map(|advance| Some(advance.to)).collect();
        counted.push(count_marks(&scope));
    }

    let slots: BTreeSet<u16> = (0..TAGS)
        .map(|tag| slot_of(format!("{name}:::{{tag{tag}}}-0").as_bytes()))
        .collect();
    let bound = slots.len() * partitions.len();
    let [(hashes_before, fields_before), (hashes_after, fields_after)] = counted[..] else {
        panic!("two rounds");
    };
    assert_eq!(
        cache.count(&format!("{name}:::*")).await.unwrap(),
        written,
        "every key landed"
    );
    assert_eq!(
        (hashes_before, fields_before),
        (slots.len(), bound),
        "a mark hash per slot written, a field per partition in it"
    );
    assert_eq!(
        (hashes_after, fields_after),
        (hashes_before, fields_before),
        "{} keys, then {written} in the same {} slots: the marks must not grow with the keys",
        FIRST_ROUND * partitions.len(),
        slots.len()
    );
    cache
        .remove_by_key_pattern(&format!("{prefix}*"))
        .await
        .unwrap();
}

/// The mark hashes of `scope` and their fields, counted by `SCAN` on every
/// primary (a mark lives in the slot it guards, so on any of them).
fn count_marks(scope: &str) -> (usize, usize) {
    let cluster = shared();
    let pattern = format!("@projectionist/mark/*/{}", scope.replace(':', "%3A"));
    let (mut hashes, mut fields) = (0, 0);
    for primary in cluster.primaries() {
        let mut node = cluster.node(primary);
        let keys: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut node)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for key in keys {
            let length: usize = redis::cmd("HLEN").arg(&key).query(&mut node).unwrap();
            hashes += 1;
            fields += length;
        }
    }
    (hashes, fields)
}
