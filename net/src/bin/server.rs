//! The reference sync server over WebSocket.
//!
//! ```text
//! cargo run --release --bin server -- --listen 127.0.0.1:9080 --data DIR [--config FILE]
//! cargo run --release --bin server -- --listen 127.0.0.1:9081 --postgres CONNSTR [--config FILE]
//! ```
//!
//! With `--data`, realms live under `DIR`, each a snapshot plus the append-only journal after
//! it, created on first BIND, and one process owns the directory. With `--postgres` (a libpq
//! connection string, `host=... port=... user=... dbname=...`, or a `postgresql://` URL) they
//! live in that database, whose tables are created or migrated on start, and any number of
//! server processes may serve them together. Without `--config` the server makes up an admin
//! token and prints it (`admin token: ...`); with one, tokens, users and permission grants come
//! from the file (README, "Reference server and client"). Once it accepts connections it
//! prints `listening on ADDR` on stdout; it logs to stderr (`RUST_LOG` sets the level, `info`
//! by default), with a status line every `--status-secs`. On SIGTERM (or Ctrl-C) it stops
//! accepting, lets every session finish the frame it is processing and closes it with a
//! retryable error, then exits.

#![forbid(unsafe_code)]

/// jemalloc with its background thread rather than the system allocator or mimalloc: both of
/// those keep the pages of a thousand closed connections (freed on other threads than the ones
/// that allocated them) until the thread that owns them allocates again, which an idle server
/// never does; jemalloc's background thread purges them within its decay time (10 s), so the
/// server's memory returns to its base once clients leave and their realms close.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use objsync_net::server::{random_token, Config, Server};
use objsync_net::storage::postgres::PgStorage;
use objsync_net::storage::Retention;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The reference objsync sync server.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the real address is printed).
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: String,
    /// Directory of the realms' journals (created if missing).
    #[arg(
        long,
        required_unless_present = "postgres",
        conflicts_with = "postgres"
    )]
    data: Option<PathBuf>,
    /// Keep the realms in this PostgreSQL database instead (libpq connection string or URL).
    #[arg(long, value_name = "CONNSTR")]
    postgres: Option<String>,
    /// With --postgres: milliseconds between reads of every realm's log length, the fallback
    /// for a missed notification.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    poll_ms: u64,
    /// JSON config: admin token, user tokens, permission grants.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep at most this many entries of each realm's history (trimmed when the realm is
    /// opened; clients further behind must reset, new ones start from the state). Default:
    /// keep everything.
    #[arg(long, value_name = "ENTRIES")]
    keep_history: Option<u64>,
    /// Compact each realm's history when it is opened (what no later upload or download can
    /// tell apart goes; the snapshot then holds the compacted history).
    #[arg(long)]
    compact: bool,
    /// Seconds between status lines (connections, realms, integrations/s, lag); 0: none.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    status_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    objsync_net::run_main("info", || serve(args))
}

fn serve(args: Args) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let token = random_token();
            println!("admin token: {token}");
            Config::admin_only(token)
        }
    };
    config.status_interval = (args.status_secs > 0).then(|| Duration::from_secs(args.status_secs));
    // Held for the life of the process: two servers on one directory would interleave
    // their journals.
    let _lock = match &args.data {
        Some(data) => Some(objsync_net::lock_dir(data).map_err(|e| e.to_string())?),
        None => None,
    };
    let retention = Retention {
        keep_history: args.keep_history,
        compact: args.compact,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let server = match (&args.data, &args.postgres) {
            (Some(data), _) => Server::keeping(data.clone(), config, retention),
            (None, Some(connstr)) => {
                let poll = Duration::from_millis(args.poll_ms.max(10));
                let storage = PgStorage::connect(connstr, retention, poll)
                    .await
                    .map_err(|e| e.to_string())?;
                Server::with_storage(Arc::new(storage), config)
            }
            (None, None) => return Err("--data or --postgres is needed".to_string()),
        };
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            () = server.clone().serve(listener) => {}
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        server.shutdown(Duration::from_secs(10)).await;
        tracing::info!("stopped");
        Ok(())
    })
}
