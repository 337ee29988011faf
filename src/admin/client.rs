//! The command line's side of the admin API: one HTTP/1.1 request per
//! command over a plain TCP connection (the API is plain HTTP, reached inside
//! the cluster or through `kubectl port-forward`), JSON back.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// How long a command waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the admin API listens when `--admin` is not given.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:8081";

/// The environment variable a mutating command reads its bearer token from
/// (never a flag: command lines show up in `ps` and shell histories).
pub const TOKEN_ENV: &str = "PROJECTIONIST_ADMIN_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--admin {0:?} is not an http://host:port address")]
    Address(String),
    #[error("cannot reach the admin API at {address}: {error}")]
    Unreachable {
        address: String,
        error: std::io::Error,
    },
    #[error("the admin API answered something that is not HTTP with JSON: {0}")]
    Protocol(String),
}

/// An admin API at `http://host:port`, with the token for mutations.
pub struct AdminClient {
    authority: String,
    token: Option<String>,
    /// How long an answer may take: longer for a promotion or a replay.
    timeout: Duration,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> Result<AdminClient, ClientError> {
        let authority = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(ClientError::Address(url.to_owned()));
        }
        Ok(AdminClient {
            authority: authority.to_owned(),
            token,
            timeout: TIMEOUT,
        })
    }

    /// Wait this long for the answer (a replay answers when it is done).
    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = timeout;
        self
    }

    /// Send `method path`; the status code and the JSON body.
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, Value), ClientError> {
        let unreachable = |error| ClientError::Unreachable {
            address: self.authority.clone(),
            error,
        };
        let mut stream = TcpStream::connect(&self.authority).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(TIMEOUT))
            .map_err(unreachable)?;
        let authorization = match &self.token {
            Some(token) => format!("Authorization: Bearer {token}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.authority
        );
        stream.write_all(head.as_bytes()).map_err(unreachable)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).map_err(unreachable)?;
        parse(&response)
    }
}

/// Status and JSON body of a `Connection: close` response with a
/// `Content-Length` body (what axum sends for JSON).
fn parse(response: &[u8]) -> Result<(u16, Value), ClientError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no end of headers".to_owned()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("status line {head:?}")))?;
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).map_err(|error| ClientError::Protocol(error.to_string()))?
    };
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_responses_are_read() {
        assert!(AdminClient::new("http://10.0.0.1:8081", None).is_ok());
        assert!(AdminClient::new("localhost:8081/", None).is_ok());
        assert!(AdminClient::new("https://x/admin", None).is_err());
        let response = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}";
        let (status, body) = parse(response).unwrap();
        assert_eq!((status, body["error"].as_str()), (401, Some("x")));
    }
}
