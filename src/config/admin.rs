//! The `[admin]` section: where the operator's API listens and the bearer
//! token its mutating endpoints demand. The token is a secret: it is never
//! printed, not even by `Debug`.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

/// A token shorter than this is guessable.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    /// Set it from a Secret: `PROJECTIONIST__ADMIN__TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// `None`: no admin API (nothing listens). Equal to `server.listen`:
    /// served on that port too (for `dev`; a deployment keeps them apart).
    pub listen: Option<SocketAddr>,
    /// Without one, every mutating endpoint is refused.
    pub token: Option<AdminToken>,
}

/// The bearer token of the admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `offered` is the token, in time independent of where they differ.
    pub fn matches(&self, offered: &str) -> bool {
        let (expected, offered) = (self.0.as_bytes(), offered.as_bytes());
        if expected.len() != offered.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(offered)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

pub fn validate_admin(raw: RawAdmin, errors: &mut Vec<String>) -> Option<AdminSettings> {
    let listen = match raw
        .listen
        .map(|listen| (listen.parse::<SocketAddr>(), listen))
    {
        None => Ok(None),
        Some((Ok(address), _)) => Ok(Some(address)),
        Some((Err(_), listen)) => {
            errors.push(format!(
                "admin.listen = {listen:?} is not an address like \"0.0.0.0:8081\""
            ));
            Err(())
        }
    };
    let token = match raw.token {
        None => None,
        Some(token) if token.trim().chars().count() < MIN_TOKEN_LEN => {
            errors.push(format!(
                "admin.token is shorter than {MIN_TOKEN_LEN} characters: use a random secret"
            ));
            None
        }
        Some(token) => Some(AdminToken(token.trim().to_owned())),
    };
    Some(AdminSettings {
        listen: listen.ok()?,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_compared_whole_and_never_shown() {
        let token = AdminToken("correct horse battery staple".to_owned());
        assert!(token.matches("correct horse battery staple"));
        assert!(!token.matches("correct horse battery stapl"));
        assert!(!token.matches("correct horse battery staplf"));
        assert!(!format!("{token:?}").contains("horse"));
    }

    #[test]
    fn a_short_token_or_a_bad_address_is_named() {
        let mut errors = Vec::new();
        let raw = RawAdmin {
            listen: Some("nowhere".to_owned()),
            token: Some("short".to_owned()),
        };
        assert!(validate_admin(raw, &mut errors).is_none());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|error| !error.contains("\"short\"")));
    }
}
