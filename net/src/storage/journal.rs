//! The embedded journal as [`Storage`]: each realm a snapshot plus an append-only journal in a
//! data directory that one server process owns ([`crate::disk`] lays the files out).
//!
//! Opening replays the journal after the snapshot, then checkpoints (a new snapshot, trimmed
//! first if the server keeps only so many history entries, and an empty journal behind it),
//! so a realm opens in time proportional to its state plus what changed since it was last
//! opened. Commits write the buffered records and `fdatasync` them: sessions that appended
//! meanwhile are covered by the same sync (group commit).

use super::{Grown, OpenedRealm, RealmStore, Records, Retention, Storage};
use crate::disk::{checkpoint, create_realm, open_realm, realm_file, realm_files, realm_path};
use crate::journal::Journal;
use futures_util::future::BoxFuture;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Realms in journals under a data directory.
#[derive(Debug)]
pub struct JournalStorage {
    data: PathBuf,
    retention: Retention,
}

impl JournalStorage {
    /// Realms under `data`, each trimmed and compacted by `retention` when it is opened.
    pub fn new(data: PathBuf, retention: Retention) -> JournalStorage {
        JournalStorage { data, retention }
    }
}

impl Storage for JournalStorage {
    fn realms(&self) -> BoxFuture<'_, io::Result<Vec<String>>> {
        let data = self.data.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let files = realm_files(&data)?;
                Ok(files.iter().filter_map(|f| realm_path(&data, f)).collect())
            })
            .await
            .map_err(io::Error::other)?
        })
    }

    fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, io::Result<OpenedRealm>> {
        let file = realm_file(&self.data, path);
        let retention = self.retention;
        let owned = path.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let (realm, journal) = if file.exists() {
                    let (mut realm, journal, dropped) = open_realm(&file)?;
                    if dropped > 0 {
                        warn!(path = ?owned, dropped, "cut a torn tail off the realm's journal");
                    }
                    drop(journal);
                    retention.apply(&mut realm, &owned);
                    let journal = checkpoint(&file, &realm)?;
                    info!(
                        path = ?owned,
                        version = %realm.server().version(),
                        horizon = %realm.server().history().horizon(),
                        "realm opened"
                    );
                    (realm, journal)
                } else {
                    let created = create_realm(&file)?;
                    info!(path = ?owned, file_ident = created.0.file_ident(), "realm created");
                    created
                };
                Ok(OpenedRealm {
                    realm,
                    // Positions only order this process's own appends: a fresh journal is 0.
                    end: 0,
                    store: Box::new(JournalStore {
                        journal: Arc::new(Mutex::new(journal)),
                    }),
                })
            })
            .await
            .map_err(io::Error::other)?
        })
    }

    fn watch(&self, _grown: mpsc::UnboundedSender<Grown>) {}

    fn describe(&self) -> String {
        format!("journals in {}", self.data.display())
    }
}

/// One realm's journal.
struct JournalStore {
    journal: Arc<Mutex<Journal>>,
}

impl RealmStore for JournalStore {
    fn shared(&self) -> bool {
        false
    }

    fn begin(&self, _at: u64) -> BoxFuture<'_, io::Result<Records>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn commit(&self, _at: u64, records: Records) -> BoxFuture<'_, io::Result<()>> {
        let journal = self.journal.clone();
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || {
                let mut journal = journal
                    .lock()
                    .map_err(|_| io::Error::other("an earlier write to the journal panicked"))?;
                journal.append(&records)?;
                journal.sync()
            })
            .await
            .map_err(io::Error::other)?
        })
    }

    fn since(&self, _at: u64) -> BoxFuture<'_, io::Result<Records>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
