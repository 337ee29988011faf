//! The TTL a write keeps when it is counted from its event's time.

use super::*;
use chrono::{Duration as Age, Utc};

#[test]
fn a_ttl_from_the_event_counts_its_age_and_runs_out() {
    let hour = Expiry::After(Ttl::from_secs(3600).unwrap());
    let now = Utc::now();
    let left = expiry_from_event(hour, Some(now - Age::minutes(45)), now);
    let Some(Expiry::After(ttl)) = left else {
        panic!("{left:?}")
    };
    assert!((ttl.as_secs_f64() - 900.0).abs() < 1.0, "{ttl:?}");
    assert_eq!(
        expiry_from_event(hour, Some(now - Age::hours(2)), now),
        None
    );
    // No event time: the TTL counts from the write.
    assert_eq!(expiry_from_event(hour, None, now), Some(hour));
    assert_eq!(
        expiry_from_event(Expiry::Never, Some(now), now),
        Some(Expiry::Never)
    );
}
