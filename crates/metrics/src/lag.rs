//! [`ReplicaLagSampler`]: each bulk server's replay lag in `db_replica_lag_seconds`, from the
//! connect crate's one lag sampler ([`LagSampler`], the same that lag routing runs).

use std::sync::Arc;
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_connect::LagSampler;

use crate::observer::DbMetrics;

/// Samples `db_replica_lag_seconds{bind="bulk",host="host:port"}` for every host of the bulk
/// URI, every `interval`, over one connection of its own per host (opened like the bulk pool's:
/// same TLS, timeouts and session setup, but not taken from the pool): [`LagSampler`] reporting
/// to [`DbMetrics`].
///
/// The value is 0 on a replica that has replayed all the WAL it received (caught up, also when
/// idle), the seconds since the last replayed transaction while it is behind, 0 for a primary
/// (e.g. bulk falling back to the primary), and NaN while the server cannot be reached or
/// queried. The task stops when this value is dropped.
///
/// As with any lag measured from `pg_last_xact_replay_timestamp()`: after the primary has been
/// idle, the first write not yet replayed shows the whole idle time for a sample, until replay
/// catches up (typically milliseconds, so rarely seen at a sampling interval of seconds).
#[derive(Debug)]
pub struct ReplicaLagSampler {
    _sampler: LagSampler,
}

impl ReplicaLagSampler {
    /// Starts sampling the bulk hosts of `settings` every `interval` (call within a tokio runtime).
    pub fn spawn(
        settings: &Settings,
        interval: Duration,
        metrics: Arc<DbMetrics>,
    ) -> ReplicaLagSampler {
        ReplicaLagSampler {
            _sampler: LagSampler::spawn(settings, interval, metrics),
        }
    }
}
