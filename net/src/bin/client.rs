//! The reference sync client: a durable local realm that syncs with the reference server.
//!
//! ```text
//! cargo run --release --bin client -- --url realm://127.0.0.1:9080/PATH --token T --local DIR CMD
//! ```
//!
//! CMD is one of:
//! - `apply FILE`: run the ops in FILE (a JSON array in the scenario format's op syntax) as
//!   one local transaction; offline.
//! - `sync`: connect, upload and download until both sides are up to date, then exit.
//! - `state`: print the local state as canonical JSON; offline.
//! - `watch`: stay connected and print a line per change, reconnecting on drops.
//!
//! When the server says the local realm must be reset (its history was trimmed, the server was
//! restored from a backup, a write was refused), `sync` and `watch` reset it with
//! `--reset-mode` (recover by default: everything written here that the server does not have is
//! replayed on the server's state) and log what was recovered, reverted and deferred.
//!
//! Exit status 0 on success; 1 with a one-line reason on stderr otherwise (the server refused
//! the token, the path or the permission, the local realm cannot sync with the server's and
//! `--reset-mode off` forbids a reset, or the server could not be reached after the retries).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use objsync::session::{ClientConfig, ClientEvent};
use objsync::sync::ResetMode;
use objsync::wire::Limits;
use objsync_net::client::{run, Flow, Local, RealmUrl};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The reference objsync sync client.
#[derive(Parser)]
struct Args {
    /// The server and realm: realm://host:port/path (`/~/name` is the user's own
    /// `/<user>/name`). Needed by sync and watch.
    #[arg(long)]
    url: Option<String>,
    /// The access token. Needed by sync and watch.
    #[arg(long)]
    token: Option<String>,
    /// The local realm's directory (created if missing; one process at a time).
    #[arg(long)]
    local: PathBuf,
    /// Consecutive failed connection attempts `sync` makes before giving up.
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// How the local realm is reset when the server says it must be: `recover` replays every
    /// local write the server does not have on its state, `discard` drops them (and logs them),
    /// `off` stops with the error instead.
    #[arg(long, value_enum, default_value_t = ResetArg::Recover)]
    reset_mode: ResetArg,
    #[command(subcommand)]
    command: Command,
}

/// `--reset-mode`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ResetArg {
    Recover,
    Discard,
    Off,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ops in FILE (a JSON array of ops) as one local transaction.
    Apply {
        /// The op file.
        file: PathBuf,
    },
    /// Upload and download until both sides are up to date.
    Sync,
    /// Print the local state as canonical JSON.
    State,
    /// Stay connected and print a line per change.
    Watch,
}

fn main() -> ExitCode {
    let args = Args::parse();
    objsync_net::run_main("warn", || command(args))
}

fn command(args: Args) -> Result<(), String> {
    let url = args.url.as_deref().map(RealmUrl::parse).transpose()?;
    let config = ClientConfig {
        path: url.as_ref().map(|u| u.path.clone()).unwrap_or_default(),
        token: args.token.clone().unwrap_or_default(),
        limits: Limits::default(),
        start_from_state: true,
    };
    match args.command {
        Command::Apply { file } => {
            let ops = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut local = Local::open(&args.local, config)?;
            match local
                .apply(&ops)
                .map_err(|e| format!("{}: {e}", file.display()))?
            {
                Some(version) => println!("committed local version {version}"),
                None => println!("nothing changed"),
            }
            Ok(())
        }
        Command::State => {
            let local = Local::open(&args.local, config)?;
            println!("{}", local.state());
            Ok(())
        }
        Command::Sync | Command::Watch => {
            let url = url.ok_or("sync and watch need --url")?;
            if args.token.is_none() {
                return Err("sync and watch need --token".into());
            }
            let mut local = Local::open(&args.local, config)?;
            local.reset_mode = match args.reset_mode {
                ResetArg::Recover => Some(ResetMode::Recover),
                ResetArg::Discard => Some(ResetMode::Discard),
                ResetArg::Off => None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                if matches!(args.command, Command::Sync) {
                    sync(&mut local, &url, args.retries).await
                } else {
                    watch(&mut local, &url).await
                }
            })
        }
    }
}

/// Syncs until every local changeset is acknowledged and everything the server had when the
/// session was bound is integrated (a MARK sent after IDENT has come back).
async fn sync(local: &mut Local, url: &RealmUrl, retries: u32) -> Result<(), String> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("connecting");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut mark = 0;
    let mut reached = false;
    let mut downloads = 0;
    let on_event = |local: &mut Local, event: &ClientEvent| {
        match event {
            ClientEvent::Identified(_) => {
                mark += 1;
                local.session.mark(mark);
                bar.set_message("syncing");
            }
            ClientEvent::MarkReached(m) => reached |= *m == mark,
            ClientEvent::Integrated(d) => downloads += d.entries.len(),
            _ => {}
        }
        let (up, down) = (
            local.session.upload_progress(),
            local.session.download_progress(),
        );
        bar.set_length(up.transferable + down.transferable);
        bar.set_position(up.transferred + down.transferred);
        Ok(if reached && local.all_acknowledged() {
            Flow::Done
        } else {
            Flow::Continue
        })
    };
    let on_retry = |failure: &_, delay: std::time::Duration| {
        tracing::info!(%failure, ?delay, "reconnecting");
        bar.set_message(format!("retrying in {} ms", delay.as_millis()));
    };
    let result = run(local, url, Some(retries), on_event, on_retry).await;
    bar.finish_and_clear();
    result.map_err(|e| e.to_string())?;
    local.sync().map_err(|e| e.to_string())?;
    let client = local.session.client();
    eprintln!(
        "synced: server version {}, local version {} acknowledged, {downloads} changesets downloaded",
        client.cursor().server,
        client.acknowledged(),
    );
    Ok(())
}

/// Stays connected, printing the state once up to date and then a line per download
/// integrated: `{"server_version": N, "changesets": K, "state": STATE}`.
async fn watch(local: &mut Local, url: &RealmUrl) -> Result<(), String> {
    let mut mark = 0;
    let mut printed = false;
    let on_event = |local: &mut Local, event: &ClientEvent| {
        let changesets = match event {
            ClientEvent::Identified(_) => {
                mark += 1;
                local.session.mark(mark);
                return Ok(Flow::Continue);
            }
            ClientEvent::MarkReached(m) if *m == mark && !printed => 0,
            ClientEvent::Integrated(d) if !d.entries.is_empty() => d.entries.len(),
            _ => return Ok(Flow::Continue),
        };
        printed = true;
        let line = format!(
            "{{\"server_version\":{},\"changesets\":{changesets},\"state\":{}}}",
            local.session.client().cursor().server.0,
            local.state()
        );
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| objsync_net::client::Failure::Local(format!("stdout: {e}")))?;
        Ok(Flow::Continue)
    };
    let on_retry = |failure: &_, delay: std::time::Duration| {
        tracing::warn!(%failure, "reconnecting in {} ms", delay.as_millis());
    };
    run(local, url, None, on_event, on_retry)
        .await
        .map_err(|e| e.to_string())
}
