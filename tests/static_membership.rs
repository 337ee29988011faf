//! Static group membership: `kafka.instance_id` is validated like the other
//! keys, and a daemon killed with SIGKILL and restarted under the same id gets
//! its partitions back at once, not after the dead member's session timeout
//! (real daemon binary, tansu, Redis).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use projectionist::config::load_with_env;

use support::daemon::{BinaryDaemon, Setup, setup, wait_for};
use support::kafka::{Broker, unique};
use support::redis::RedisServer;
use support::shop::story;

/// Long on purpose: a restart that waited for the dead member's session
/// would take this long, one that takes the partitions back far less.
///
/// Measured on tansu 0.6.0: under the same instance id the restarted daemon
/// is assigned after about 6.3 s (tansu holds a static member's JoinGroup and
/// SyncGroup for 3 s each); without an instance id, after about 27 s.
const SESSION_TIMEOUT_MS: u64 = 30_000;

fn config_with(kafka: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("[kafka]\n{kafka}\n")).unwrap();
    std::fs::create_dir(dir.path().join("projections")).unwrap();
    (dir, path)
}

fn errors_of(kafka: &str) -> Vec<String> {
    let (_dir, path) = config_with(kafka);
    load_with_env(&path, BTreeMap::new())
        .expect_err("the configuration should be rejected")
        .errors
}

#[test]
fn instance_id_comes_from_the_file_or_the_environment() {
    let (_dir, path) = config_with("instance_id = \"projectionist-0\"");
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    assert_eq!(
        settings.kafka.instance_id.as_deref(),
        Some("projectionist-0")
    );

    let pod = "projectionist-7d4b9c6f5-x2k8q";
    let environment = BTreeMap::from([(
        "PROJECTIONIST__KAFKA__INSTANCE_ID".to_owned(),
        pod.to_owned(),
    )]);
    let settings = load_with_env(&path, environment).unwrap();
    assert_eq!(settings.kafka.instance_id.as_deref(), Some(pod));

    let (_dir, path) = config_with("brokers = \"k:9092\"");
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    assert_eq!(settings.kafka.instance_id, None);
}

#[test]
fn a_bad_instance_id_names_the_file_the_key_the_value_and_the_rule() {
    for (value, shown) in [
        ("\"\"", "\"\""),
        ("\"pod 1\"", "\"pod 1\""),
        ("\"a\\tb\"", "\"a\\tb\""),
    ] {
        let errors = errors_of(&format!("instance_id = {value}"));
        let expected =
            format!("config.toml: kafka.instance_id = {shown} is not a group instance id");
        assert!(
            errors.iter().any(|error| error.contains(&expected)),
            "no {expected:?} in {errors:#?}"
        );
    }
    let errors = errors_of("[kafka.properties]\n\"group.instance.id\" = \"x\"");
    assert!(
        errors
            .iter()
            .any(|error| error.contains("kafka.instance_id")),
        "{errors:#?}"
    );
}

/// The daemon binary under `setup`'s config with static membership and a long
/// session; its log goes to `log`.
fn spawn(setup: &Setup, log: &std::path::Path) -> BinaryDaemon {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(["run", "--config"])
        .arg(&setup.config)
        .env("RUST_LOG", "info,rdkafka=warn")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the projectionist binary runs");
    BinaryDaemon(child)
}

/// `projectionist_consumer_assigned 1` on the daemon's /metrics.
fn assigned(setup: &Setup) -> bool {
    let (status, metrics) = setup.http("/metrics");
    status == 200
        && metrics
            .lines()
            .any(|line| line == "projectionist_consumer_assigned 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_killed_and_restarted_under_its_instance_id_gets_its_partitions_back_at_once() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(
            "\"session.timeout.ms\" = \"6000\"",
            &format!("\"session.timeout.ms\" = \"{SESSION_TIMEOUT_MS}\""),
        )
        .replacen(
            "[kafka]\n",
            &format!("[kafka]\ninstance_id = \"{}\"\n", unique("pod")),
            1,
        );
    std::fs::write(&setup.config, text).unwrap();
    let records = story(&setup.orders, &setup.inventory, 40, 10);
    let (first, second) = records.split_at(records.len() / 2);
    for record in first {
        broker
            .produce(&record.topic, &record.key, &record.payload(), &[], None)
            .await;
    }
    let log = setup.dir.path().join("daemon.log");
    let mut daemon = spawn(&setup, &log);
    setup.wait_caught_up(broker, Duration::from_secs(60)).await;

    daemon.kill().unwrap(); // SIGKILL: no commit, no LeaveGroup
    daemon.wait().unwrap();
    for record in second {
        broker
            .produce(&record.topic, &record.key, &record.payload(), &[], None)
            .await;
    }
    let restarted_at = Instant::now();
    let _daemon = spawn(&setup, &log.with_extension("restarted.log"));
    let within = Duration::from_millis(SESSION_TIMEOUT_MS / 2);
    wait_for("the restarted daemon's assignment", within, || async {
        assigned(&setup)
    })
    .await;
    let reassigned = restarted_at.elapsed();
    setup.wait_caught_up(broker, within).await;
    eprintln!(
        "restart under the same instance id: assigned after {reassigned:?}, caught up after {:?} \
         (session.timeout.ms = {SESSION_TIMEOUT_MS})",
        restarted_at.elapsed()
    );
}
