//! Results: the engines, one row of measurements per workload and phase, the table and the
//! summary line, or the same rows as JSON lines.

use crate::alloc::Measured;
use std::time::Duration;

/// The engines compared, in the order of [`Row::results`].
pub const ENGINES: [&str; 4] = ["objsync", "automerge", "yrs", "loro"];

/// One measured row: one workload at one size, one timed phase, per engine.
pub struct Row {
    /// What ran, with its sizes, for the table.
    pub label: String,
    /// The workload's name in the JSON lines (`many-writers`, `list-inserts`,
    /// `synthetic-trace`, `real-trace`).
    pub workload: &'static str,
    /// Its size in the JSON lines (clients, inserts, edits).
    pub size: String,
    /// The timed phase in the JSON lines (`converge`, `apply`, `sync`, `load`).
    pub metric: &'static str,
    /// Per engine in [`ENGINES`] order; `None` where the engine did not run the row.
    pub results: [Option<Measured>; 4],
    /// Bytes the phase produced per engine, with their metric name in the JSON lines, for rows
    /// that have them.
    pub bytes: Option<(&'static str, [Option<usize>; 4])>,
}

impl Row {
    /// The JSON metric of the row's peak heap: `heap` for the main phase of a workload,
    /// `<phase>-heap` for the others.
    fn heap_metric(&self) -> String {
        match self.metric {
            "converge" | "apply" => "heap".to_string(),
            m => format!("{m}-heap"),
        }
    }

    /// objsync's time over the peer's (`peer` indexes [`ENGINES`]), if both ran.
    fn time_ratio(&self, peer: usize) -> Option<f64> {
        // A timed section never takes zero time in practice, but a clock with coarse ticks could
        // say so; a nanosecond floor keeps the ratio finite.
        let secs = |d: Duration| d.as_secs_f64().max(1e-9);
        Some(secs(self.results[0]?.time) / secs(self.results[peer]?.time))
    }

    /// objsync's peak heap over the peer's, if both ran.
    fn memory_ratio(&self, peer: usize) -> Option<f64> {
        Some(self.results[0]?.peak.max(1) as f64 / self.results[peer]?.peak.max(1) as f64)
    }

    /// objsync's bytes over the peer's, if the row has bytes and both ran.
    fn bytes_ratio(&self, peer: usize) -> Option<f64> {
        let (_, b) = self.bytes.as_ref()?;
        Some(b[0]?.max(1) as f64 / b[peer]?.max(1) as f64)
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

/// The geometric mean of objsync's time ratio against `peer` over the rows both ran, and how
/// many rows that is.
fn geomean(rows: &[Row], peer: usize) -> (f64, usize) {
    let ratios: Vec<f64> = rows.iter().filter_map(|r| r.time_ratio(peer)).collect();
    let logs: f64 = ratios.iter().map(|r| r.ln()).sum();
    ((logs / ratios.len().max(1) as f64).exp(), ratios.len())
}

/// Prints the table, the notes, then the summary line, which is the last line of the output.
pub fn print(rows: &[Row], notes: &[String]) {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .max("workload".len());
    println!(
        "{:<width$}  {:<9}  {:>10}  {:>10}  {:>10}  {:>14}  {:>13}  {:>14}",
        "workload",
        "engine",
        "time",
        "peak heap",
        "size",
        "time objsync/x",
        "mem objsync/x",
        "size objsync/x"
    );
    println!("{}", "-".repeat(width + 103));
    let or_blank = |r: Option<f64>| r.map(ratio).unwrap_or_default();
    for row in rows {
        for (i, (engine, m)) in ENGINES.iter().zip(&row.results).enumerate() {
            let label = if i == 0 { row.label.as_str() } else { "" };
            let size = match (&row.bytes, m) {
                (Some((_, b)), Some(_)) => b[i].map(bytes).unwrap_or_default(),
                _ => String::new(),
            };
            let (tr, mr, sr) = if i == 0 {
                Default::default()
            } else {
                (
                    or_blank(row.time_ratio(i)),
                    or_blank(row.memory_ratio(i)),
                    or_blank(row.bytes_ratio(i)),
                )
            };
            let (t, p) = match m {
                Some(m) => (time(m.time), bytes(m.peak)),
                None => ("not run".to_string(), String::new()),
            };
            println!(
                "{label:<width$}  {engine:<9}  {t:>10}  {p:>10}  {size:>10}  {tr:>14}  {mr:>13}  {sr:>14}"
            );
        }
    }
    println!();
    for note in notes {
        println!("note: {note}");
    }
    let means: Vec<(f64, usize)> = (1..ENGINES.len()).map(|p| geomean(rows, p)).collect();
    println!(
        "geometric means of objsync's time ratio over the rows both ran ({}; lower is better for \
         objsync):",
        (1..ENGINES.len())
            .map(|p| format!("{} rows with {}", means[p - 1].1, ENGINES[p]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "summary: {}",
        (1..ENGINES.len())
            .map(|p| format!("objsync/{}={}", ENGINES[p], ratio(means[p - 1].0)))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// One JSON line: `{"workload", "size", "metric", "unit", "engines": {engine: value}}`, the
/// engines in [`ENGINES`] order and only those that ran.
fn json_line(row: &Row, metric: &str, unit: &str, values: [Option<String>; 4]) -> String {
    let s = |v: &str| serde_json::to_string(v).expect("a string serializes");
    let engines: Vec<String> = ENGINES
        .iter()
        .zip(values)
        .filter_map(|(e, v)| Some(format!("{}: {}", s(e), v?)))
        .collect();
    format!(
        "{{\"workload\": {}, \"size\": {}, \"metric\": {}, \"unit\": {}, \"engines\": {{{}}}}}",
        s(row.workload),
        s(&row.size),
        s(metric),
        s(unit),
        engines.join(", ")
    )
}

/// Prints every row as JSON lines: its time (unit `s`), its peak heap and, where it has them,
/// its bytes (unit `B`).
pub fn print_json(rows: &[Row]) {
    for row in rows {
        // A duration's seconds are finite, so they serialize as a JSON number.
        let times = row
            .results
            .map(|m| m.map(|m| serde_json::Value::from(m.time.as_secs_f64()).to_string()));
        println!("{}", json_line(row, row.metric, "s", times));
        let heaps = row.results.map(|m| m.map(|m| m.peak.to_string()));
        println!("{}", json_line(row, &row.heap_metric(), "B", heaps));
        if let Some((metric, b)) = &row.bytes {
            let ran = |i: usize| row.results[i].and(b[i]).map(|b| b.to_string());
            println!("{}", json_line(row, metric, "B", [0, 1, 2, 3].map(ran)));
        }
    }
}
