//! Configuration: the example file loads, environment overrides apply, and every
//! kind of mistake is reported with the key (and file) it concerns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use projectionist::cache::Expiry;
use projectionist::config::{Provider, StartFrom, load_with_env};
use projectionist::projection::load_dir;
use projectionist::projector::Registry;

/// `projectionist check --config PATH`, as a user runs it.
fn check(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.example.toml")
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Write `text` as a config file in a fresh folder (with an empty projections dir).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir(dir.path().join("projections")).unwrap();
    (dir, path)
}

fn errors_of(text: &str) -> Vec<String> {
    let (_dir, path) = config_file(text);
    load_with_env(&path, BTreeMap::new())
        .expect_err("the configuration should be rejected")
        .errors
}

fn assert_error(text: &str, needle: &str) {
    let errors = errors_of(text);
    assert!(
        errors.iter().any(|error| error.contains(needle)),
        "no error containing {needle:?} in {errors:#?}"
    );
}

#[test]
fn the_example_config_loads_with_its_projections() {
    let settings = load_with_env(&example(), BTreeMap::new()).unwrap();
    assert_eq!(settings.kafka.group_id, "projectionist");
    assert_eq!(settings.kafka.start_from, StartFrom::Earliest);
    assert_eq!(
        settings.kafka.dead_letter_topic.as_deref(),
        Some("projectionist.dead-letters")
    );
    let default = &settings.caches["default"];
    assert_eq!(
        default.provider,
        Provider::Redis {
            uri: "redis://localhost:6379/0".into()
        }
    );
    assert_eq!(default.ttl.as_millis(), 300_000);
    assert_eq!(settings.caches["hot"].provider, Provider::Memory);
    assert_eq!(settings.server.listen.port(), 8080);
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let names: Vec<_> = definitions.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "customer_orders",
            "daily_sales",
            "order_summary",
            "product_stock"
        ]
    );
    let order_summary = &definitions[2];
    assert_eq!(
        order_summary.expiry,
        Expiry::After(projectionist::cache::Ttl::from_secs(86400).unwrap())
    );
    assert_eq!(definitions[0].expiry, Expiry::Never);
}

#[test]
fn environment_overrides_win_over_the_file() {
    let settings = load_with_env(
        &example(),
        env(&[
            ("PROJECTIONIST__KAFKA__BROKERS", "kafka-0:9092,kafka-1:9092"),
            ("PROJECTIONIST__CACHES__DEFAULT__TTL", " 3600 "),
            (
                "PROJECTIONIST__CACHES__DEFAULT__URI",
                "redis://:s3cret@redis:6379/2",
            ),
            ("PROJECTIONIST__KAFKA__PROPERTIES__SASL_PASSWORD", "hunter2"),
            ("PROJECTIONIST__PIPELINE__BATCH_SIZE", "250"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.kafka.brokers, "kafka-0:9092,kafka-1:9092");
    assert_eq!(settings.caches["default"].ttl.as_millis(), 3_600_000);
    assert_eq!(
        settings.caches["default"].provider,
        Provider::Redis {
            uri: "redis://:s3cret@redis:6379/2".into()
        }
    );
    assert_eq!(settings.kafka.properties["sasl.password"], "hunter2");
    assert_eq!(settings.pipeline.batch_size, 250);
}

#[test]
fn a_redis_cluster_cache_takes_seed_nodes_from_the_file_or_the_environment() {
    let (_dir, path) = config_file(
        "[caches.default]\nprovider = \"redis_cluster\"\nnodes = [\"redis://a:7000\", \"redis://b:7001\"]\nrewind = 250\n",
    );
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    assert_eq!(
        settings.caches["default"].provider,
        Provider::RedisCluster {
            nodes: vec!["redis://a:7000".into(), "redis://b:7001".into()],
            rewind: 250
        }
    );
    let (_dir, path) = config_file("[caches.default]\nprovider = \"redis_cluster\"\n");
    let settings = load_with_env(
        &path,
        env(&[(
            "PROJECTIONIST__CACHES__DEFAULT__NODES",
            "redis://:pw@a:7000, redis://:pw@b:7001",
        )]),
    )
    .unwrap();
    assert_eq!(
        settings.caches["default"].provider,
        Provider::RedisCluster {
            nodes: vec!["redis://:pw@a:7000".into(), "redis://:pw@b:7001".into()],
            rewind: 1000
        }
    );
}

#[test]
fn no_caches_section_means_one_memory_cache_of_300_seconds() {
    let (_dir, path) = config_file("[kafka]\nbrokers = \"k:9092\"\n");
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    assert_eq!(settings.caches.len(), 1);
    assert_eq!(settings.caches["default"].provider, Provider::Memory);
    assert_eq!(settings.caches["default"].ttl.as_millis(), 300_000);
}

#[test]
fn ttl_accepts_numbers_and_numeric_strings() {
    for (text, millis) in [
        ("120", 120_000),
        ("\" 120 \"", 120_000),
        ("\"2.5\"", 2_500),
        ("0.5", 500),
    ] {
        let (_dir, path) = config_file(&format!("[caches.default]\nTTL = {text}\n"));
        let settings = load_with_env(&path, BTreeMap::new()).unwrap();
        assert_eq!(
            settings.caches["default"].ttl.as_millis(),
            millis,
            "TTL = {text}"
        );
    }
}

#[test]
fn bad_ttls_name_the_cache_and_the_value() {
    for bad in ["0", "-5", "nan", "inf", "true", "\"abc\"", "\"-1\"", "\"\""] {
        let text = format!("[caches.default]\nprovider = \"memory\"\n[caches.hot]\nTTL = {bad}\n");
        assert_error(&text, "caches.hot.TTL = ");
        assert_error(&text, "is not a positive number of seconds");
    }
}

#[test]
fn each_kind_of_bad_config_names_its_key() {
    let cases = [
        (
            "[caches.default]\nprovider = \"memcached\"\n",
            "caches.default.provider = \"memcached\" is not a cache provider (valid: memory, redis, redis_cluster)",
        ),
        (
            "[caches.default]\nprovider = \"redis\"\n",
            "caches.default.URI is required",
        ),
        (
            "[caches.default]\nprovider = \"redis\"\nURI = \"http://x\"\n",
            "caches.default.URI is not a Redis URI",
        ),
        (
            "[caches.hot]\nprovider = \"memory\"\n",
            "a [caches.default] table is required",
        ),
        (
            "[caches.default]\nprovider = \"memory\"\ncolour = 1\n",
            "colour",
        ),
        ("[kafka]\nbrokerz = \"x\"\n", "brokerz"),
        (
            "[server]\nlisten = \"everywhere\"\n",
            "server.listen = \"everywhere\"",
        ),
        (
            "[kafka]\nstart_from = \"middle\"\n",
            "kafka.start_from = \"middle\"",
        ),
        (
            "[kafka]\ndead_letter_topic = \"bad topic!\"\n",
            "kafka.dead_letter_topic",
        ),
        (
            "[kafka.properties]\n\"enable.auto.offset.store\" = true\n",
            "enable.auto.offset.store",
        ),
        ("[pipeline]\nbatch_size = 0\n", "pipeline.batch_size = 0"),
        (
            "[pipeline]\ndrain_timeout_secs = \"soon\"\n",
            "pipeline.drain_timeout_secs",
        ),
        (
            "[events]\nenvelope = \"avro\"\n",
            "events.envelope = \"avro\"",
        ),
        (
            "[events]\nenvelope = \"json\"\n",
            "events.type_pointer is required",
        ),
        (
            "[events]\nenvelope = \"json\"\ntype_pointer = \"eventType\"\n",
            "events.type_pointer = \"eventType\" is not a JSON pointer",
        ),
        ("[unknown]\nx = 1\n", "unknown"),
        (
            "[caches.default]\nprovider = \"redis_cluster\"\n",
            "caches.default.nodes is required when provider = \"redis_cluster\"",
        ),
        (
            "[caches.default]\nprovider = \"redis_cluster\"\nnodes = []\n",
            "caches.default.nodes: no seed nodes",
        ),
        (
            "[caches.default]\nprovider = \"redis_cluster\"\nnodes = [\"redis://a:1/2\"]\n",
            "names database 2; a Redis Cluster has only database 0",
        ),
        (
            "[caches.default]\nprovider = \"redis_cluster\"\nnodes = [\"http://a:1\"]\n",
            "caches.default.nodes: ",
        ),
        (
            "[caches.default]\nprovider = \"redis\"\nURI = \"redis://a:1/0\"\nnodes = [\"redis://a:1\"]\n",
            "caches.default.nodes is only for provider = \"redis_cluster\"",
        ),
        (
            "[caches.default]\nprovider = \"redis_cluster\"\nnodes = [\"redis://a:1\"]\nrewind = -3\n",
            "caches.default.rewind = -3 is not a whole number of offsets",
        ),
    ];
    for (text, needle) in cases {
        assert_error(text, needle);
    }
}

#[test]
fn every_error_is_reported_at_once_with_the_file() {
    let errors = errors_of(
        "[caches.default]\nprovider = \"nope\"\n[caches.hot]\nTTL = -1\n[pipeline]\nbatch_size = -3\n",
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors.iter().all(|error| error.contains("config.toml: ")),
        "{errors:#?}"
    );
}

fn definitions_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = config_file("[caches.default]\nprovider = \"memory\"\n");
    for (name, text) in files {
        std::fs::write(dir.path().join("projections").join(name), text).unwrap();
    }
    (dir, path)
}

const GOOD: &str = r#"
name = "order_summary"
topics = ["shop.orders"]
event_types = ["shop.order.placed"]
identifier = "{data.order_id}"
projector = "order_summary"
"#;

#[test]
fn bad_definitions_name_the_file_the_projection_and_the_key() {
    let unknown_projector = GOOD.replace(
        "projector = \"order_summary\"",
        "projector = \"order_sumary\"",
    );
    let unknown_cache = GOOD.replace("topics", "cache = \"cold\"\ntopics");
    let bad_ttl = GOOD.replace("topics", "ttl = \"forever\"\ntopics");
    let bad_identifier = GOOD.replace("{data.order_id}", "{data.order_id");
    let unknown_key = GOOD.replace("topics", "topicz = []\ntopics");
    let duplicate = GOOD.to_owned();
    let (_dir, path) = definitions_dir(&[
        ("a.toml", &unknown_projector),
        ("b.toml", &unknown_cache),
        ("c.toml", &bad_ttl),
        ("d.toml", &bad_identifier),
        ("e.toml", &unknown_key),
        ("f.toml", GOOD),
        ("g.toml", &duplicate),
    ]);
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    let errors = load_dir(&settings, &Registry::with_builtins())
        .unwrap_err()
        .errors;
    let expect = [
        (
            "a.toml",
            "projector = \"order_sumary\" is not registered (registered: customer_orders, order_summary)",
        ),
        (
            "b.toml",
            "cache = \"cold\" is not configured (caches: default)",
        ),
        (
            "c.toml",
            "ttl = \"forever\" is not a positive number of seconds or \"never\"",
        ),
        ("d.toml", "identifier: unclosed '{'"),
        ("e.toml", "topicz"),
        (
            "g.toml",
            "projection \"order_summary\" is already defined in",
        ),
    ];
    for (file, needle) in expect {
        assert!(
            errors
                .iter()
                .any(|error| error.contains(file) && error.contains(needle)),
            "no error for {file} containing {needle:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
}

#[test]
fn check_exits_non_zero_listing_every_error() {
    let (dir, path) =
        definitions_dir(&[("a.toml", &GOOD.replace("order_summary\"\n", "nothing\"\n"))]);
    std::fs::write(&path, "[caches.default]\nprovider = \"memory\"\nTTL = 0\n").unwrap();
    let output = check(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("caches.default.TTL = 0 is not a positive number of seconds"),
        "{stderr}"
    );

    std::fs::write(&path, "[caches.default]\nprovider = \"memory\"\n").unwrap();
    let output = check(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("projector = \"nothing\" is not registered"),
        "{stderr}"
    );
    drop(dir);
}

#[test]
fn check_accepts_the_example_config() {
    let output = check(&example());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("4 projections"), "{stdout}");
}

const DECLARATIVE: &str = r#"
name = "paid_orders"
topics = ["shop.orders"]
identifier = "{data.order_id}"

[[handler]]
on = "shop.order.paid"
do = [{ set = "status", value = "paid" }]
"#;

#[test]
fn bad_handlers_name_the_file_the_projection_the_event_type_and_the_problem() {
    let unknown_operation = DECLARATIVE.replace("set = ", "sett = ");
    let bad_jq = DECLARATIVE.replace("value = \"paid\"", "from = \".data.amount +\"");
    let handled_twice = format!(
        "{DECLARATIVE}\n[[handler]]\non = \"shop.order.paid\"\ndo = [{{ unset = \"status\" }}]\n"
    );
    let both = format!("projector = \"order_summary\"\n{DECLARATIVE}");
    let neither = GOOD.replace("projector = \"order_summary\"\n", "");
    let other_types =
        DECLARATIVE.replace("topics", "event_types = [\"shop.order.placed\"]\ntopics");
    let (_dir, path) = definitions_dir(&[
        ("a.toml", &unknown_operation),
        ("b.toml", &bad_jq),
        ("c.toml", &handled_twice),
        ("d.toml", &both),
        ("e.toml", &neither),
        ("f.toml", &other_types),
        ("g.toml", &DECLARATIVE.replace("paid_orders", "fine")),
    ]);
    let settings = load_with_env(&path, BTreeMap::new()).unwrap();
    let errors = load_dir(&settings, &Registry::with_builtins())
        .unwrap_err()
        .errors;
    let on_paid = "projection \"paid_orders\": handler 1 on = \"shop.order.paid\": step 1: ";
    let expect = [
        ("a.toml", format!("{on_paid}unknown operation in {{ sett, value }}")),
        (
            "b.toml",
            format!("{on_paid}from: jq \".data.amount +\" does not parse"),
        ),
        (
            "c.toml",
            "projection \"paid_orders\": handler 2 on = \"shop.order.paid\": event type \"shop.order.paid\" is already handled by handler 1"
                .to_owned(),
        ),
        (
            "d.toml",
            "projection \"paid_orders\": give either projector = \"name\" (Rust) or [[handler]] tables, not both"
                .to_owned(),
        ),
        (
            "e.toml",
            "projection \"order_summary\": nothing folds it".to_owned(),
        ),
        (
            "f.toml",
            "projection \"paid_orders\": event_types = {\"shop.order.placed\"} differs from the event types the handlers are on, {\"shop.order.paid\"}"
                .to_owned(),
        ),
    ];
    for (file, needle) in &expect {
        assert!(
            errors
                .iter()
                .any(|error| error.contains(&format!("{file}: {needle}"))),
            "no error for {file} containing {needle:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
}

#[test]
fn check_lists_every_handler_error_at_once() {
    let (dir, path) = definitions_dir(&[
        ("a.toml", &DECLARATIVE.replace("set = ", "sett = ")),
        (
            "b.toml",
            &DECLARATIVE
                .replace("paid_orders", "other")
                .replace("value = \"paid\"", "from = \"now\""),
        ),
    ]);
    let output = check(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "a.toml: projection \"paid_orders\": handler 1 on = \"shop.order.paid\": step 1: unknown operation",
        "b.toml: projection \"other\": handler 1 on = \"shop.order.paid\": step 1: from: jq \"now\": undefined filter `now`",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in {stderr}");
    }
    drop(dir);
}
