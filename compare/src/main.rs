//! The comparison harness: runs the same logical workloads on objsync, automerge, yrs and loro
//! in one process, checks that they agree, and prints time, peak heap, encoded sizes and
//! objsync's ratios to each peer.
//!
//!     cargo run --release -p compare -- [--quick] [--json] [--only WORKLOAD]
//!
//! Workloads (each module's documentation gives the details):
//! - [`writers`]: K clients set fields of shared objects concurrently, then converge through a
//!   hub (K = 10, 100, 1000);
//! - [`inserts`]: sqrt(N) clients insert into one shared list concurrently, then converge
//!   through a hub;
//! - [`trace`]: one writer's long edit trace on a list, its sync to a fresh replica, and
//!   loading a saved document; on a synthetic trace of random edits, and on the real editing
//!   trace of [`real`] (one character per list element).
//!
//! Every engine replays the same operations, drawn up front from a seeded generator or read
//! from the trace. The last line of the table is `summary: objsync/automerge=<r>
//! objsync/yrs=<r> objsync/loro=<r>`, the geometric means of objsync's time ratios over the
//! rows both engines ran (below 1: objsync is faster). `--json` prints the rows as JSON lines
//! instead, one per row and metric. Any disagreement between replicas or engines ends the run
//! with a message and a non-zero exit status.

// The counting allocator in `alloc` is the only unsafe code, and says so where it is.
#![deny(unsafe_code)]

mod alloc;
mod inserts;
mod lifecycle;
mod objects;
mod real;
mod report;
mod rng;
mod trace;
mod util;
mod writers;

use clap::Parser;
use report::Row;
use rng::Rng;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use trace::{Element, Phases, Trace};
use util::Res;

/// Compare objsync with automerge, yrs and loro on the same workloads.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Tiny sizes: every workload and check, in a few seconds (for CI).
    #[arg(long)]
    quick: bool,
    /// Run only this workload (the summary then covers only its rows).
    #[arg(long, value_enum)]
    only: Option<Workload>,
    /// Print one JSON object per line per measured row and metric instead of the table.
    #[arg(long)]
    json: bool,
    /// The real editing trace (gzipped JSON); the project's shared data file by default.
    #[arg(long, default_value = real::DEFAULT_PATH)]
    trace_file: PathBuf,
}

/// The workloads, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// Many writers on shared objects.
    Writers,
    /// Concurrent inserts into one list.
    Inserts,
    /// The synthetic single-writer edit trace, its sync and its load.
    Trace,
    /// The real editing trace, its sync and its load.
    RealTrace,
    /// A document of many objects, saved and loaded.
    Objects,
    /// objsync's history lifecycle: a new device, and compaction of the many-writers hub.
    Lifecycle,
}

/// The sizes of one run.
struct Sizes {
    /// Client counts of the many-writers workload.
    writers: &'static [usize],
    /// Field writes per client.
    writes: usize,
    /// Shared objects, and fields per object, of the many-writers workload.
    objects: usize,
    fields: usize,
    /// Inserts in all in the concurrent list workload.
    inserts: usize,
    /// Objects in the saved document of the objects workload.
    saved_objects: usize,
    /// History lengths of the new-device workload.
    histories: &'static [usize],
    /// Edits in the synthetic single-writer trace.
    trace: usize,
    /// Transactions of the real trace replayed (all if `None`).
    real: Option<usize>,
}

const FULL: Sizes = Sizes {
    writers: &[10, 100, 1000],
    writes: 10,
    objects: 10,
    fields: 20,
    inserts: 10_000,
    saved_objects: 100_000,
    histories: &[10_000, 100_000, 1_000_000],
    trace: 100_000,
    real: None,
};

const QUICK: Sizes = Sizes {
    writers: &[2, 5, 10],
    writes: 10,
    objects: 10,
    fields: 20,
    inserts: 100,
    saved_objects: 1_000,
    histories: &[1_000],
    trace: 2_000,
    real: Some(2_000),
};

/// Every workload draws from its own generator with this seed plus its number, so that the
/// operations of one do not depend on the sizes of another.
const SEED: u64 = 0x6f62_6a73_796e_6321;

/// The rows of one trace: apply, sync (with the bytes transferred) and load (with the saved
/// document's size).
fn trace_rows<E: Element>(
    name: &'static str,
    what: &str,
    trace: &Trace<E>,
    expected: &[E],
) -> Res<Vec<Row>> {
    let results = trace::run(trace, expected)?;
    let pick = |f: fn(&Phases) -> alloc::Measured| results.map(|p| Some(f(&p)));
    let size = trace.len().to_string();
    let mut rows = vec![
        Row {
            label: format!("{what}: apply {} edits", trace.len()),
            workload: name,
            size: size.clone(),
            metric: "apply",
            results: pick(|p| p.apply),
            bytes: None,
        },
        Row {
            label: format!("{what}: sync to a fresh replica"),
            workload: name,
            size: size.clone(),
            metric: "sync",
            results: pick(|p| p.sync),
            bytes: Some(("sync-size", results.map(|p| Some(p.sync_bytes)))),
        },
    ];
    if let Some(history) = results[0].history {
        rows.push(objsync_row(
            format!("{what}: a new device downloads the history instead of the state"),
            name,
            size.clone(),
            "download-history",
            history,
            "received",
        ));
    }
    rows.extend([Row {
        label: format!("{what}: load saved document, {} elements", expected.len()),
        workload: name,
        size,
        metric: "load",
        results: pick(|p| p.load),
        bytes: Some(("size", results.map(|p| Some(p.saved_bytes)))),
    }]);
    Ok(rows)
}

/// A row only objsync runs: its measurement, and bytes under `bytes_metric`.
fn objsync_row(
    label: String,
    workload: &'static str,
    size: String,
    metric: &'static str,
    (m, bytes): (alloc::Measured, usize),
    bytes_metric: &'static str,
) -> Row {
    Row {
        label,
        workload,
        size,
        metric,
        results: [Some(m), None, None, None],
        bytes: Some((bytes_metric, [Some(bytes), None, None, None])),
    }
}

fn run(args: &Args, sizes: &Sizes, notes: &mut Vec<String>) -> Res<Vec<Row>> {
    let wanted = |w: Workload| args.only.map_or(true, |o| o == w);
    let mut rows = Vec::new();
    let writer_counts = if wanted(Workload::Writers) {
        sizes.writers
    } else {
        &[]
    };
    for (i, &clients) in writer_counts.iter().enumerate() {
        let params = writers::Params {
            clients,
            writes: sizes.writes,
            objects: sizes.objects,
            fields: sizes.fields,
        };
        let (results, mut hub) = writers::run(&params, &mut Rng::new(SEED + i as u64))?;
        rows.push(Row {
            label: format!("many writers K={clients} M={}", sizes.writes),
            workload: "many-writers",
            size: clients.to_string(),
            metric: "converge",
            results: results.map(Some),
            bytes: None,
        });
        if wanted(Workload::Lifecycle) {
            let (m, before, after) = lifecycle::compaction(&mut hub)?;
            rows.push(objsync_row(
                format!("many writers K={clients}: compact the hub's history of {before} B"),
                "many-writers",
                clients.to_string(),
                "compact",
                (m, after),
                "compacted-size",
            ));
        }
    }
    if wanted(Workload::Lifecycle) {
        for &n in sizes.histories {
            let server = lifecycle::server_with_history(n)?;
            let [history, state] = lifecycle::new_device(&server)?;
            let size = n.to_string();
            rows.push(objsync_row(
                format!("new device, history of {n} changesets: download the history"),
                "new-device",
                size.clone(),
                "download-history",
                history,
                "received",
            ));
            rows.push(objsync_row(
                format!("new device, history of {n} changesets: start from the state"),
                "new-device",
                size,
                "start-from-state",
                state,
                "received",
            ));
        }
    }
    if wanted(Workload::Objects) {
        let n = sizes.saved_objects;
        let results = objects::run(n)?;
        rows.push(Row {
            label: format!("{n} objects: load saved document"),
            workload: "objects",
            size: n.to_string(),
            metric: "load",
            results: results.map(|(m, _)| Some(m)),
            bytes: Some(("size", results.map(|(_, b)| Some(b)))),
        });
    }
    if wanted(Workload::Inserts) {
        let clients = inserts::clients_for(sizes.inserts);
        let n = clients * (sizes.inserts / clients);
        let results = inserts::run(sizes.inserts, &mut Rng::new(SEED + 10))?;
        rows.push(Row {
            label: format!("list inserts N={n} by {clients} clients"),
            workload: "list-inserts",
            size: n.to_string(),
            metric: "converge",
            results: results.map(Some),
            bytes: None,
        });
    }
    if wanted(Workload::Trace) {
        let trace = trace::synthetic(sizes.trace, &mut Rng::new(SEED + 20));
        let expected = trace.replay();
        rows.extend(trace_rows(
            "synthetic-trace",
            "synthetic trace",
            &trace,
            &expected,
        )?);
    }
    // The quick run (CI's) may run where the project's shared data is not beside the
    // workspace: then it says so and checks the other workloads; a full run needs the trace.
    let real_missing = args.quick && !args.trace_file.exists();
    if real_missing && wanted(Workload::RealTrace) {
        notes.push(format!(
            "the real trace was skipped: no data file at {} (pass --trace-file)",
            args.trace_file.display()
        ));
    }
    if wanted(Workload::RealTrace) && !real_missing {
        let real = real::load(&args.trace_file, sizes.real)?;
        if !real.whole {
            notes.push(format!(
                "the real trace is cut to its first {} transactions; engines are checked against \
                 its replayed text instead of endContent",
                real.trace.len()
            ));
        }
        rows.extend(trace_rows(
            "real-trace",
            "real trace",
            &real.trace,
            &real.expected,
        )?);
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sizes = if args.quick { &QUICK } else { &FULL };
    let header = format!(
        "objsync vs automerge {} vs yrs {} vs loro {}{}\n\
         Topology: a star. Clients start from a common base and write offline; a hub (objsync: \
         its sync::Server) integrates every client's changes, then every client integrates the \
         hub's. Times cover writing and converging; peak heap covers every replica of the run.\n\
         Traces: one writer, one transaction per edit; the real trace is a list of one-character \
         strings in every engine (objsync: a list<string> property, one element per character, \
         through the public API). apply: the writer's edits; sync: everything the writer did, as \
         bytes, to a fresh replica (objsync: the upload through objsync::wire to a sync::Server, \
         then a fresh Client starts from the server's state; a row of its own has it download \
         the history instead), size: the bytes the fresh replica receives; load: a \
         saved document loaded and its list's length read (objsync: Replica::save, then \
         Replica::load), size: the saved document. A phase's peak heap is what it added to the \
         heap live when it started.\n",
        env!("AUTOMERGE_VERSION"),
        env!("YRS_VERSION"),
        env!("LORO_VERSION"),
        if args.quick { " (quick sizes)" } else { "" }
    );
    // With --json, stdout carries only the JSON lines.
    if args.json {
        eprint!("{header}");
    } else {
        println!("{header}");
    }
    let start = Instant::now();
    let mut notes = Vec::new();
    match run(&args, sizes, &mut notes) {
        Ok(rows) => {
            if args.json {
                report::print_json(&rows);
                for note in &notes {
                    eprintln!("note: {note}");
                }
            } else {
                report::print(&rows, &notes);
            }
            eprintln!("compare: done in {:.1} s", start.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare: mismatch or failure: {e}");
            ExitCode::FAILURE
        }
    }
}
