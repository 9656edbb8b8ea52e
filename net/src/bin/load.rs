//! A load generator for the reference server: N clients each commit M transactions, one at a
//! time (the next once the server acknowledged the last and the client has taken in what the
//! others wrote meanwhile), to one shared realm and then to a realm each, over loopback
//! WebSockets.
//!
//! ```text
//! cargo run --release --bin load -- --clients 100 --transactions 20
//! ```
//!
//! Without `--url` it starts a server in a child process (this program again, over a temporary
//! data directory, with durable journals as the `server` binary keeps them), or with
//! `--postgres CONNSTR --servers N` N server processes over that PostgreSQL database, the
//! clients spread over them in turn; with `--url realm://host:port --token T` it loads a running
//! one (`--server-pid` lets it read that server's memory). It reports throughput, the latency from commit to acknowledgement and, in
//! the shared realm, from commit to arrival at the other clients, and the server's resident
//! memory before the clients connect, at its peak, and after they have left and the server
//! has closed their realms; it checks that every client of the shared realm ends with the
//! same state.

#![forbid(unsafe_code)]

/// The server this program starts is this program, with the server's allocator (see
/// `server.rs`): jemalloc with its background thread rather than the system allocator or
/// mimalloc: both of those keep the pages of a thousand closed connections (freed on other threads than the ones
/// that allocated them) until the thread that owns them allocates again, which an idle server
/// never does; jemalloc's background thread purges them within its decay time (10 s), so the
/// server's memory returns to its base once clients leave and their realms close.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use objsync::session::{ClientConfig, ClientEvent};
use objsync::wire::Limits;
use objsync_net::client::{Failure, Flow, Live, Local, RealmUrl};
use objsync_net::server::{random_token, Config, Server};
use objsync_net::storage::postgres::PgStorage;
use objsync_net::storage::Retention;
use objsync_net::workload::counted_transaction;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// A running server, `realm://host:port` (default: one started in a child process).
    #[arg(long)]
    url: Option<String>,
    /// The token for `--url` (it must allow writing under /load/).
    #[arg(long)]
    token: Option<String>,
    /// The process id of the server at `--url`, to report its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to wait after a round before measuring the server's memory again (it closes
    /// a realm a while after its last client leaves, 1 s for the server this program starts,
    /// and its allocator gives the freed pages back over the next 10 s).
    #[arg(long, default_value_t = 12)]
    settle: u64,
    /// Start the servers over this PostgreSQL database (libpq connection string or URL)
    /// instead of a temporary data directory.
    #[arg(long, value_name = "CONNSTR")]
    postgres: Option<String>,
    /// With --postgres: how many server processes to start; clients are spread over them.
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Internal: run as the server this program starts, over this data directory.
    #[arg(long, hide = true)]
    serve_data: Option<PathBuf>,
    /// Internal: run as the server this program starts, over this PostgreSQL database.
    #[arg(long, hide = true)]
    serve_postgres: Option<String>,
    /// Internal: the admin token of that server.
    #[arg(long, hide = true)]
    serve_token: Option<String>,
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
    objsync_net::run_main("warn", || {
        match (&args.serve_data, &args.serve_postgres, &args.serve_token) {
            (Some(data), _, Some(token)) => serve(Store::Journal(data), token),
            (_, Some(connstr), Some(token)) => serve(Store::Postgres(connstr), token),
            _ => load(&args),
        }
    })
}

/// Where the started servers keep their realms.
enum Store<'a> {
    Journal(&'a Path),
    Postgres(&'a str),
}

/// The child process's server: limits for many clients from one address, and realms closed
/// a second after their last client leaves so that memory after a round shows what stays.
fn serve(store: Store, token: &str) -> Result<(), String> {
    let mut config = Config::admin_only(token.to_string());
    config.limits.max_connections = 1 << 20;
    config.limits.max_connections_per_address = 1 << 20;
    config.limits.realm_idle_secs = 1;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let server = match store {
            Store::Journal(data) => Server::new(data.to_path_buf(), config),
            Store::Postgres(connstr) => {
                let storage =
                    PgStorage::connect(connstr, Retention::default(), Duration::from_secs(1))
                        .await
                        .map_err(|e| e.to_string())?;
                Server::with_storage(Arc::new(storage), config)
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        server.serve(listener).await;
        Ok(())
    })
}

/// The server this program started: killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this program as a server over `store`; returns it and its address.
fn start_server(store: &Store, token: &str) -> Result<(Child, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    match store {
        Store::Journal(data) => command.arg("--serve-data").arg(data),
        Store::Postgres(connstr) => command.args(["--serve-postgres", connstr]),
    };
    let mut child = command
        .args(["--serve-token", token])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Child(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the server said {line:?}"))?
        .to_string();
    Ok((child, addr))
}

/// The resident memory of processes together, if it can be read for all of them.
fn rss_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss(pid)).sum()
}

/// A process's resident memory in bytes (Linux: `VmRSS` of /proc/PID/status).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples processes' resident memory (together) until stopped; returns the peak.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl PeakSampler {
    fn start(pids: Vec<u32>) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_all(&pids).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(rss_all(&pids).unwrap_or(0))
        });
        PeakSampler { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.0}", b as f64 / (1 << 20) as f64)
    })
}

fn load(args: &Args) -> Result<(), String> {
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut servers = Vec::new();
    let (authorities, token, pids) = match &args.url {
        Some(url) => {
            let url = RealmUrl::parse(&format!("{}/load", url.trim_end_matches('/')))?;
            let token = args.token.clone().ok_or("--url needs --token")?;
            (
                vec![url.authority],
                token,
                args.server_pid.into_iter().collect(),
            )
        }
        None => {
            let token = random_token();
            let store = match &args.postgres {
                Some(connstr) => Store::Postgres(connstr),
                None => Store::Journal(data.path()),
            };
            let count = if args.postgres.is_some() {
                args.servers.max(1)
            } else {
                1
            };
            let mut authorities = Vec::new();
            for _ in 0..count {
                let (child, addr) = start_server(&store, &token)?;
                authorities.push(addr);
                servers.push(child);
            }
            let pids = servers.iter().map(|c| c.0.id()).collect();
            (authorities, token, pids)
        }
    };
    let pids: Vec<u32> = pids;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    println!(
        "{} clients x {} transactions, closed loop (each commit waits for its acknowledgement)",
        args.clients, args.transactions
    );
    if args.url.is_none() {
        let store = if args.postgres.is_some() {
            "PostgreSQL"
        } else {
            "journals on disk"
        };
        println!("{} server process(es), {store}", authorities.len());
    }
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>9} {:>9} {:>11} {:>11} {:>18}",
        "realms",
        "tx",
        "wall s",
        "tx/s",
        "ack p50",
        "ack p99",
        "arrival p50",
        "arrival p99",
        "server MB b/pk/a"
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
        let before = rss_all(&pids);
        let sampler = PeakSampler::start(pids.clone());
        let (wall, measured) = runtime.block_on(round(&authorities, &token, paths, args))?;
        let arrivals: Vec<Duration> = measured.iter().flat_map(|m| m.arrivals.clone()).collect();
        let peak = Some(sampler.finish()).filter(|_| !pids.is_empty());
        std::thread::sleep(Duration::from_secs(args.settle));
        let after = rss_all(&pids);
        let total = args.clients * args.transactions;
        let acks: Vec<Duration> = measured.iter().flat_map(|m| m.acks.clone()).collect();
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
            "{name:<14} {total:>7} {:>7.2} {:>7.0} {:>9} {:>9} {:>11} {:>11} {:>18}",
            wall.as_secs_f64(),
            total as f64 / wall.as_secs_f64(),
            percentile(&acks, 0.50),
            percentile(&acks, 0.99),
            percentile(&arrivals, 0.50),
            percentile(&arrivals, 0.99),
            format!(
                "{}/{}/{}",
                megabytes(before),
                megabytes(peak),
                megabytes(after)
            ),
        );
    }
    Ok(())
}

/// Runs every client to completion; returns the time from the common start to the last
/// acknowledgement, and what each client measured.
async fn round(
    authorities: &[String],
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
            authority: authorities[i % authorities.len()].clone(),
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
    // When each changeset arrived here, by (peer, client version): matched with the commit
    // times once every commit is known, so measuring takes no lock per changeset.
    let mut arrivals = Vec::new();
    live.pump(&mut local, |_, e| {
        Ok(match e {
            ClientEvent::Identified(_) => Flow::Done,
            _ => Flow::Continue,
        })
    })
    .await?;
    connected.wait().await;
    for t in 0..transactions {
        let version = local
            .apply(&counted_transaction(index, t))
            .map_err(Failure::Local)?
            .expect("the transaction writes");
        let at = Instant::now();
        commits
            .lock()
            .expect("commit times")
            .insert((peer, version.0), at);
        live.pump(&mut local, |local, e| {
            note_arrivals(e, &mut arrivals);
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
        note_arrivals(e, &mut arrivals);
        Ok(match e {
            ClientEvent::MarkReached(1) => Flow::Done,
            _ => Flow::Continue,
        })
    })
    .await?;
    live.close(&mut local).await;
    let commits = commits.lock().expect("commit times");
    measured.arrivals = (arrivals.into_iter())
        .filter_map(|(peer, version, arrived)| {
            let committed: &Instant = commits.get(&(peer, version))?;
            Some(arrived.saturating_duration_since(*committed))
        })
        .collect();
    drop(commits);
    measured.state = local.state();
    Ok(measured)
}

/// Records when each changeset a download brought arrived (all of them at once).
fn note_arrivals(event: &ClientEvent, arrivals: &mut Vec<(u64, u64, Instant)>) {
    if let ClientEvent::Integrated(download) = event {
        let now = Instant::now();
        for entry in &download.entries {
            let cs = &entry.changeset;
            arrivals.push((cs.origin.0, cs.client_version.0, now));
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
