//! The server's operations: following what other processes append, the status line, and
//! graceful shutdown.

use super::{lock, Server};
use crate::storage::Grown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

impl Server {
    /// Stops accepting connections and closes every session with ConnectionClosed (retry)
    /// once the frame it is processing is done (an integration under way is committed and
    /// acknowledged first); returns when all connections are closed or `patience` ran out.
    pub async fn shutdown(&self, patience: Duration) {
        self.stopping.send_replace(true);
        let deadline = Instant::now() + patience;
        while lock(&self.admitted).total > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replays into open realms what other processes appended, as the storage reports it.
    pub(super) async fn follow(self: Arc<Self>, mut news: mpsc::UnboundedReceiver<Grown>) {
        while let Some(Grown { path, end }) = news.recv().await {
            let Some(realm) = self.realms.lock().await.get(&path).cloned() else {
                continue;
            };
            realm.newest.fetch_max(end, Ordering::AcqRel);
            if realm.committed() >= end {
                continue;
            }
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = realm.refresh(end).await {
                    realm.break_down(&e);
                    server.evict(&realm).await;
                }
            });
        }
    }

    /// Logs one status line per interval: connections, open realms, changesets integrated
    /// per second by this process, and how many log records it is behind storage in all.
    pub(super) async fn status(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        let mut last = (Instant::now(), self.integrations.load(Ordering::Relaxed));
        loop {
            ticks.tick().await;
            let now = (Instant::now(), self.integrations.load(Ordering::Relaxed));
            let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
            last = now;
            let (realms, lag) = {
                let realms = self.realms.lock().await;
                (realms.len(), realms.values().map(|r| r.lag()).sum::<u64>())
            };
            info!(
                connections = lock(&self.admitted).total,
                realms,
                integrations_per_s = format!("{rate:.1}"),
                lag_records = lag,
                "status"
            );
        }
    }
}
