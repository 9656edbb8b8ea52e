//! A load generator for the reference server: N clients each commit M transactions, one at a
//! time (the next once the server acknowledged the last), to one shared realm and then to a
//! realm each, over loopback WebSockets.
//!
//! ```text
//! cargo run --release --bin load -- --clients 100 --transactions 20
//! ```
//!
//! Without `--url` it starts a server in the same process (on its own runtime, over a
//! temporary data directory, with durable journals as `examples/server.rs` keeps them); with
//! `--url realm://host:port --token T` it loads a running one. It reports throughput and the
//! latency from commit to acknowledgement and, in the shared realm, from commit to arrival at
//! the other clients; it checks that every client of the shared realm ends with the same state.

#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use objsync::session::{ClientConfig, ClientEvent};
use objsync::wire::Limits;
use objsync_net::client::{Failure, Flow, Live, Local, RealmUrl};
use objsync_net::server::{random_token, Config, Server};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// Load the reference sync server.
#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Transactions each client commits.
    #[arg(long, default_value_t = 20)]
    transactions: usize,
    /// Which realm layout to load.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// A running server, `realm://host:port` (default: one started in this process).
    #[arg(long)]
    url: Option<String>,
    /// The token for `--url` (it must allow writing under /load/).
    #[arg(long)]
    token: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Every client in one realm.
    One,
    /// A realm per client.
    Separate,
    /// One, then separate.
    Both,
}

/// When each changeset was committed, by (peer, client version): arrivals elsewhere are
/// measured against it.
type Commits = Arc<Mutex<HashMap<(u64, u64), Instant>>>;

/// What one client measured.
#[derive(Default)]
struct Measured {
    acks: Vec<Duration>,
    arrivals: Vec<Duration>,
    state: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match load(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &Args) -> Result<(), String> {
    // The in-process server runs on its own threads, as it would in its own process.
    let server_runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _data;
    let (authority, token) = match &args.url {
        Some(url) => {
            let url = RealmUrl::parse(&format!("{}/load", url.trim_end_matches('/')))?;
            let token = args.token.clone().ok_or("--url needs --token")?;
            (url.authority, token)
        }
        None => {
            let data = tempfile::tempdir().map_err(|e| e.to_string())?;
            let token = random_token();
            let server = Server::new(data.path().to_path_buf(), Config::admin_only(token.clone()));
            let listener = server_runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| e.to_string())?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            server_runtime.spawn(server.serve(listener));
            _data = data;
            (addr.to_string(), token)
        }
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    println!(
        "{} clients x {} transactions, closed loop (each commit waits for its acknowledgement)",
        args.clients, args.transactions
    );
    println!(
        "{:<14} {:>9} {:>8} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "realms", "tx", "wall s", "tx/s", "ack p50", "ack p99", "arrival p50", "arrival p99"
    );
    let run_id = objsync_net::random_u64() % 1_000_000;
    for (mode, name) in [
        (Mode::One, "one shared"),
        (Mode::Separate, "one per client"),
    ] {
        if args.mode != Mode::Both && args.mode != mode {
            continue;
        }
        let paths: Vec<String> = (0..args.clients)
            .map(|i| match mode {
                Mode::One => format!("/load/r{run_id}-shared"),
                _ => format!("/load/r{run_id}-own-{i}"),
            })
            .collect();
        let (wall, measured) = runtime.block_on(round(&authority, &token, paths, args))?;
        let total = args.clients * args.transactions;
        let acks: Vec<Duration> = measured.iter().flat_map(|m| m.acks.clone()).collect();
        let arrivals: Vec<Duration> = measured.iter().flat_map(|m| m.arrivals.clone()).collect();
        if mode == Mode::One {
            if measured.iter().any(|m| m.state != measured[0].state) {
                return Err("the clients of the shared realm did not converge".into());
            }
            let expected = total * (args.clients - 1);
            if arrivals.len() != expected {
                return Err(format!(
                    "{} arrivals measured, {expected} expected",
                    arrivals.len()
                ));
            }
        }
        println!(
            "{name:<14} {total:>9} {:>8.2} {:>9.0} {:>9} {:>9} {:>11} {:>11}",
            wall.as_secs_f64(),
            total as f64 / wall.as_secs_f64(),
            percentile(&acks, 0.50),
            percentile(&acks, 0.99),
            percentile(&arrivals, 0.50),
            percentile(&arrivals, 0.99),
        );
    }
    Ok(())
}

/// Runs every client to completion; returns the time from the common start to the last
/// acknowledgement, and what each client measured.
async fn round(
    authority: &str,
    token: &str,
    paths: Vec<String>,
    args: &Args,
) -> Result<(Duration, Vec<Measured>), String> {
    let n = paths.len();
    let connected = Arc::new(Barrier::new(n + 1));
    let committed = Arc::new(Barrier::new(n + 1));
    let commits: Commits = Arc::default();
    let bar = ProgressBar::new((n * args.transactions) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} transactions acknowledged")
            .expect("a valid template"),
    );
    let mut tasks = Vec::new();
    for (i, path) in paths.into_iter().enumerate() {
        let url = RealmUrl {
            authority: authority.to_string(),
            path,
        };
        let config = ClientConfig {
            path: url.path.clone(),
            token: token.to_string(),
            limits: Limits::default(),
            start_from_state: false,
        };
        let (connected, committed) = (connected.clone(), committed.clone());
        let (commits, bar) = (commits.clone(), bar.clone());
        let transactions = args.transactions;
        tasks.push(tokio::spawn(async move {
            client(
                i,
                url,
                config,
                transactions,
                connected,
                committed,
                commits,
                bar,
            )
            .await
            .map_err(|e| format!("client {i}: {e}"))
        }));
    }
    connected.wait().await;
    let start = Instant::now();
    committed.wait().await;
    let wall = start.elapsed();
    bar.finish_and_clear();
    let mut measured = Vec::new();
    for task in tasks {
        measured.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok((wall, measured))
}

/// One client: connect, wait for the others, commit and wait for each acknowledgement, then
/// take in everything the others wrote.
#[allow(clippy::too_many_arguments)]
async fn client(
    index: usize,
    url: RealmUrl,
    config: ClientConfig,
    transactions: usize,
    connected: Arc<Barrier>,
    committed: Arc<Barrier>,
    commits: Commits,
    bar: ProgressBar,
) -> Result<Measured, Failure> {
    let limits = config.limits;
    let mut local = Local::in_memory(config);
    let peer = local.session.client().peer().0;
    let mut live = Live::connect(&mut local, &url, &limits).await?;
    let mut measured = Measured::default();
    live.pump(&mut local, |_, e| {
        Ok(match e {
            ClientEvent::Identified(_) => Flow::Done,
            _ => Flow::Continue,
        })
    })
    .await?;
    connected.wait().await;
    for t in 0..transactions {
        let mut ops = Vec::new();
        if t == 0 {
            ops.push(
                serde_json::json!({"op": "add_type", "type": "Item", "primary_key": "id",
                "properties": {"id": "string", "n": "int", "total": "int"}}),
            );
        }
        ops.push(
            serde_json::json!({"op": "insert", "type": "Item", "pk": format!("{index}-{t}"),
            "values": {"n": t}}),
        );
        ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": "counter"}));
        ops.push(
            serde_json::json!({"op": "add_int", "type": "Item", "pk": "counter",
            "property": "total", "value": 1}),
        );
        let version = local
            .apply(&serde_json::Value::Array(ops).to_string())
            .map_err(Failure::Local)?
            .expect("the transaction writes");
        let at = Instant::now();
        commits
            .lock()
            .expect("commit times")
            .insert((peer, version.0), at);
        live.pump(&mut local, |local, e| {
            note_arrivals(e, &commits, &mut measured.arrivals);
            Ok(if local.all_acknowledged() {
                Flow::Done
            } else {
                Flow::Continue
            })
        })
        .await?;
        measured.acks.push(at.elapsed());
        bar.inc(1);
    }
    committed.wait().await;
    // Everyone has committed: a MARK now is answered once everything is here.
    local.session.mark(1);
    live.pump(&mut local, |_, e| {
        note_arrivals(e, &commits, &mut measured.arrivals);
        Ok(match e {
            ClientEvent::MarkReached(1) => Flow::Done,
            _ => Flow::Continue,
        })
    })
    .await?;
    live.close(&mut local).await;
    measured.state = local.state();
    Ok(measured)
}

/// Records the delay from commit to arrival of each changeset a download brought.
fn note_arrivals(event: &ClientEvent, commits: &Commits, arrivals: &mut Vec<Duration>) {
    if let ClientEvent::Integrated(download) = event {
        let commits = commits.lock().expect("commit times");
        for entry in &download.entries {
            let cs = &entry.changeset;
            if let Some(at) = commits.get(&(cs.origin.0, cs.client_version.0)) {
                arrivals.push(at.elapsed());
            }
        }
    }
}

/// The `q` quantile in milliseconds, or `-` without samples.
fn percentile(samples: &[Duration], q: f64) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    format!("{:.1} ms", sorted[i].as_secs_f64() * 1000.0)
}
