//! The memory adapter's glob matcher against the real thing: for generated keys
//! and patterns, `glob::matches(pattern, key)` must equal what a real
//! `redis-server` answers to `SCAN 0 MATCH glob::to_redis(pattern)` over the same
//! keys. Patterns are drawn from an alphabet full of special characters, and
//! half of them are derived from the keys so that matches are common.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;

use projectionist::cache::glob;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::redis::RedisServer;

/// Every character with a meaning to the matcher, some plain ones, `:` (our key
/// separator) and a two-byte one (`?` takes one byte, not one character).
const ALPHABET: &[char] = &[
    '*', '?', '[', ']', '^', '!', '-', '\\', '.', 'a', 'b', 'c', ':', 'é',
];
const KEYS_PER_CASE: usize = 40;
const PATTERNS_PER_CASE: usize = 8;
const CASES: u32 = 500;

/// A private server, loaded with one batch of keys at a time.
struct Probe {
    _server: RedisServer,
    connection: redis::Connection,
}

impl Probe {
    fn start() -> Self {
        let server = RedisServer::start();
        let connection = redis::Client::open(server.url(0))
            .unwrap()
            .get_connection()
            .unwrap();
        Probe {
            _server: server,
            connection,
        }
    }

    /// Replace the server's keys with `keys`, in one round trip. FLUSHDB is fine
    /// here: the server belongs to this test alone.
    fn load(&mut self, keys: &BTreeSet<String>) {
        let mut pipeline = redis::pipe();
        pipeline.cmd("FLUSHDB").ignore();
        if !keys.is_empty() {
            let mset = pipeline.cmd("MSET");
            for key in keys {
                mset.arg(key).arg(1);
            }
            mset.ignore();
        }
        pipeline.exec(&mut self.connection).unwrap();
    }

    /// The loaded keys Redis's `SCAN ... MATCH` returns for our `pattern`.
    fn scan(&mut self, pattern: &str) -> BTreeSet<String> {
        let redis_pattern = glob::to_redis(pattern);
        let mut found = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&redis_pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut self.connection)
                .unwrap();
            found.extend(keys);
            if next == 0 {
                return found;
            }
            cursor = next;
        }
    }
}

fn ours(keys: &BTreeSet<String>, pattern: &str) -> BTreeSet<String> {
    keys.iter()
        .filter(|key| glob::matches(pattern, key))
        .cloned()
        .collect()
}

fn text(max_len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..=max_len)
        .prop_map(|chars| chars.into_iter().collect())
}

/// A pattern made from `key`: each character kept, replaced by a wildcard, put
/// in a class (plain, negated either way, or as a range end), escaped or dropped.
fn derive_pattern(key: &str, edits: &[u8]) -> String {
    let mut pattern = String::new();
    for (c, edit) in key.chars().zip(edits.iter().chain(std::iter::repeat(&0))) {
        match edit {
            0..=2 => pattern.push(c),
            3 => pattern.push('?'),
            4 => pattern.push('*'),
            5 => pattern.extend(['\\', c]),
            6 => pattern.extend(['[', c, ']']),
            7 => pattern.extend(['[', '^', c, ']']),
            8 => pattern.extend(['[', '!', c, ']']),
            9 => pattern.extend(['[', 'a', '-', c, ']']),
            _ => {}
        }
    }
    pattern
}

fn case() -> impl Strategy<Value = (BTreeSet<String>, Vec<String>)> {
    prop::collection::btree_set(text(8), 1..=KEYS_PER_CASE).prop_flat_map(|keys| {
        let listed: Vec<String> = keys.iter().cloned().collect();
        let derived = (
            prop::sample::select(listed),
            prop::collection::vec(0u8..11, 0..=8),
        )
            .prop_map(|(key, edits)| derive_pattern(&key, &edits));
        let pattern = prop_oneof![text(8), derived];
        (
            Just(keys),
            prop::collection::vec(pattern, PATTERNS_PER_CASE),
        )
    })
}

#[test]
fn matcher_agrees_with_redis_on_generated_keys_and_patterns() {
    let probe = RefCell::new(Probe::start());
    let matched_somewhere = RefCell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |(keys, patterns)| {
        let mut probe = probe.borrow_mut();
        probe.load(&keys);
        for pattern in patterns {
            let expected = probe.scan(&pattern);
            let actual = ours(&keys, &pattern);
            if !actual.is_empty() {
                *matched_somewhere.borrow_mut() += 1;
            }
            prop_assert_eq!(
                &actual,
                &expected,
                "pattern {:?} (sent to Redis as {:?})",
                pattern,
                glob::to_redis(&pattern)
            );
        }
        Ok::<(), TestCaseError>(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The generator is only worth something if patterns do match keys.
    let total = (CASES as usize) * PATTERNS_PER_CASE;
    assert!(
        *matched_somewhere.borrow() > total / 4,
        "only {} of {total} patterns matched any key",
        matched_somewhere.borrow()
    );
}

/// Every quirk `glob.rs` reproduces, checked against Redis itself.
#[test]
fn quirks_agree_with_redis() {
    let keys: BTreeSet<String> = [
        "", "a", "b", "c", "z", "ab", "abc", "a.c", "é", "aé", "]", "[", "^", "!", "-", "\\", "*",
        "?", "a]", "a-", "[a]", "!a]", "\u{1}", "~", "ÿ", "a\\", "x[", "x^",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let stars = "a*".repeat(1100);
    let patterns = [
        // unterminated classes run to the end of the pattern
        "[abc",
        "[^",
        "[",
        "[a-",
        "x[!",
        "x[^",
        "[\\",
        // `?` is one byte, `é` two
        "?",
        "??",
        "a?",
        "a??",
        // `[a-]` is a range ending at `]`; reversed ranges are swapped
        "[a-]",
        "[a-]b]",
        "[c-a]",
        "[-a]",
        "[a-b-c]",
        // ranges compare signed chars: bytes from 0x80 sort below ASCII
        "[ -é]",
        "[é- ]",
        "[a-é]",
        "[\u{1}-é]",
        // escapes, inside and outside classes, and a trailing backslash
        "\\",
        "a\\",
        "\\\\",
        "[\\]]",
        "[\\-]",
        "\\[a]",
        "\\[!a]",
        "[\\",
        // `]` first closes at once; a negated empty class takes any byte
        "[]",
        "[]!]",
        "[^]",
        "[!]",
        "[]a]",
        // our `[!...]` negation, rewritten for Redis
        "[!a]",
        "[!a-c]",
        "[^!a]",
        "[!^a]",
        "[a!]",
        // stars: the lone `*` takes even the empty key, `**` does not
        "*",
        "**",
        "a**",
        "*a*",
        "*]",
        "*\\*",
        // nesting deeper than Redis allows
        stars.as_str(),
    ];
    let mut probe = Probe::start();
    probe.load(&keys);
    let mut deep_key_set = BTreeSet::new();
    deep_key_set.insert("a".repeat(1200));
    for pattern in patterns {
        assert_eq!(
            ours(&keys, pattern),
            probe.scan(pattern),
            "pattern {pattern:?} (sent to Redis as {:?})",
            glob::to_redis(pattern)
        );
    }
    probe.load(&deep_key_set);
    for pattern in [stars.as_str(), &"a*".repeat(900), "*a*"] {
        assert_eq!(
            ours(&deep_key_set, pattern),
            probe.scan(pattern),
            "{} bytes of pattern",
            pattern.len()
        );
    }
}
