//! Redis URIs: checked without IO for config validation, masked for logs.

use redis::IntoConnectionInfo;

/// Check a Redis URI without any IO: `redis://` or `rediss://` (TLS), optional
/// user and password, optional DB number. Used by config validation.
pub fn validate_uri(uri: &str) -> Result<(), String> {
    let shown = masked_uri(uri);
    let url = redis::parse_redis_url(uri)
        .ok_or_else(|| format!("{shown} is not a redis:// or rediss:// URI"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "{shown} has scheme {:?}; expected redis or rediss",
            url.scheme()
        ));
    }
    uri.into_connection_info()
        .map(|_| ())
        .map_err(|error| format!("{shown} is not a usable Redis URI: {error}"))
}

/// The URI with its password replaced by `***`, safe to log. Works on any text,
/// parseable or not, so an invalid URI can be reported without leaking secrets.
pub fn masked_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &uri[authority_start..];
    // The last `@` anywhere ends the user info, so a password with an unencoded
    // `@`, `/` or `#` stays hidden; masking too much is the safe mistake.
    let Some(at) = rest.rfind('@') else {
        return uri.to_owned();
    };
    let user_info = &rest[..at];
    let masked_user_info = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // `redis://secret@host`: a lone user info may well be a password.
        None => "***".to_owned(),
    };
    format!(
        "{}{masked_user_info}{}",
        &uri[..authority_start],
        &uri[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_redis_and_rediss_uris() {
        for uri in [
            "redis://127.0.0.1:6379/2",
            "redis://localhost",
            "rediss://user:secret@cache.example.com:6380/0",
            "redis://:secret@127.0.0.1/",
            "rediss://127.0.0.1:6380/#insecure",
        ] {
            assert_eq!(validate_uri(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        for uri in [
            "http://localhost:6379",
            "unix:///tmp/redis.sock",
            "localhost:6379",
            "redis://localhost/notadb",
            "",
        ] {
            assert!(validate_uri(uri).is_err(), "{uri} accepted");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        let error = validate_uri("redis://:hunter2@localhost/x").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("***"), "{error}");
    }

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            masked_uri("rediss://user:hunter2@host:6380/1"),
            "rediss://user:***@host:6380/1"
        );
        assert_eq!(masked_uri("redis://:p@ss@host/"), "redis://:***@host/");
        assert_eq!(masked_uri("redis://:pa/ss#x@host/2"), "redis://:***@host/2");
        assert_eq!(masked_uri("redis://hunter2@host"), "redis://***@host");
        assert_eq!(masked_uri("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(masked_uri("not a uri"), "not a uri");
    }
}
