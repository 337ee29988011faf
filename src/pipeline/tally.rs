//! What a landed commit counts: events applied and skipped, writes by
//! operation, and each written projection's freshness, on the handles each
//! route resolved at start (no label lookup per event or write).

use super::Pipeline;
use super::fold::Folded;
use crate::cache::WriteOp;

impl Pipeline {
    /// Count a commit that landed: `writes` are `folded.writes` as cache
    /// operations, one for one and in the same order.
    pub(super) fn tally(&self, folded: &Folded, writes: &[WriteOp]) {
        for (route, metrics) in self.route_metrics.iter().enumerate() {
            let (applied, skipped) = (folded.applied[route], folded.skipped[route]);
            if applied > 0 {
                metrics.projected.inc_by(applied);
            }
            if skipped > 0 {
                metrics.skipped.inc_by(skipped);
            }
        }
        let now = chrono::Utc::now();
        for (write, op) in folded.writes.iter().zip(writes) {
            let metrics = &self.route_metrics[write.route];
            match op {
                WriteOp::Upsert { .. } => metrics.upserts.inc(),
                WriteOp::Delete { .. } => metrics.deletes.inc(),
            }
            // Freshness: how old the newest event folded into it is now.
            if let Some(time) = write.event_time {
                let age = (now - time).num_milliseconds().max(0) as f64 / 1000.0;
                metrics.freshness.observe(age);
            }
        }
    }
}
