//! A handle of its own (`MetricsHandle::new`) inside a runtime drains histogram samples with a
//! periodic upkeep task, which ends once nothing can record into it any more.

use std::time::{Duration, Instant};

use notify_db_metrics::MetricsHandle;

/// The crate's upkeep period is 5 s.
const UPKEEP: Duration = Duration::from_secs(5);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn a_local_handle_runs_upkeep_while_its_observer_lives_and_then_stops() {
    let before = alive();
    let handle = MetricsHandle::new();
    assert_eq!(alive(), before + 1, "an upkeep task is spawned");
    // Pools hold the observer: recording goes on after the handle is dropped.
    let observer = handle.observer();
    drop(handle);
    tokio::time::sleep(UPKEEP + Duration::from_secs(1)).await;
    assert_eq!(
        alive(),
        before + 1,
        "upkeep goes on while the observer lives"
    );
    drop(observer);
    let deadline = Instant::now() + 3 * UPKEEP;
    while alive() > before {
        assert!(
            Instant::now() < deadline,
            "the upkeep task outlived its observer by {:?}",
            3 * UPKEEP
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
