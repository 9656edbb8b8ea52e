//! The server's Adapter feed for `--feed`, followed while the run goes on, as an adapter
//! follows a live realm: drained after every step, so a trim never leaves it behind, and moved
//! back with the server when the server is restored from a backup.

use objsync::feed::{Feed, FeedError, FeedItem, FeedTransaction};
use objsync::sync::Server;

/// A feed that follows the run's server, and every transaction it handed out.
pub(super) struct Follower {
    feed: Feed,
    transactions: Vec<FeedTransaction>,
    /// The first error; the follower stops at it.
    error: Option<FeedError>,
}

impl Follower {
    pub(super) fn new() -> Follower {
        Follower {
            feed: Feed::new(),
            transactions: Vec::new(),
            error: None,
        }
    }

    /// Takes every transaction the server integrated since the last call.
    pub(super) fn follow(&mut self, server: &Server) {
        if self.error.is_some() {
            return;
        }
        loop {
            match self.feed.current(server.history()) {
                Ok(Some(FeedItem::Transaction(t))) => self.transactions.push(t.clone()),
                Ok(Some(FeedItem::Snapshot(_))) => {}
                Ok(None) => return,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
            self.feed.advance();
        }
    }

    /// The server was replaced by an older copy of itself: the transactions it still has are
    /// the ones handed out up to its version, and the feed goes on from its state.
    pub(super) fn went_back(&mut self, server: &Server) {
        let latest = server.version();
        self.transactions.retain(|t| t.version <= latest);
        match Feed::from_state(&server.state_snapshot()) {
            Ok(mut feed) => {
                feed.advance();
                self.feed = feed;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Every transaction handed out, or the error that stopped the feed.
    pub(super) fn finish(self) -> Result<Vec<FeedTransaction>, FeedError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.transactions),
        }
    }
}
