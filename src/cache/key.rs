//! Keys and projections: `{projection_name}:::{identifier}`, split at the first `:::`.

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
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    name: String,
    id: String,
    value: Value,
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
    fn rejects_non_objects_and_bad_names() {
        assert!(Projection::new("p", "1", json!([1])).is_err());
        assert!(Projection::new("", "1", json!({})).is_err());
        assert!(Projection::new("a:::b", "1", json!({})).is_err());
        assert!(Projection::from_key("nokey", json!({})).is_err());
    }
}
