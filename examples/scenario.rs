//! The conformance scenario runner:
//! `cargo run --release --example scenario -- FILE... [--pretty] [--feed]`.
//!
//! For each file it runs the scenario (spec/scenario-format.md) and prints the final server
//! state as canonical JSON, one line per file (indented with --pretty); with --feed, after the
//! state line, the server's Adapter feed as JSON lines, one transaction per line
//! (spec/feed.md). Exit status: 0 when every file passed, 1 when one diverged or missed its
//! "expect" (a diff on stderr), 2 when one was malformed (a one-line reason on stderr).

use clap::Parser;
use objsync_testkit::scenario::{self, Outcome};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Runs objsync conformance scenarios")]
struct Args {
    /// Print each final state indented instead of on one line.
    #[arg(long)]
    pretty: bool,
    /// After each state, print the server's feed: one JSON line per integrated transaction.
    #[arg(long)]
    feed: bool,
    /// Scenario files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let mut worst = 0;
    for file in &args.files {
        let name = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                worst = worst.max(2);
                continue;
            }
        };
        let (outcome, feed) = if args.feed {
            scenario::run_with_feed(&text)
        } else {
            (scenario::run(&text), Vec::new())
        };
        let print = |state: &serde_json::Value| {
            if args.pretty {
                println!(
                    "{}",
                    serde_json::to_string_pretty(state).unwrap_or_default()
                );
            } else {
                println!("{}", objsync::json::canonical(state));
            }
        };
        let print = |state: &serde_json::Value| {
            print(state);
            for transaction in &feed {
                println!("{}", serde_json::to_string(transaction).unwrap_or_default());
            }
        };
        match &outcome {
            Outcome::Pass(state) => print(state),
            Outcome::Fail { state, report } => {
                print(state);
                eprintln!("{name}: FAILED");
                for line in report.lines() {
                    eprintln!("  {line}");
                }
            }
            Outcome::Malformed(reason) => eprintln!("{name}: malformed scenario: {reason}"),
        }
        worst = worst.max(outcome.exit_code());
    }
    ExitCode::from(worst as u8)
}
