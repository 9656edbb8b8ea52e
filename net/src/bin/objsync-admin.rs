//! Checks and repairs the reference server's realms on disk.
//!
//! ```text
//! objsync-admin verify --data DIR [PATH...]   # every realm, or the ones named
//! objsync-admin repair --data DIR PATH...     # with the server stopped
//! ```
//!
//! `verify` changes nothing: for each realm it says whether its snapshot loads, whether its
//! journal is intact (a torn tail, which the server cuts when it opens the realm, is fine) and
//! whether every record replays, and what `repair` would do. Exit status 1 if any realm is
//! damaged (the server refuses it).
//!
//! `repair` rebuilds a damaged realm from the newest snapshot that loads (the current one, or
//! the generation before it) plus every intact record after it, keeps the damaged files beside
//! as `*.damaged`, and writes a fresh snapshot and journal. If acknowledged history could not
//! be recovered, the realm gets a new file identifier: every client is told to reset and
//! re-uploads what it holds. It takes the data directory's lock, so the server must be stopped.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use objsync_net::disk::{realm_file, realm_files, realm_path, repair, verify};
use objsync_net::server::check_path;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Check and repair the reference server's realms.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report on realms without changing anything (exit status 1 if any is damaged).
    Verify {
        /// The server's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Realm paths (default: every realm).
        paths: Vec<String>,
    },
    /// Rebuild damaged realms (the server must be stopped).
    Repair {
        /// The server's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Realm paths.
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    objsync_net::run_main("warn", || match args.command {
        Command::Verify { data, paths } => verify_realms(&data, &paths),
        Command::Repair { data, paths } => repair_realms(&data, &paths),
    })
}

/// The journals of `paths` (checked), or of every realm under `data`.
fn journals(data: &Path, paths: &[String]) -> Result<Vec<PathBuf>, String> {
    if paths.is_empty() {
        return realm_files(data).map_err(|e| format!("{}: {e}", data.display()));
    }
    paths
        .iter()
        .map(|p| {
            check_path(p).map_err(|e| format!("{p}: {e}"))?;
            let file = realm_file(data, p);
            if file.exists() {
                Ok(file)
            } else {
                Err(format!(
                    "{p}: no such realm ({} is missing)",
                    file.display()
                ))
            }
        })
        .collect()
}

fn name(data: &Path, file: &Path) -> String {
    realm_path(data, file).unwrap_or_else(|| file.display().to_string())
}

fn verify_realms(data: &Path, paths: &[String]) -> Result<(), String> {
    let mut damaged = 0;
    let files = journals(data, paths)?;
    for file in &files {
        let verdict = verify(file);
        let state = if verdict.is_healthy() {
            "ok"
        } else {
            "DAMAGED"
        };
        let version = verdict.version.map_or("-".to_string(), |v| v.0.to_string());
        println!("{} {state} (server version {version})", name(data, file));
        if let Some(torn) = verdict.torn {
            println!("  torn tail of {torn} bytes: cut when the server opens the realm");
        }
        for problem in &verdict.problems {
            println!("  {problem}");
        }
        if let Some(remedy) = &verdict.remedy {
            println!("  repair: {remedy}");
        }
        if !verdict.is_healthy() {
            damaged += 1;
        }
    }
    println!("{} realms, {damaged} damaged", files.len());
    if damaged > 0 {
        Err(format!("{damaged} damaged realms"))
    } else {
        Ok(())
    }
}

fn repair_realms(data: &Path, paths: &[String]) -> Result<(), String> {
    let _lock = objsync_net::lock_dir(data)
        .map_err(|e| format!("{e}: stop the server before repairing its realms"))?;
    for file in journals(data, paths)? {
        let realm = name(data, &file);
        let repaired = repair(&file).map_err(|e| format!("{realm}: cannot repair: {e}"))?;
        if repaired.kept.is_empty() {
            println!("{realm}: intact, left as it was");
            continue;
        }
        println!("{realm}: rebuilt up to server version {}", repaired.version);
        for why in &repaired.lost {
            println!("  left out: {why}");
        }
        if let Some(ident) = repaired.new_file_ident {
            println!(
                "  new realm file identifier {ident}: clients reset and re-upload what they hold"
            );
        }
        for kept in &repaired.kept {
            println!("  damaged file kept as {}", kept.display());
        }
    }
    Ok(())
}
