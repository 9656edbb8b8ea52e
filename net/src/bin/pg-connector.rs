//! `pg-connector`: mirrors the realms whose paths match `--paths` into PostgreSQL and writes
//! the rows other programs change there back into the realms (`objsync_net::connector`).
//!
//! ```text
//! pg-connector --server realm://HOST:PORT --token ADMIN --paths REGEX --postgres CONNSTR
//!     [--initialize-from-postgres SCHEMA:PATH] [--batch N]
//! ```
//!
//! CONNSTR is libpq's `key=value` form (`host=127.0.0.1 port=5432 user=postgres dbname=app`).
//! It logs what it mirrored to stderr (`RUST_LOG` filters it) and shows a progress bar while it
//! catches up with a large backlog.

#![forbid(unsafe_code)]

use clap::Parser;
use objsync_net::connector::{run, Options};
use std::process::ExitCode;

/// The same allocator as the server's (see `server.rs`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Mirrors realms into PostgreSQL, both ways.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The server: realm://HOST:PORT.
    #[arg(long)]
    server: String,
    /// The server's admin token.
    #[arg(long)]
    token: String,
    /// A regular expression matching the whole paths of the realms to mirror.
    #[arg(long)]
    paths: String,
    /// The PostgreSQL connection string, libpq key=value form.
    #[arg(long)]
    postgres: String,
    /// First make the realm PATH from the tables of the PostgreSQL schema SCHEMA.
    #[arg(long, value_name = "SCHEMA:PATH")]
    initialize_from_postgres: Option<String>,
    /// Most feed transactions committed in one PostgreSQL transaction.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
}

fn main() -> ExitCode {
    objsync_net::run_main("info", || {
        let args = Args::parse();
        let server = (args.server.strip_prefix("realm://"))
            .map(|s| s.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| format!("{}: expected realm://HOST:PORT", args.server))?;
        let initialize = match args.initialize_from_postgres {
            Some(spec) => match spec.split_once(":/") {
                Some((schema, path)) => Some((schema.to_string(), format!("/{path}"))),
                None => return Err(format!("{spec}: expected SCHEMA:/realm/path")),
            },
            None => None,
        };
        let options = Options {
            server,
            token: args.token,
            paths: args.paths,
            postgres: args.postgres,
            batch: args.batch.max(1),
            initialize,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(run(options))
    })
}
