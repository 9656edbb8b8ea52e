//! Results: the engines, one row of measurements per workload, the table and the summary line.

use crate::alloc::Measured;
use std::time::Duration;

/// The engines compared, in the order of [`Row::results`].
pub const ENGINES: [&str; 3] = ["objsync", "automerge", "yrs"];

/// One workload's measurements, one per engine in [`ENGINES`] order.
pub struct Row {
    /// What ran, with its sizes.
    pub workload: String,
    /// objsync, automerge, yrs.
    pub results: [Measured; 3],
}

impl Row {
    /// objsync's time over the peer's (`peer` indexes [`ENGINES`]).
    fn time_ratio(&self, peer: usize) -> f64 {
        // A timed section never takes zero time in practice, but a clock with coarse ticks could
        // say so; a nanosecond floor keeps the ratio finite.
        let secs = |d: Duration| d.as_secs_f64().max(1e-9);
        secs(self.results[0].time) / secs(self.results[peer].time)
    }

    /// objsync's peak heap over the peer's.
    fn memory_ratio(&self, peer: usize) -> f64 {
        self.results[0].peak.max(1) as f64 / self.results[peer].peak.max(1) as f64
    }
}

fn time(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn bytes(b: usize) -> String {
    const KIB: f64 = 1024.0;
    let b = b as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} KiB", b / KIB)
    }
}

/// Three significant digits, without switching to exponent notation for the usual range.
fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// The geometric mean of objsync's time ratio against `peer` over all rows.
fn geomean(rows: &[Row], peer: usize) -> f64 {
    let logs: f64 = rows.iter().map(|r| r.time_ratio(peer).ln()).sum();
    (logs / rows.len().max(1) as f64).exp()
}

/// Prints the table, then the summary line, which is the last line of the output.
pub fn print(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.workload.chars().count())
        .max()
        .unwrap_or(0)
        .max("workload".len());
    println!(
        "{:<width$}  {:<9}  {:>10}  {:>10}  {:>14}  {:>13}",
        "workload", "engine", "time", "peak heap", "time objsync/x", "mem objsync/x"
    );
    println!("{}", "-".repeat(width + 66));
    for row in rows {
        for (i, (engine, m)) in ENGINES.iter().zip(&row.results).enumerate() {
            let label = if i == 0 { row.workload.as_str() } else { "" };
            let (tr, mr) = if i == 0 {
                (String::new(), String::new())
            } else {
                (ratio(row.time_ratio(i)), ratio(row.memory_ratio(i)))
            };
            println!(
                "{label:<width$}  {engine:<9}  {:>10}  {:>10}  {tr:>14}  {mr:>13}",
                time(m.time),
                bytes(m.peak)
            );
        }
    }
    println!();
    println!(
        "geometric means over {} workloads (time; lower is better for objsync):",
        rows.len()
    );
    println!(
        "summary: objsync/automerge={} objsync/yrs={}",
        ratio(geomean(rows, 1)),
        ratio(geomean(rows, 2))
    );
}
