//! Key-value buckets: ingest membership and partition leases, alert leaders, alert state.

use std::time::Duration;

use super::ProjectNames;
use crate::kv::BucketSettings;

/// Ingest replicas' membership and trace-partition leases: entries live one lease TTL.
pub fn ingest_lease_bucket(names: &ProjectNames, ttl: Duration, replicas: usize) -> BucketSettings {
    BucketSettings {
        bucket: names.ingest_bucket(),
        description: "Umpire ingest membership and trace-partition leases".into(),
        history: 1,
        max_age: ttl,
        replicas,
    }
}

/// One alert leader per EvalPolicy (key `<policy>`): entries live one lease TTL.
pub fn alert_lease_bucket(names: &ProjectNames, ttl: Duration, replicas: usize) -> BucketSettings {
    BucketSettings {
        bucket: names.alert_lease_bucket(),
        description: "Umpire alert leaders: one evaluator replica per EvalPolicy".into(),
        history: 1,
        max_age: ttl,
        replicas,
    }
}

/// Pending and firing alerts of each policy (`<policy>.<rule>.<group hash>`); kept until
/// rewritten.
pub fn alert_state_bucket(names: &ProjectNames, replicas: usize) -> BucketSettings {
    BucketSettings {
        bucket: names.alert_state_bucket(),
        description: "Umpire alert state: pending and firing alerts of each EvalPolicy".into(),
        history: 1,
        max_age: Duration::ZERO,
        replicas,
    }
}

/// The LLM judges' shared limits (`<policy>.<judge>.requests.<minute>`,
/// `<policy>.<judge>.tokens.<day>`): a counter is only needed for its minute or day, so
/// entries go two days after their last change.
pub fn budget_bucket(names: &ProjectNames, replicas: usize) -> BucketSettings {
    BucketSettings {
        bucket: names.budget_bucket(),
        description: "Umpire LLM judge limits shared by each EvalPolicy's replicas".into(),
        history: 1,
        max_age: Duration::from_secs(2 * 86_400),
        replicas,
    }
}
