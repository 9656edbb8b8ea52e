//! The comparison harness: runs the same logical workloads on objsync, automerge and yrs in one
//! process, checks that they agree, and prints time, peak heap and objsync's ratios to each peer.
//!
//!     cargo run --release -p compare -- [--quick]
//!
//! Workloads (each module's documentation gives the details):
//! - [`writers`]: K clients set fields of shared objects concurrently, then converge through a
//!   hub (K = 10, 100, 1000);
//! - [`inserts`]: sqrt(N) clients insert into one shared list concurrently, then converge
//!   through a hub;
//! - [`trace`]: one writer's long edit trace on a list, its sync to a hub, and loading the
//!   result on a fresh replica.
//!
//! Every engine replays the same operations, drawn up front from a seeded generator. The last
//! line of the output is `summary: objsync/automerge=<r> objsync/yrs=<r>`, the geometric means
//! of objsync's time ratios over all workloads (below 1: objsync is faster). Any disagreement
//! between replicas or engines ends the run with a message and a non-zero exit status.

// The counting allocator in `alloc` is the only unsafe code, and says so where it is.
#![deny(unsafe_code)]

mod alloc;
mod inserts;
mod report;
mod rng;
mod trace;
mod util;
mod writers;

use clap::Parser;
use report::Row;
use rng::Rng;
use std::process::ExitCode;
use util::Res;

/// Compare objsync with automerge and yrs on the same workloads.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Tiny sizes: every workload and check, in a few seconds (for CI).
    #[arg(long)]
    quick: bool,
    /// Run only this workload (the summary then covers only its rows).
    #[arg(long, value_enum)]
    only: Option<Workload>,
}

/// The workloads, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// Many writers on shared objects.
    Writers,
    /// Concurrent inserts into one list.
    Inserts,
    /// The single-writer edit trace, its sync and its load.
    Trace,
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
    /// Edits in the single-writer trace.
    trace: usize,
}

const FULL: Sizes = Sizes {
    writers: &[10, 100, 1000],
    writes: 10,
    objects: 10,
    fields: 20,
    inserts: 10_000,
    trace: 100_000,
};

const QUICK: Sizes = Sizes {
    writers: &[2, 5, 10],
    writes: 10,
    objects: 10,
    fields: 20,
    inserts: 100,
    trace: 2_000,
};

/// Every workload draws from its own generator with this seed plus its number, so that the
/// operations of one do not depend on the sizes of another.
const SEED: u64 = 0x6f62_6a73_796e_6321;

fn run(sizes: &Sizes, only: Option<Workload>) -> Res<Vec<Row>> {
    let wanted = |w: Workload| only.map_or(true, |o| o == w);
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
        let results = writers::run(&params, &mut Rng::new(SEED + i as u64))?;
        rows.push(Row {
            workload: format!("many writers K={clients} M={}", sizes.writes),
            results,
        });
    }
    if wanted(Workload::Inserts) {
        let clients = inserts::clients_for(sizes.inserts);
        let results = inserts::run(sizes.inserts, &mut Rng::new(SEED + 10))?;
        rows.push(Row {
            workload: format!(
                "list inserts N={} by {clients} clients",
                clients * (sizes.inserts / clients)
            ),
            results,
        });
    }
    if wanted(Workload::Trace) {
        let ([edit, sync, load], len) = trace::run(sizes.trace, &mut Rng::new(SEED + 20))?;
        rows.push(Row {
            workload: format!("trace: {} edits", sizes.trace),
            results: edit,
        });
        rows.push(Row {
            workload: "trace: sync to hub".to_string(),
            results: sync,
        });
        rows.push(Row {
            workload: format!("trace: load {len} elements"),
            results: load,
        });
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sizes = if args.quick { &QUICK } else { &FULL };
    println!(
        "objsync vs automerge {} vs yrs {}{}",
        env!("AUTOMERGE_VERSION"),
        env!("YRS_VERSION"),
        if args.quick { " (quick sizes)" } else { "" }
    );
    println!(
        "Topology: a star. Clients start from a common base and write offline; a hub (objsync: \
         its sync::Server) integrates every client's changes, then every client integrates the \
         hub's. Times cover writing and converging; peak heap covers every replica of the run."
    );
    println!();
    match run(sizes, args.only) {
        Ok(rows) => {
            report::print(&rows);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare: mismatch or failure: {e}");
            ExitCode::FAILURE
        }
    }
}
