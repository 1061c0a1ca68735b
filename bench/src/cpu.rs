//! CPU time per transaction from `/proc`: this process, its children (pgbench) and the server
//! (the postmaster and its backends), for the benchmarks' CPU figures.

use std::process::Command;

/// CPU time in clock ticks (user + system), for the per-transaction CPU figures.
#[derive(Clone, Copy, Default)]
pub(super) struct Cpu {
    /// This process (every thread: the client runtimes).
    pub(super) own: u64,
    /// This process's waited-for children (pgbench).
    pub(super) children: u64,
    /// The server: the postmaster with its reaped children, plus its live backends.
    pub(super) server: u64,
    /// The machine: ticks of every CPU idle (idle + iowait) and in all, from `/proc/stat`.
    pub(super) machine: (u64, u64),
}

/// (utime + stime, cutime + cstime, ppid) of a process from `/proc/<pid>/stat`.
pub(super) fn proc_times(pid: &str) -> Option<(u64, u64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first.
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let n = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((n(11)? + n(12)?, n(13)? + n(14)?, rest.get(1)?.parse().ok()?))
}

pub(super) fn cpu_now(postmaster: u32) -> Cpu {
    let (own, children, _) = proc_times("self").unwrap_or_default();
    let (pm, pm_children, _) = proc_times(&postmaster.to_string()).unwrap_or_default();
    let backends: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.bytes().all(|b| b.is_ascii_digit()).then_some(name)
        })
        .filter_map(|pid| proc_times(&pid))
        .filter(|&(_, _, ppid)| ppid == postmaster)
        .map(|(t, _, _)| t)
        .sum();
    Cpu {
        own,
        children,
        server: pm + pm_children + backends,
        machine: machine_ticks().unwrap_or_default(),
    }
}

/// (idle + iowait, all) ticks summed over every CPU: the `cpu` line of `/proc/stat` (user nice
/// system idle iowait irq softirq steal; guest time is already in user).
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some((fields.get(3)? + fields.get(4)?, fields.iter().sum()))
}

/// The share of the machine's CPU time that was idle between two snapshots: what a client too
/// slow to keep the server busy leaves unused (0 when unknown).
pub(super) fn idle_share(before: Cpu, after: Cpu) -> f64 {
    let idle = after.machine.0.saturating_sub(before.machine.0);
    let all = after.machine.1.saturating_sub(before.machine.1);
    if all == 0 {
        0.0
    } else {
        idle as f64 / all as f64
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`; 100 on Linux).
pub(super) fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Microseconds of client and server CPU per transaction between two snapshots.
pub(super) fn cpu_per_txn(before: Cpu, after: Cpu, client_children: bool, txns: f64) -> (f64, f64) {
    let ticks = clock_ticks();
    let us = |d: u64| d as f64 * 1e6 / ticks / txns.max(1.0);
    let client = if client_children {
        after.children.saturating_sub(before.children)
    } else {
        after.own.saturating_sub(before.own)
    };
    (us(client), us(after.server.saturating_sub(before.server)))
}
