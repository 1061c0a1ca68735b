//! Long holds: when each connection of a pool was checked out, sampled by a task that reports
//! the longest current checkout and warns once about each one held past `long_hold_warning`.
//!
//! The checkout path only writes its own connection's slot (an uncontended lock, no shared
//! state); the sampler walks the slots about once a second, so the cost of watching is paid
//! there, not per checkout.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use notify_db_connect::{Bind, CheckoutToken, ConnInfo, PoolObserver, log_long_hold};

/// How often the longest checkout is sampled (and long holds looked for) at most.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One physical connection's checkout state.
pub(crate) struct HoldSlot {
    info: ConnInfo,
    state: Mutex<Hold>,
}

#[derive(Default)]
struct Hold {
    /// When the current checkout began; `None` while the connection is idle in the pool.
    since: Option<Instant>,
    /// The observer's token of the current checkout (its request context), handed back on return.
    token: CheckoutToken,
    /// The long-hold warning of this checkout was given.
    warned: bool,
}

impl HoldSlot {
    /// A checkout began at `at`.
    pub(crate) fn start(&self, at: Instant, token: CheckoutToken) {
        let mut hold = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *hold = Hold {
            since: Some(at),
            token,
            warned: false,
        };
    }

    /// The checkout ended: gives back the observer's token.
    pub(crate) fn end(&self) -> CheckoutToken {
        let mut hold = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        hold.since = None;
        hold.token.take()
    }
}

/// Every live connection's slot, for one pool.
#[derive(Default)]
pub(crate) struct Holds {
    slots: Mutex<Vec<Weak<HoldSlot>>>,
}

impl Holds {
    /// A slot for a new connection (slots of closed connections are dropped here).
    pub(crate) fn register(&self, info: &ConnInfo) -> Arc<HoldSlot> {
        let slot = Arc::new(HoldSlot {
            info: info.clone(),
            state: Mutex::new(Hold::default()),
        });
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    }

    /// The longest current checkout at `now`; calls `long` once for each checkout held past
    /// `threshold` (zero: never).
    fn sample(
        &self,
        now: Instant,
        threshold: Duration,
        mut long: impl FnMut(&ConnInfo, Duration, &CheckoutToken),
    ) -> Duration {
        let live: Vec<Arc<HoldSlot>> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut longest = Duration::ZERO;
        for slot in live {
            let mut hold = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(since) = hold.since else { continue };
            let held = now.saturating_duration_since(since);
            longest = longest.max(held);
            if !threshold.is_zero() && held >= threshold && !hold.warned {
                hold.warned = true;
                long(&slot.info, held, &hold.token);
            }
        }
        longest
    }
}

/// Samples `holds` while `pool_open()` (the pool is neither dropped nor closed): reports the longest checkout to the observer and
/// warns about each checkout held past `threshold`, once.
pub(crate) fn spawn_sampler(
    pool_open: impl Fn() -> bool + Send + 'static,
    holds: Arc<Holds>,
    bind: Bind,
    threshold: Duration,
    observer: Option<Arc<dyn PoolObserver>>,
) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // A short threshold (tests) is checked often enough to warn near it.
    let period = if threshold.is_zero() {
        SAMPLE_EVERY
    } else {
        (threshold / 4).clamp(Duration::from_millis(10), SAMPLE_EVERY)
    };
    handle.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !pool_open() {
                return;
            }
            let longest =
                holds.sample(
                    Instant::now(),
                    threshold,
                    |info, held, token| match &observer {
                        Some(o) => o.held_long(info, held, threshold, token),
                        None => log_long_hold(info, held, threshold, None),
                    },
                );
            if let Some(o) = &observer {
                o.longest_checkout(bind, longest);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: i32) -> ConnInfo {
        ConnInfo {
            id: pid as u64,
            bind: Bind::Default,
            host: "db".into(),
            port: 5432,
            server_addr: None,
            in_recovery: false,
            backend_pid: pid,
        }
    }

    #[test]
    fn the_longest_hold_is_reported_and_each_long_one_warned_once() {
        let holds = Holds::default();
        let (a, b) = (holds.register(&info(1)), holds.register(&info(2)));
        let t0 = Instant::now();
        a.start(t0, Some(Box::new(7_u8)));
        b.start(t0 + Duration::from_secs(5), None);
        let mut warned = Vec::new();
        let sample = |at: Duration, warned: &mut Vec<i32>| {
            holds.sample(t0 + at, Duration::from_secs(10), |i, _, token| {
                assert_eq!(i.backend_pid == 1, token.is_some());
                warned.push(i.backend_pid);
            })
        };
        assert_eq!(
            sample(Duration::from_secs(8), &mut warned),
            Duration::from_secs(8)
        );
        assert!(warned.is_empty());
        assert_eq!(
            sample(Duration::from_secs(12), &mut warned),
            Duration::from_secs(12)
        );
        assert_eq!(
            sample(Duration::from_secs(16), &mut warned),
            Duration::from_secs(16)
        );
        assert_eq!(
            warned,
            vec![1, 2],
            "once per long hold, not once per sample"
        );
        assert!(a.end().is_some(), "the token comes back on return");
        assert_eq!(
            sample(Duration::from_secs(20), &mut warned),
            Duration::from_secs(15)
        );
        b.end();
        assert_eq!(sample(Duration::from_secs(21), &mut warned), Duration::ZERO);
        drop((a, b));
        let c = holds.register(&info(3));
        assert_eq!(c.info.backend_pid, 3);
        assert_eq!(
            holds.slots.lock().map(|s| s.len()).unwrap_or(0),
            1,
            "dead slots pruned"
        );
    }
}
