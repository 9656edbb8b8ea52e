//! The reference sync server over WebSocket.
//!
//! ```text
//! cargo run --release --bin server -- --listen 127.0.0.1:9080 --data DIR [--config FILE]
//! ```
//!
//! Realms live under `DIR`, each a snapshot plus the append-only journal after it, created on
//! first BIND. Without
//! `--config` the server makes up an admin token and prints it (`admin token: ...`); with one,
//! tokens, users and permission grants come from the file (README, "Reference server and
//! client"). Once it accepts connections it prints `listening on ADDR` on stdout; it logs to
//! stderr (`RUST_LOG` sets the level, `info` by default).

#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator: it gives freed memory back to the system, so
/// the server's memory returns to its base once clients leave and their realms close.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use objsync_net::server::{random_token, Config, Server};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The reference objsync sync server.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the real address is printed).
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: String,
    /// Directory of the realms' journals (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// JSON config: admin token, user tokens, permission grants.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep at most this many entries of each realm's history (trimmed when the realm is
    /// opened; clients further behind must reset, new ones start from the state). Default:
    /// keep everything.
    #[arg(long, value_name = "ENTRIES")]
    keep_history: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    objsync_net::run_main("info", || serve(args))
}

fn serve(args: Args) -> Result<(), String> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let token = random_token();
            println!("admin token: {token}");
            Config::admin_only(token)
        }
    };
    // Held for the life of the process: two servers on one directory would interleave
    // their journals.
    let _lock = objsync_net::lock_dir(&args.data).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        Server::keeping(args.data.clone(), config, args.keep_history)
            .serve(listener)
            .await;
        Ok(())
    })
}
