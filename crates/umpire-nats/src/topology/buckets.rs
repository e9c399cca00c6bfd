//! Key-value buckets: ingest membership and partition leases, alert leaders, alert state;
//! and the object store of alert window snapshots.

use std::time::Duration;

use async_nats::jetstream::stream;

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

/// How long an export report lives unless its replica rewrites it (every
/// [`EXPORT_REPORT_REFRESH`]): a stopped replica's report disappears after this.
pub const EXPORT_REPORT_TTL: Duration = Duration::from_secs(600);
/// How often a running replica rewrites its export reports.
pub const EXPORT_REPORT_REFRESH: Duration = Duration::from_secs(120);

/// Each ingest replica's delivery state per export target and signal
/// (`<target>.<signal>.<member>`), read by the controller for the TraceProject's status.
pub fn export_status_bucket(names: &ProjectNames, replicas: usize) -> BucketSettings {
    BucketSettings {
        bucket: names.export_status_bucket(),
        description: "Umpire export delivery state, per target, signal and ingest replica".into(),
        history: 1,
        max_age: EXPORT_REPORT_TTL,
        replicas,
    }
}

/// The stream behind the object store of alert window snapshots (one object per policy,
/// replaced on every save). Laid out exactly as async-nats' `create_object_store` lays it
/// out, so `get_object_store` reads it; made through [`crate::streams::ensure_stream`] so
/// its replicas follow the project's like every other stream.
pub fn alert_snapshot_store(names: &ProjectNames, replicas: usize) -> stream::Config {
    let bucket = names.alert_snapshot_bucket();
    stream::Config {
        name: format!("OBJ_{bucket}"),
        description: Some("Umpire alert window snapshots: one per EvalPolicy".into()),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        max_bytes: 1 << 30,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Default::default()
    }
}
