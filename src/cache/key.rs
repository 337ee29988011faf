//! Keys and projections: `{projection_name}:::{identifier}`, split at the first `:::`.

use std::cell::RefCell;
use std::sync::OnceLock;

use serde_json::Value;

/// Separates the projection name from the identifier; only the first one counts,
/// so an identifier may itself contain `:::`.
pub const KEY_SEPARATOR: &str = ":::";

/// Whether `key` is a projection entry the seed's methods see: it has a
/// `:::`, and it is not one of our own bookkeeping keys (a rebuild's shadow
/// keys hold a projection key inside them).
pub fn is_entry_key(key: &str) -> bool {
    separator_at(key).is_some() && !key.starts_with(super::BOOKKEEPING_PREFIX)
}

/// Split a key into `(projection_name, identifier)`, or `None` when it has no `:::`.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let at = separator_at(key)?;
    Some((&key[..at], &key[at + KEY_SEPARATOR.len()..]))
}

/// Where the first `:::` starts. A plain byte scan: keys are a few dozen
/// bytes, and `str::find` sets up a two-way searcher first that costs more
/// than the scan, paid for every key a batch loads and writes.
fn separator_at(key: &str) -> Option<usize> {
    key.as_bytes()
        .windows(KEY_SEPARATOR.len())
        .position(|window| window == KEY_SEPARATOR.as_bytes())
}

/// A denormalized read model: a JSON object stored under `name:::id`.
#[derive(Debug, Clone)]
pub struct Projection {
    name: String,
    id: String,
    value: Value,
    /// The value's JSON text, written the first time an adapter asks for it
    /// ([`Projection::text`]) and kept: the pipeline keeps a written state
    /// with the exact text the cache holds, to compare against on its next
    /// write without reading it back. The value never changes after
    /// construction, so the text cannot go stale.
    text: OnceLock<Box<str>>,
}

/// Equal when name, identifier and value are: whether the text was written
/// yet is not part of what a projection is.
impl PartialEq for Projection {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.id == other.id && self.value == other.value
    }
}

thread_local! {
    /// Where texts are written before being copied out at their exact size.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Projection {
    /// A projection named `name` with identifier `id`. The name must be non-empty
    /// and free of `:::` (else the key would split elsewhere); the value an object.
    pub fn new(
        name: impl Into<String>,
        id: impl Into<String>,
        value: Value,
    ) -> Result<Self, String> {
        let name = name.into();
        if name.is_empty() || separator_at(&name).is_some() {
            return Err(format!(
                "projection name {name:?} must be non-empty and must not contain {KEY_SEPARATOR:?}"
            ));
        }
        if !value.is_object() {
            return Err(format!("a projection must be a JSON object, got {value}"));
        }
        Ok(Projection {
            name,
            id: id.into(),
            value,
            text: OnceLock::new(),
        })
    }

    /// Rebuild a projection read back under `key`.
    pub fn from_key(key: &str, value: Value) -> Result<Self, String> {
        let (name, id) = split_key(key)
            .ok_or_else(|| format!("key {key:?} has no {KEY_SEPARATOR:?} separator"))?;
        Projection::new(name, id, value)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn into_value(self) -> Value {
        self.value
    }

    /// The value as compact JSON text, the form every adapter stores.
    ///
    /// Written once, into a reused buffer, then copied into an allocation of
    /// exactly its size: a `String` grown while writing ends with up to twice
    /// the room it needs, and shrinking it in place keeps the allocator's
    /// larger block (mimalloc keeps a block at most twice the new size).
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            SCRATCH.with_borrow_mut(|scratch| {
                scratch.clear();
                // Not `Value::to_string`: that goes through `fmt::Write` and
                // is half as fast.
                serde_json::to_writer(&mut *scratch, &self.value)
                    .expect("a JSON value always serializes, and into memory nothing fails");
                std::str::from_utf8(scratch)
                    .expect("serde_json writes UTF-8")
                    .into()
            })
        })
    }

    /// The value and, if an adapter wrote it, its text.
    pub fn into_parts(self) -> (Value, Option<Box<str>>) {
        (self.value, self.text.into_inner())
    }

    /// The same value under another name and identifier, with its text if
    /// it was written already.
    pub fn renamed(&self, name: &str, id: &str) -> Result<Self, String> {
        let renamed = Projection::new(name, id, self.value.clone())?;
        if let Some(text) = self.text.get() {
            let _ = renamed.text.set(text.clone());
        }
        Ok(renamed)
    }

    pub fn key(&self) -> String {
        // Sized exactly: the memory cache keeps this allocation for as long as
        // the entry lives, and `format!` would leave it up to twice too big.
        let mut key = String::with_capacity(self.name.len() + KEY_SEPARATOR.len() + self.id.len());
        key.push_str(&self.name);
        key.push_str(KEY_SEPARATOR);
        key.push_str(&self.id);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_joins_name_and_identifier() {
        let projection = Projection::new("order_summary", "ord-123", json!({})).unwrap();
        assert_eq!(projection.key(), "order_summary:::ord-123");
    }

    #[test]
    fn only_the_first_separator_splits() {
        let projection = Projection::from_key("a:::b:::c", json!({"x": 1})).unwrap();
        assert_eq!((projection.name(), projection.id()), ("a", "b:::c"));
        assert_eq!(projection.key(), "a:::b:::c");
    }

    #[test]
    fn the_byte_scan_splits_where_str_split_once_does() {
        let keys = [
            "a:::b", "a:::::b", "::a:::b", ":::", "a::b", "a:::", ":::b", "", ":", "::", "é:::ü",
            "a:: :::b", "a::::b",
        ];
        for key in keys {
            assert_eq!(split_key(key), key.split_once(KEY_SEPARATOR), "{key:?}");
            assert_eq!(is_entry_key(key), key.contains(KEY_SEPARATOR), "{key:?}");
        }
    }

    #[test]
    fn the_text_is_the_compact_json_and_equality_ignores_whether_it_was_written() {
        let value = json!({"b": [1, 2.5, null], "a": "é\"x"});
        let written = Projection::new("p", "1", value.clone()).unwrap();
        assert_eq!(written.text(), serde_json::to_string(&value).unwrap());
        assert_eq!(written, Projection::new("p", "1", value.clone()).unwrap());
        let renamed = written.renamed("q", "2").unwrap();
        assert_eq!(renamed.key(), "q:::2");
        let (back, text) = renamed.into_parts();
        assert_eq!((back, text.as_deref()), (value.clone(), Some(written.text())));
        // Never asked for, never written.
        let (_, text) = Projection::new("p", "1", value).unwrap().into_parts();
        assert_eq!(text, None);
    }

    #[test]
    fn rejects_non_objects_and_bad_names() {
        assert!(Projection::new("p", "1", json!([1])).is_err());
        assert!(Projection::new("", "1", json!({})).is_err());
        assert!(Projection::new("a:::b", "1", json!({})).is_err());
        assert!(Projection::from_key("nokey", json!({})).is_err());
    }
}
