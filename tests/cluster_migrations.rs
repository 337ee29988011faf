//! Slot migrations on a private Redis Cluster, back to back as the
//! migration trial does them (the 64 accounts' slots, each to another
//! primary), without a daemon but with writers on those slots and nodes
//! paused for a few milliseconds now and then, as on a loaded machine.
//! Afterwards every node must agree on who serves each moved slot, and a
//! key written before the moves must still be there: on Redis 7.0 moves
//! that do not wait for the cluster to agree can hand a slot back to its
//! old owner, which deletes its keys and leaves the two owners redirecting
//! to each other (see [`RedisCluster::migrate_slot`]).
//!
//! `MIGRATION_ROUNDS=<n>` repeats the 64 moves n times (a stress run);
//! `CLUSTER_NODE_LOGS=<folder>` keeps the nodes' logs.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use projectionist::cache::cluster::slots::slot_of;
use support::cluster::RedisCluster;
use support::trials::{Rng, chaos, signal};

const AGREEMENT: Duration = Duration::from_secs(10);

#[test]
fn back_to_back_slot_migrations_leave_every_node_agreeing() {
    let rounds: usize = std::env::var("MIGRATION_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    let cluster = RedisCluster::start();
    let keys: Vec<String> = (0..64)
        .map(|account| format!("counters:::a-{account}"))
        .collect();
    for key in &keys {
        let primary = cluster.primary_of(slot_of(key.as_bytes()));
        redis::cmd("SET")
            .arg(sentinel(key))
            .arg("1")
            .query::<()>(&mut cluster.node(primary))
            .expect("SET on the slot's primary");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let client = redis::cluster::ClusterClient::new(cluster.urls()).expect("seed URLs");
            let keys = keys.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut connection = client.get_connection().expect("a cluster connection");
                let mut failed = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for key in &keys {
                        if redis::cmd("INCR")
                            .arg(key)
                            .query::<i64>(&mut connection)
                            .is_err()
                        {
                            failed += 1;
                        }
                    }
                }
                failed
            })
        })
        .collect();
    // A loaded machine, as in CI: a node paused now and then for a few
    // milliseconds, so cluster-bus messages wait and arrive out of order.
    let pids: Vec<u32> = cluster
        .live_ports()
        .into_iter()
        .filter_map(|port| cluster.pid(port))
        .collect();
    let jitter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(chaos::seed());
            while !stop.load(Ordering::Relaxed) {
                let pid = pids[rng.below(pids.len() as u64) as usize];
                signal(pid, "STOP");
                std::thread::sleep(
                    rng.between(Duration::from_millis(1), Duration::from_millis(40)),
                );
                signal(pid, "CONT");
                std::thread::sleep(rng.between(Duration::ZERO, Duration::from_millis(20)));
            }
        })
    };
    for round in 1..=rounds {
        let started = Instant::now();
        for key in &keys {
            let slot = slot_of(key.as_bytes());
            let from = cluster.primary_of(slot);
            let to = cluster
                .primaries()
                .into_iter()
                .find(|&primary| primary != from)
                .expect("three primaries");
            cluster.migrate_slot(slot, to);
        }
        let moved = started.elapsed();
        for key in &keys {
            let slot = slot_of(key.as_bytes());
            let deadline = Instant::now() + AGREEMENT;
            loop {
                let owners = cluster.owners_of(slot);
                let first = owners.values().next().copied().flatten();
                if let Some(owner) = first
                    && owners.values().all(|seen| *seen == first)
                {
                    let found: Option<String> = redis::cmd("GET")
                        .arg(sentinel(key))
                        .query(&mut cluster.node(owner))
                        .expect("GET on the slot's owner");
                    assert!(
                        found.is_some(),
                        "round {round}: {key} (slot {slot}) was lost"
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let views: Vec<String> = owners
                        .keys()
                        .map(|&port| format!("--- {port}:\n{}", cluster.nodes_seen_by(port)))
                        .collect();
                    panic!(
                        "round {round}: nodes disagree on slot {slot} ({key}) {AGREEMENT:?} after the moves: {owners:?}\n{}",
                        views.join("\n")
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        eprintln!("round {round}: 64 moves in {moved:?}, every node agrees");
    }
    stop.store(true, Ordering::Relaxed);
    jitter.join().expect("the jitter thread");
    for writer in writers {
        let failed = writer.join().expect("a writer thread");
        eprintln!("a writer saw {failed} failed INCRs");
    }
}

/// A key in the same slot as `key` that is written once, so a slot that
/// lost its keys is noticed (the writers recreate theirs).
fn sentinel(key: &str) -> String {
    format!("sentinel{{{key}}}")
}
