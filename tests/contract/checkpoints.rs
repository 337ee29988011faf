//! The checkpoint half of the port: claims and compared, atomic commits.
//! Every refusal must leave both the data and the checkpoint untouched.

use projectionist::cache::{
    Advance, Claim, Commit, CommitOutcome, Expiry, Partition, Version, WriteOp,
};
use serde_json::json;

use crate::{Adapter, Fixture};

fn scope(fixture: &Fixture) -> String {
    format!("{}group/cache", fixture.prefix)
}

fn orders(number: i32) -> Partition {
    Partition::new("orders", number)
}

/// What a partition never applied in this scope starts from: the group's
/// Kafka offsets on Redis (`None`), the log's start on memory, which forgets
/// everything on restart.
fn fresh(fixture: &Fixture) -> Option<i64> {
    match fixture.adapter {
        Adapter::Redis | Adapter::Cluster => None,
        Adapter::Memory => Some(0),
    }
}

fn upsert(fixture: &Fixture, id: &str, n: i64) -> WriteOp {
    WriteOp::Upsert {
        projection: fixture.projection("counters", id, json!({ "n": n })),
        expiry: Expiry::CacheDefault,
    }
}

async fn claim(fixture: &Fixture, partitions: &[Partition]) -> Vec<Claim> {
    fixture
        .cache
        .claim(&scope(fixture), partitions)
        .await
        .unwrap()
}

async fn commit(
    fixture: &Fixture,
    advances: &[Advance],
    expected: &[(String, Version)],
    writes: &[WriteOp],
) -> CommitOutcome {
    let scope = scope(fixture);
    let commit = Commit {
        scope: &scope,
        advances,
        expected,
        writes,
        generation: 0,
    };
    fixture.cache.commit(commit).await.unwrap()
}

async fn stored_n(fixture: &Fixture, id: &str) -> Option<i64> {
    let found = fixture
        .cache
        .get(&fixture.key("counters", id))
        .await
        .unwrap();
    found.map(|projection| projection.value()["n"].as_i64().unwrap())
}

pub async fn claims_hand_out_ever_larger_epochs(fixture: &Fixture) {
    let partitions = [orders(0), orders(1)];
    let first = claim(fixture, &partitions).await;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|claim| claim.next == fresh(fixture)));
    let second = claim(fixture, &partitions).await;
    for (before, after) in first.iter().zip(&second) {
        assert!(after.epoch > before.epoch, "{first:?} then {second:?}");
    }
}

pub async fn a_commit_writes_and_advances_together(fixture: &Fixture) {
    let [claimed] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    let advance = Advance {
        partition: orders(0),
        epoch: claimed.epoch,
        from: claimed.next,
        to: 10,
    };
    let key = fixture.key("counters", "a");
    let outcome = commit(
        fixture,
        std::slice::from_ref(&advance),
        &[(key, None)],
        &[upsert(fixture, "a", 1)],
    )
    .await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(stored_n(fixture, "a").await, Some(1));
    let [again] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    assert_eq!(again.next, Some(10), "the checkpoint moved with the write");
    // Checkpoints are bookkeeping: no seed method ever sees them.
    assert_eq!(fixture.cache.count(&fixture.pattern("*")).await.unwrap(), 1);
    let all = fixture
        .cache
        .get_all(&fixture.pattern("*"), 0, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

pub async fn a_commit_repeated_after_it_landed_is_refused_as_moved_to_its_end(fixture: &Fixture) {
    let [claimed] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    let advances = [Advance {
        partition: orders(0),
        epoch: claimed.epoch,
        from: claimed.next,
        to: 5,
    }];
    let writes = [upsert(fixture, "a", 1)];
    let first = commit(fixture, &advances, &[], &writes).await;
    assert_eq!(first, CommitOutcome::Applied);
    // The retry of a write that timed out but landed: nothing applies twice,
    // and the answer says the checkpoint already stands at the batch's end.
    let writes = [upsert(fixture, "a", 2)];
    let second = commit(fixture, &advances, &[], &writes).await;
    assert_eq!(
        second,
        CommitOutcome::Moved {
            index: 0,
            stored: Some(5)
        }
    );
    assert_eq!(stored_n(fixture, "a").await, Some(1));
}

pub async fn an_older_epoch_is_fenced_and_writes_nothing(fixture: &Fixture) {
    let [zombie] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    let [owner] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    let advances = [Advance {
        partition: orders(0),
        epoch: zombie.epoch,
        from: zombie.next,
        to: 3,
    }];
    let outcome = commit(fixture, &advances, &[], &[upsert(fixture, "a", 7)]).await;
    assert_eq!(
        outcome,
        CommitOutcome::Fenced {
            index: 0,
            stored: owner.epoch
        }
    );
    assert_eq!(stored_n(fixture, "a").await, None);
}

pub async fn a_commit_in_a_scope_never_claimed_is_unclaimed(fixture: &Fixture) {
    let advances = [Advance {
        partition: orders(3),
        epoch: 1,
        from: None,
        to: 3,
    }];
    let outcome = commit(fixture, &advances, &[], &[upsert(fixture, "a", 7)]).await;
    assert_eq!(outcome, CommitOutcome::Unclaimed { index: 0 });
    assert_eq!(stored_n(fixture, "a").await, None);
}

pub async fn a_changed_read_key_or_a_wrong_start_refuses_the_whole_commit(fixture: &Fixture) {
    let claims = claim(fixture, &[orders(0), orders(1)]).await;
    let advances: Vec<Advance> = claims
        .iter()
        .enumerate()
        .map(|(number, claim)| Advance {
            partition: orders(number as i32),
            epoch: claim.epoch,
            from: claim.next,
            to: 4,
        })
        .collect();
    fixture
        .cache
        .add(&fixture.projection("counters", "b", json!({"n": 9})), None)
        .await
        .unwrap();
    // Read as absent, but somebody wrote it since.
    let key = fixture.key("counters", "b");
    let writes = [upsert(fixture, "a", 1), upsert(fixture, "b", 1)];
    let outcome = commit(fixture, &advances, &[(key.clone(), None)], &writes).await;
    assert_eq!(outcome, CommitOutcome::Conflict);
    // Read holding a text, then changed, then removed since.
    let read = fixture
        .cache
        .get_many_versioned(std::slice::from_ref(&key))
        .await
        .unwrap();
    let held = vec![(key.clone(), read[0].1.clone())];
    assert!(held[0].1.is_some());
    let changed = fixture.projection("counters", "b", json!({"n": 10}));
    fixture.cache.add(&changed, None).await.unwrap();
    let outcome = commit(fixture, &advances, &held, &writes).await;
    assert_eq!(
        outcome,
        CommitOutcome::Conflict,
        "changed since it was read"
    );
    fixture.cache.remove_by_key(&key).await.unwrap();
    let outcome = commit(fixture, &advances, &held, &writes).await;
    assert_eq!(
        outcome,
        CommitOutcome::Conflict,
        "removed since it was read"
    );
    let original = fixture.projection("counters", "b", json!({"n": 9}));
    fixture.cache.add(&original, None).await.unwrap();
    // As it was read: the check passes, so only the wrong start below refuses.
    // A start the checkpoint does not hold, on the second partition.
    let mut wrong = advances.clone();
    wrong[1].from = Some(2);
    let outcome = commit(fixture, &wrong, &[], &writes).await;
    assert_eq!(
        outcome,
        CommitOutcome::Moved {
            index: 1,
            stored: fresh(fixture)
        }
    );
    assert_eq!(
        stored_n(fixture, "a").await,
        None,
        "nothing of either landed"
    );
    assert_eq!(stored_n(fixture, "b").await, Some(9));
    let again = claim(fixture, &[orders(0), orders(1)]).await;
    assert!(again.iter().all(|claim| claim.next == fresh(fixture)));
}

pub async fn applied_reads_the_checkpoint_a_commit_advanced(fixture: &Fixture) {
    let scope = scope(fixture);
    let [claimed] = claim(fixture, &[orders(0)]).await[..] else {
        panic!("one claim for one partition");
    };
    let applied = |partition| {
        let scope = scope.clone();
        async move { fixture.cache.applied(&scope, &partition).await.unwrap() }
    };
    assert_eq!(applied(orders(0)).await, fresh(fixture));
    let advance = Advance {
        partition: orders(0),
        epoch: claimed.epoch,
        from: claimed.next,
        to: 7,
    };
    let outcome = commit(fixture, &[advance], &[], &[upsert(fixture, "a", 1)]).await;
    assert_eq!(outcome, CommitOutcome::Applied);
    assert_eq!(applied(orders(0)).await, Some(7));
    assert_eq!(applied(orders(1)).await, None, "a partition never claimed");
    let elsewhere = format!("{}other/cache", fixture.prefix);
    let other = fixture.cache.applied(&elsewhere, &orders(0)).await.unwrap();
    assert_eq!(other, None, "another scope's checkpoint is its own");
}

pub async fn pauses_are_kept_per_group_and_setting_one_twice_is_harmless(fixture: &Fixture) {
    let group = format!("{}group", fixture.prefix);
    let other = format!("{}other", fixture.prefix);
    let cache = &fixture.cache;
    assert!(cache.paused(&group).await.unwrap().is_empty());
    cache
        .set_paused(&group, "order_summary", true)
        .await
        .unwrap();
    cache
        .set_paused(&group, "order_summary", true)
        .await
        .unwrap();
    cache.set_paused(&group, "daily_sales", true).await.unwrap();
    cache
        .set_paused(&group, "daily_sales", false)
        .await
        .unwrap();
    cache
        .set_paused(&group, "never_paused", false)
        .await
        .unwrap();
    let paused: Vec<String> = cache.paused(&group).await.unwrap().into_iter().collect();
    assert_eq!(paused, ["order_summary"]);
    assert!(cache.paused(&other).await.unwrap().is_empty());
    // Bookkeeping: no seed method ever sees it.
    assert_eq!(cache.count(&fixture.pattern("*")).await.unwrap(), 0);
}
