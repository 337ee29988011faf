//! Contract cases for key patterns: Redis `MATCH` semantics on every adapter.

use projectionist::cache::Cache;
use serde_json::json;

use crate::Fixture;

/// Store one projection per id under `name`.
async fn store(fixture: &Fixture, name: &str, ids: &[&str]) {
    for id in ids {
        fixture
            .cache
            .add(&fixture.projection(name, id, json!({ "id": id })), None)
            .await
            .unwrap();
    }
}

/// The ids whose keys match `pattern` (given without the fixture's prefix), in
/// key order, checking that `get_all` and `count` agree.
async fn matched(fixture: &Fixture, pattern: &str) -> Vec<String> {
    let pattern = fixture.pattern(pattern);
    let cache: &dyn Cache = fixture.cache.as_ref();
    let found = cache.get_all(&pattern, 0, 1000).await.unwrap();
    assert_eq!(
        cache.count(&pattern).await.unwrap(),
        found.len(),
        "{pattern}"
    );
    found.into_iter().map(|p| p.id().to_owned()).collect()
}

pub async fn pattern_dot_is_literal_and_case_matters(fixture: &Fixture) {
    store(fixture, "dot", &["a.c", "abc", "a.cd", "A.c"]).await;
    assert_eq!(matched(fixture, "dot:::a.c").await, ["a.c"]);
    assert_eq!(matched(fixture, "dot:::a.*").await, ["a.c", "a.cd"]);
    assert_eq!(matched(fixture, "dot:::A*").await, ["A.c"]);
    assert_eq!(matched(fixture, "Dot:::*").await, Vec::<String>::new());
}

pub async fn pattern_question_mark_is_one_byte(fixture: &Fixture) {
    store(fixture, "q", &["a1", "ab", "a22", "é", "x"]).await;
    assert_eq!(matched(fixture, "q:::a?").await, ["a1", "ab"]);
    // `é` is two bytes in UTF-8: Redis's `?` takes one byte, so `??` matches it.
    assert_eq!(matched(fixture, "q:::?").await, ["x"]);
    assert_eq!(matched(fixture, "q:::??").await, ["a1", "ab", "é"]);
    assert_eq!(matched(fixture, "q:::a?2").await, ["a22"]);
}

pub async fn pattern_classes_ranges_and_negation(fixture: &Fixture) {
    store(fixture, "c", &["a", "b", "c", "d", "x", "-", "!", "^"]).await;
    assert_eq!(matched(fixture, "c:::[abc]").await, ["a", "b", "c"]);
    assert_eq!(matched(fixture, "c:::[a-c]").await, ["a", "b", "c"]);
    assert_eq!(
        matched(fixture, "c:::[c-a]").await,
        ["a", "b", "c"],
        "reversed range"
    );
    assert_eq!(
        matched(fixture, "c:::[^a]").await,
        ["!", "-", "^", "b", "c", "d", "x"]
    );
    assert_eq!(
        matched(fixture, "c:::[!a]").await,
        ["!", "-", "^", "b", "c", "d", "x"]
    );
    assert_eq!(
        matched(fixture, "c:::[^a-c]").await,
        ["!", "-", "^", "d", "x"]
    );
    assert_eq!(
        matched(fixture, "c:::[a!]").await,
        ["!", "a"],
        "! not first is literal"
    );
    assert_eq!(
        matched(fixture, "c:::[x^]").await,
        ["^", "x"],
        "^ not first is literal"
    );
    assert_eq!(matched(fixture, "c:::[-x]").await, ["-", "x"]);
}

pub async fn pattern_escapes(fixture: &Fixture) {
    store(fixture, "e", &["*", "?", "[x]", "a*", "ab", "\\", "x"]).await;
    assert_eq!(matched(fixture, "e:::\\*").await, ["*"]);
    assert_eq!(matched(fixture, "e:::a\\*").await, ["a*"]);
    assert_eq!(matched(fixture, "e:::a*").await, ["a*", "ab"]);
    assert_eq!(matched(fixture, "e:::\\?").await, ["?"]);
    assert_eq!(matched(fixture, "e:::\\[x]").await, ["[x]"]);
    assert_eq!(matched(fixture, "e:::\\\\").await, ["\\"]);
    assert_eq!(
        matched(fixture, "e:::\\x").await,
        ["x"],
        "escaping a plain byte"
    );
    assert_eq!(
        matched(fixture, "e:::[\\*]").await,
        ["*"],
        "escape inside a class"
    );
}
