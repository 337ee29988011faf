//! Time to live: positive, finite seconds with millisecond precision.

use std::time::Duration;

/// A validated TTL. Construction is the only place a TTL is checked, so every
/// adapter can trust it and validate before writing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(Duration);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{value} is not a positive number of seconds")]
pub struct TtlError {
    pub value: String,
}

impl Ttl {
    /// From seconds; `0`, negatives, NaN and infinities are errors. A positive TTL is
    /// rounded to whole milliseconds but never to `0 ms`, which Redis would reject.
    pub fn from_secs_f64(secs: f64) -> Result<Self, TtlError> {
        // `u64::MAX` ms is ~584 million years; anything longer is not a TTL but a typo.
        const MAX_SECS: f64 = 1e15;
        if !secs.is_finite() || secs <= 0.0 || secs > MAX_SECS {
            return Err(TtlError {
                value: secs.to_string(),
            });
        }
        let millis = (secs * 1000.0).round().max(1.0) as u64;
        Ok(Ttl(Duration::from_millis(millis)))
    }

    pub fn from_secs(secs: u64) -> Result<Self, TtlError> {
        Ttl::from_secs_f64(secs as f64)
    }

    /// Parse the text forms a config or an API accepts: `"3600"`, `" 120 "`, `"2.5"`.
    pub fn parse(text: &str) -> Result<Self, TtlError> {
        let invalid = || TtlError {
            value: format!("{text:?}"),
        };
        let secs: f64 = text.trim().parse().map_err(|_| invalid())?;
        Ttl::from_secs_f64(secs).map_err(|_| invalid())
    }

    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.0.as_secs_f64()
    }
}

/// How long a written projection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The cache's own default TTL.
    CacheDefault,
    After(Ttl),
    /// The projection never expires (declared explicitly in its definition).
    Never,
}

impl Expiry {
    /// The TTL this expiry stands for in a cache whose default is `default`;
    /// `None` for no expiry.
    pub fn ttl(self, default: Ttl) -> Option<Ttl> {
        match self {
            Expiry::CacheDefault => Some(default),
            Expiry::After(ttl) => Some(ttl),
            Expiry::Never => None,
        }
    }
}

/// What `get_ttl` answers for a live key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RemainingTtl {
    /// Seconds left, millisecond precision.
    Seconds(f64),
    /// The key has no expiry.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_positive_finite_seconds() {
        assert_eq!(Ttl::from_secs_f64(2.5).unwrap().as_millis(), 2500);
        assert_eq!(Ttl::parse(" 120 ").unwrap().as_millis(), 120_000);
        assert_eq!(Ttl::parse("3600").unwrap().as_millis(), 3_600_000);
    }

    #[test]
    fn a_tiny_positive_ttl_never_becomes_zero_milliseconds() {
        assert_eq!(Ttl::from_secs_f64(0.0001).unwrap().as_millis(), 1);
    }

    #[test]
    fn rejects_zero_negative_and_non_finite() {
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Ttl::from_secs_f64(bad).is_err(), "{bad} accepted");
        }
        for bad in ["", "abc", "nan", "inf", "-1", "0", "true"] {
            assert!(Ttl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
