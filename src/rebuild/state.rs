//! A projection's rebuild state, as stored in its cache, and the names of
//! what a shadow owns (consumer group, keyspace).

use serde::{Deserialize, Serialize};

use crate::cache::{BOOKKEEPING_PREFIX, checkpoint_scope};

/// What a shadow is to the live version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A version being built to replace the live one.
    Candidate,
    /// The version a promotion replaced, kept up to date for a rollback.
    Previous,
}

/// A version folded beside the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    pub version: u32,
    pub role: Role,
    /// Unique per build (milliseconds since the epoch when it began): its
    /// consumer group and keyspace are new, never a leftover's.
    pub build: i64,
    /// A promotion of this shadow is under way: live writers hold.
    #[serde(default)]
    pub promoting: bool,
    /// During a promotion, the build the live version's keys move to (it
    /// becomes the previous version's shadow), and whether the new values
    /// have started moving in: a promotion resumed after a crash skips the
    /// steps it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<i64>,
    #[serde(default)]
    pub rotating: bool,
    /// Built from the first records at or after this time (milliseconds
    /// since the epoch), not from the start of the topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
}

/// A projection's versions: the live one and its shadow, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub live: u32,
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

/// The note holding projection `name`'s [`State`] in consumer group `group`.
pub fn state_key(group: &str, name: &str) -> String {
    format!("{BOOKKEEPING_PREFIX}rebuild/{}/{name}", escape(group))
}

/// The note holding version `version` of `name`'s definition text.
pub fn definition_key(group: &str, name: &str, version: u32) -> String {
    format!(
        "{BOOKKEEPING_PREFIX}definition/{}/{name}/v{version}",
        escape(group)
    )
}

/// Keep a group name from forming `:::` (a projection key) or a hash tag.
fn escape(group: &str) -> String {
    group
        .replace('%', "%25")
        .replace(':', "%3A")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Shadow {
    /// The consumer group that builds this shadow.
    pub fn group(&self, group: &str, name: &str) -> String {
        format!("{group}.shadow.{name}.{}", self.build)
    }

    /// Where this shadow's checkpoint lives, per cache.
    pub fn scope(&self, group: &str, name: &str, cache: &str) -> String {
        checkpoint_scope(&self.group(group, name), cache)
    }

    /// The prefix of every key of this shadow's keyspace.
    pub fn prefix(&self, group: &str, name: &str) -> String {
        format!(
            "{BOOKKEEPING_PREFIX}shadow/{}/{name}/{}/",
            escape(group),
            self.build
        )
    }
}

/// The shadow of live key `live` under a keyspace's `prefix` (see
/// [`Shadow::prefix`]): the prefix, then the hash tag of the live key's slot
/// (so on a cluster both live in one slot and a rotation is one script),
/// then the live key.
pub fn shadow_key(prefix: &str, live: &str) -> String {
    let slot = crate::cache::cluster::slots::slot_of(live.as_bytes());
    format!(
        "{prefix}{{{}}}/{live}",
        crate::cache::cluster::slots::tag(slot)
    )
}

/// The live key inside a shadow key of keyspace `prefix`.
pub fn live_key_of<'a>(prefix: &str, shadow: &'a str) -> Option<&'a str> {
    let rest = shadow.strip_prefix(prefix)?;
    let (_, live) = rest.split_once("}/")?;
    Some(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadow() -> Shadow {
        Shadow {
            version: 2,
            role: Role::Candidate,
            build: 17,
            promoting: false,
            outgoing: None,
            rotating: false,
            from_ms: None,
        }
    }

    #[test]
    fn a_shadow_key_shares_its_live_keys_slot_and_gives_it_back() {
        let shadow = shadow();
        let live = "order_summary:::ord-1";
        let key = shadow_key(&shadow.prefix("shop", "order_summary"), live);
        assert!(key.starts_with("@projectionist/shadow/shop/order_summary/17/{"));
        use crate::cache::cluster::slots::slot_of;
        assert_eq!(slot_of(key.as_bytes()), slot_of(live.as_bytes()));
        let prefix = shadow.prefix("shop", "order_summary");
        assert_eq!(live_key_of(&prefix, &key), Some(live));
    }

    #[test]
    fn a_group_cannot_make_a_key_look_like_a_projection_or_a_tag() {
        let key = shadow_key(&shadow().prefix("a:::b{c}", "p"), "p:::1");
        let prefix = shadow().prefix("a:::b{c}", "p");
        assert!(!prefix.contains(":::") && !prefix.contains('{'));
        assert_eq!(live_key_of(&prefix, &key), Some("p:::1"));
    }

    #[test]
    fn the_state_reads_back_as_written() {
        let state = State {
            live: 1,
            shadow: Some(shadow()),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), state);
    }
}
