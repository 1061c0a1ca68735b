//! pgbench `-j 2`'s shape for our own clients: two threads, each a current-thread runtime
//! driving half of the N clients over connections of its own, as pgbench's two threads each
//! drive half of its connections.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify_db_testdb::Endpoint;

use super::cpu::cpu_now;
use super::workload::{MEASURE, Round, STOP, WARMUP, client_runtime};

/// Runs `n` clients on two threads for `duration` after a 200 ms warm-up: `open(ep, k)` opens
/// a thread's connections to `ep` for its k clients (before the warm-up, outside the measured part),
/// `client(state, i, phase, seed)` is its i-th client's loop. The round's CPU is this process's
/// and the server's (`postmaster`) over the measured part.
pub(super) fn two_threads<S, O, OF, C, CF>(
    ep: &Endpoint,
    n: usize,
    duration: Duration,
    postmaster: u32,
    open: O,
    client: C,
) -> Result<Round>
where
    S: 'static,
    O: Fn(Endpoint, usize) -> OF + Clone + Send + 'static,
    OF: Future<Output = Result<S>>,
    C: Fn(&S, usize, Arc<AtomicU8>, u64) -> CF + Clone + Send + 'static,
    CF: Future<Output = Result<u64>> + Send + 'static,
{
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let ready = Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (ep, open, client) = (ep.clone(), open.clone(), client.clone());
            let (phase, ready) = (phase.clone(), ready.clone());
            let clients = n / 2 + (n % 2) * (1 - t);
            std::thread::spawn(move || -> Result<u64> {
                // Reach the barrier even when setup fails, or the main thread would wait forever.
                let setup = client_runtime(true).and_then(|rt| {
                    let state = rt.block_on(open(ep, clients))?;
                    Ok((rt, state))
                });
                ready.wait();
                let (rt, state) = setup?;
                rt.block_on(async {
                    let tasks: Vec<_> = (0..clients)
                        .map(|i| {
                            let seed = 0x9E37_79B9_7F4A_7C15 ^ ((t * 1000 + i) as u64 + 1);
                            tokio::spawn(client(&state, i, phase.clone(), seed))
                        })
                        .collect();
                    let mut total = 0;
                    for task in tasks {
                        total += task.await.context("a benchmark client panicked")??;
                    }
                    Ok(total)
                })
            })
        })
        .collect();
    ready.wait();
    std::thread::sleep(Duration::from_millis(200));
    phase.store(MEASURE, Ordering::Relaxed);
    let before = cpu_now(postmaster);
    let started = Instant::now();
    std::thread::sleep(duration);
    phase.store(STOP, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let after = cpu_now(postmaster);
    let mut total = 0u64;
    for t in threads {
        total += t
            .join()
            .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??;
    }
    Ok(Round::of_clients(total, elapsed, (before, after)))
}
