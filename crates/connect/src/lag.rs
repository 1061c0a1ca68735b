//! Lag-aware bulk routing: a replica whose replay lag is over `pool.max_replica_lag` gets no
//! new bulk connections and its pooled ones are retired at their next checkout; when every
//! replica lags, bulk falls back to the primary (read-only, as always on bulk) and comes back
//! when they catch up. Lag is sampled per host in the background, never on a checkout (the
//! sampler, `sampler.rs`, writes these flags).

use std::sync::atomic::{AtomicBool, Ordering};

/// Where a connection was opened: a configured bulk host (by index) or the fallback primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The bulk URI's host with this index.
    Host(usize),
    /// The primary, while every replica lags.
    Fallback,
}

/// The lag state the bulk connector and the pool's recycle step read.
pub struct LagRouting {
    lagging: Vec<AtomicBool>,
}

impl LagRouting {
    /// No host lagging yet, for `hosts` bulk hosts.
    pub(crate) fn new(hosts: usize) -> LagRouting {
        LagRouting {
            lagging: (0..hosts).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Records whether host `i` is over the lag limit; true when that changed.
    pub(crate) fn set_lagging(&self, i: usize, lagging: bool) -> bool {
        self.lagging
            .get(i)
            .is_some_and(|l| l.swap(lagging, Ordering::Relaxed) != lagging)
    }

    /// Whether host `i` is over the lag limit.
    pub(crate) fn is_lagging(&self, i: usize) -> bool {
        self.lagging
            .get(i)
            .is_some_and(|l| l.load(Ordering::Relaxed))
    }

    /// Whether every replica lags, so bulk uses the primary.
    pub(crate) fn on_fallback(&self) -> bool {
        self.lagging.iter().all(|l| l.load(Ordering::Relaxed))
    }

    /// Whether a pooled connection opened on `route` should be replaced at checkout.
    pub fn should_retire(&self, route: Route) -> Option<&'static str> {
        match route {
            Route::Host(i) if self.is_lagging(i) => Some("its replica lags over the limit"),
            Route::Fallback if !self.on_fallback() => Some("a replica caught up"),
            _ => None,
        }
    }
}
