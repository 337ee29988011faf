//! A rebuild's operations on one Redis: keys listed by prefix (`SCAN` with a
//! `MATCH` on the escaped prefix) and key rotations, one script per page.

use redis::Value as Reply;

use super::{RedisCache, unavailable};
use crate::cache::{CacheResult, RotateWhen, Rotation};

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// `KEYS`: per rotation its live, incoming and outgoing keys. `ARGV[1]`: '1'
/// to rotate only where the incoming key exists, '0' only where it is absent
/// and the live key exists. Values move with their remaining TTLs. Returns
/// how many rotated.
const ROTATE_SCRIPT: &str = r#"
local function move(from, to)
  local value = redis.call('GET', from)
  if not value then
    redis.call('UNLINK', to)
    return
  end
  local ttl = redis.call('PTTL', from)
  if ttl > 0 then
    redis.call('SET', to, value, 'PX', ttl)
  else
    redis.call('SET', to, value)
  end
end
local moved = 0
for i = 1, #KEYS, 3 do
  local live, incoming, outgoing = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local present = redis.call('EXISTS', incoming) == 1
  local selected
  if ARGV[1] == '1' then
    selected = present
  else
    selected = (not present) and redis.call('EXISTS', live) == 1
  end
  if selected then
    move(live, outgoing)
    move(incoming, live)
    redis.call('UNLINK', incoming)
    moved = moved + 1
  end
end
return moved
"#;

impl RedisCache {
    pub(super) async fn keys_page(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> CacheResult<(Vec<String>, Option<String>)> {
        let start = cursor.unwrap_or_else(|| "0".to_owned());
        let mut command = redis::cmd("SCAN");
        command
            .arg(&start)
            .arg("MATCH")
            .arg(format!("{}*", escape_glob(prefix)))
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, raw): (String, Vec<Vec<u8>>) =
            self.query(&command).await.map_err(unavailable)?;
        let keys = raw
            .into_iter()
            .filter_map(|key| String::from_utf8(key).ok())
            .collect();
        Ok((keys, (next != "0").then_some(next)))
    }

    pub(super) async fn rotate_keys(
        &self,
        rotations: &[Rotation],
        when: RotateWhen,
    ) -> CacheResult<usize> {
        if rotations.is_empty() {
            return Ok(0);
        }
        let all: Vec<&Rotation> = rotations.iter().collect();
        let command = rotate_command(&all, when);
        let moved: Reply = self.query(&command).await.map_err(unavailable)?;
        Ok(match moved {
            Reply::Int(moved) => usize::try_from(moved).unwrap_or(0),
            _ => 0,
        })
    }
}

/// One [`ROTATE_SCRIPT`] over `rotations` (on a cluster, all in one slot).
pub(crate) fn rotate_command(rotations: &[&Rotation], when: RotateWhen) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(ROTATE_SCRIPT).arg(rotations.len() * 3);
    for rotation in rotations {
        command
            .arg(&rotation.live)
            .arg(&rotation.incoming)
            .arg(&rotation.outgoing);
    }
    command.arg(if when == RotateWhen::IncomingPresent {
        "1"
    } else {
        "0"
    });
    command
}

/// `prefix` as a glob matching itself only.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn a_prefix_with_glob_characters_matches_only_itself() {
        assert_eq!(escape_glob("@p/a*b?[c]\\"), "@p/a\\*b\\?\\[c\\]\\\\");
    }
}
