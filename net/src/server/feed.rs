//! The Adapter feed over the network (spec/protocol.md section 13): a connection whose first
//! message is FEED follows every realm whose path matches the request's regular expression,
//! and gets each realm's integrated transactions as FEED_ITEMs, from the cursor the consumer
//! sent for it.
//!
//! Only the admin token may follow the feed: it reads every realm. Each followed realm has an
//! [`objsync::feed::Feed`] here, rebuilt from the consumer's cursor when the connection opens
//! (replaying the history up to it); a cursor behind the history's horizon, or past its
//! latest version (a realm restored from an older copy), starts from the realm's state as a
//! snapshot item instead. Like every frame of a sync session, an item leaves only once the
//! records it depends on are committed. Realms created while the feed runs are found by
//! listing the storage's realms again every [`RESCAN`].

use super::{Conn, Link, Realm, Server, User, SEND_BATCH};
use futures_util::future::select_all;
use futures_util::StreamExt;
use objsync::feed::{item_frames, Feed, FeedCursor, FeedError, FeedItem};
use objsync::wire::{
    ErrorCode, ErrorMessage, FeedClientMessage, FeedRequest, FeedServerMessage, MIN_MESSAGE,
    PROTOCOL_VERSION,
};
use objsync::ServerVersion;
use regex::Regex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

/// How often the data directory is looked at again for new realms that match.
const RESCAN: Duration = Duration::from_secs(1);

/// One realm the feed follows.
struct Followed {
    path: String,
    realm: Arc<Realm>,
    changed: watch::Receiver<()>,
    /// Built at the first item (under the realm's lock), from `start`.
    feed: Option<Feed>,
    start: FeedCursor,
    /// No item was found at the last look and the realm has not changed since.
    idle: bool,
}

/// A feed connection: what it follows and where each realm stands.
struct FeedConn {
    server: Arc<Server>,
    paths: Regex,
    frame_size: usize,
    cursors: HashMap<String, ServerVersion>,
    followed: Vec<Followed>,
    /// Round-robin position, so that a realm with a long backlog does not starve the others.
    next: usize,
}

/// Serves a connection whose first frame is a FEED; `conn` is the connection as the server
/// accepted it (its admission is held until the feed ends).
pub(super) async fn serve(conn: Conn, mut link: Link<TcpStream>, first: &[u8]) {
    let server = conn.server.clone();
    let mut queue = VecDeque::new();
    match admit(&server, first) {
        Ok(mut feed) => {
            feed.run(&mut link, &mut queue).await;
            feed.release();
        }
        Err(refusal) => {
            info!(code = refusal.code.number(), why = ?refusal.message, "feed refused");
            queue.push_back(FeedServerMessage::Error(refusal).encode());
        }
    }
    for frame in queue {
        if link.outgoing.send(frame).await.is_err() {
            break;
        }
    }
    drop(conn);
    link.close().await;
    debug!("feed closed");
}

/// Checks the request: protocol version, admin token, a path expression that compiles, a
/// frame limit.
fn admit(server: &Arc<Server>, first: &[u8]) -> Result<FeedConn, ErrorMessage> {
    let limits = server.limits().protocol();
    let request = match FeedClientMessage::decode(first, &limits) {
        Ok(FeedClientMessage::Feed(request)) => request,
        Ok(FeedClientMessage::Ping { .. }) => {
            return Err(refusal(ErrorCode::MessageOrder, "FEED first".into()))
        }
        Err(e) => return Err(refusal(e.code(), e.to_string())),
    };
    let FeedRequest {
        protocol_version,
        paths,
        token,
        max_message,
        cursors,
    } = request;
    if protocol_version != PROTOCOL_VERSION {
        let why =
            format!("protocol version {protocol_version}; this server speaks {PROTOCOL_VERSION}");
        return Err(refusal(ErrorCode::WrongProtocolVersion, why));
    }
    match server.config.user(&token) {
        Some(User::Admin) => {}
        Some(User::Named(id)) => {
            let why = format!("user {id} may not follow the feed: it is for the admin token");
            return Err(refusal(ErrorCode::PermissionDenied, why));
        }
        None => {
            return Err(refusal(
                ErrorCode::BadAuthentication,
                "unknown token".into(),
            ))
        }
    }
    let paths = Regex::new(&format!("^(?:{paths})$")).map_err(|e| {
        refusal(
            ErrorCode::IllegalRealmPath,
            format!("the path expression does not compile: {e}"),
        )
    })?;
    if max_message < MIN_MESSAGE as u64 {
        let why = format!("a frame limit of {max_message} bytes is below {MIN_MESSAGE}");
        return Err(refusal(ErrorCode::LimitsExceeded, why));
    }
    let frame_size = usize::try_from(max_message)
        .unwrap_or(usize::MAX)
        .min(limits.max_message)
        .min(SEND_BATCH);
    info!(paths = ?paths.as_str(), realms = cursors.len(), "feed started");
    Ok(FeedConn {
        server: server.clone(),
        paths,
        frame_size,
        cursors: cursors.into_iter().collect(),
        followed: Vec::new(),
        next: 0,
    })
}

fn refusal(code: ErrorCode, message: String) -> ErrorMessage {
    ErrorMessage::new(code, message)
}

/// What woke the feed up.
enum Wake {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Sent,
    WriterGone,
    Changed(usize),
    Rescan,
    Idle,
}

impl FeedConn {
    async fn run(&mut self, link: &mut Link<TcpStream>, queue: &mut VecDeque<Vec<u8>>) {
        let idle = Duration::from_secs(self.server.limits().idle_timeout_secs);
        let mut last_heard = Instant::now();
        let mut rescan = tokio::time::interval(RESCAN);
        loop {
            if queue.is_empty() {
                match self.fill(queue).await {
                    Ok(()) => {}
                    Err(e) => {
                        queue.push_back(FeedServerMessage::Error(e).encode());
                        return;
                    }
                }
            }
            let waiting = queue.is_empty();
            let wake = {
                let changes: Vec<_> = (self.followed.iter_mut())
                    .map(|f| Box::pin(f.changed.changed()))
                    .collect();
                // select_all wants at least one future; with none (or frames to send) a
                // change is not waited for.
                let any_change = async {
                    if changes.is_empty() || !waiting {
                        std::future::pending::<()>().await;
                    }
                    select_all(changes).await.1
                };
                tokio::select! {
                    frame = link.incoming.next() => Wake::Frame(frame),
                    permit = link.outgoing.reserve(), if !queue.is_empty() => match permit {
                        Ok(permit) => {
                            permit.send(queue.pop_front().expect("a queued frame"));
                            Wake::Sent
                        }
                        Err(_) => Wake::WriterGone,
                    },
                    i = any_change => Wake::Changed(i),
                    _ = rescan.tick() => Wake::Rescan,
                    () = tokio::time::sleep_until(last_heard + idle) => Wake::Idle,
                }
            };
            match wake {
                Wake::Frame(Some(Ok(Message::Binary(frame)))) => {
                    last_heard = Instant::now();
                    match FeedClientMessage::decode(&frame, &self.server.limits().protocol()) {
                        Ok(FeedClientMessage::Ping { timestamp }) => {
                            queue.push_back(FeedServerMessage::Pong { timestamp }.encode());
                        }
                        Ok(FeedClientMessage::Feed(_)) => {
                            let e = refusal(ErrorCode::MessageOrder, "a second FEED".into());
                            queue.push_back(FeedServerMessage::Error(e).encode());
                            return;
                        }
                        Err(e) => {
                            let e = refusal(e.code(), e.to_string());
                            queue.push_back(FeedServerMessage::Error(e).encode());
                            return;
                        }
                    }
                }
                Wake::Frame(Some(Ok(Message::Close(_))) | None) | Wake::WriterGone => return,
                Wake::Frame(Some(Ok(_))) => last_heard = Instant::now(),
                Wake::Frame(Some(Err(e))) => {
                    debug!(error = %e, "feed receive failed");
                    return;
                }
                Wake::Changed(i) => {
                    if let Some(f) = self.followed.get_mut(i) {
                        f.idle = false;
                    }
                }
                Wake::Rescan => self.rescan().await,
                Wake::Idle => {
                    info!(
                        "feed silent for {}s; dropping the connection",
                        idle.as_secs()
                    );
                    return;
                }
                Wake::Sent => {}
            }
        }
    }

    /// Follows the realms on disk that match and are not followed yet.
    async fn rescan(&mut self) {
        let listed = match self.server.storage.realms().await {
            Ok(listed) => listed,
            Err(e) => {
                warn!(error = %e, "feed cannot list the realms");
                Vec::new()
            }
        };
        for path in listed {
            if !self.paths.is_match(&path) || self.followed.iter().any(|f| f.path == path) {
                continue;
            }
            match self.server.realm(&path).await {
                Ok(realm) => {
                    let start = FeedCursor {
                        version: self.cursors.get(&path).copied().unwrap_or_default(),
                    };
                    debug!(path = ?path, from = %start.version, "feed follows a realm");
                    self.followed.push(Followed {
                        changed: realm.changed.subscribe(),
                        path,
                        realm,
                        feed: None,
                        start,
                        idle: false,
                    });
                }
                Err(e) => warn!(path = ?path, error = %e, "feed cannot open a realm"),
            }
        }
    }

    /// Queues up to a batch of items' frames, taking realms in turn; leaves the queue empty
    /// when every realm is caught up.
    async fn fill(&mut self, queue: &mut VecDeque<Vec<u8>>) -> Result<(), ErrorMessage> {
        let mut bytes = 0;
        let mut dry = 0;
        while bytes < SEND_BATCH && dry < self.followed.len() {
            let i = self.next % self.followed.len();
            self.next = self.next.wrapping_add(1);
            match self.take(i).await? {
                Some(frames) => {
                    dry = 0;
                    bytes += frames.iter().map(Vec::len).sum::<usize>();
                    queue.extend(frames);
                }
                None => dry += 1,
            }
        }
        Ok(())
    }

    /// The frames of the next item of realm `i`, moved past; `None` if it has none now.
    async fn take(&mut self, i: usize) -> Result<Option<Vec<Vec<u8>>>, ErrorMessage> {
        if self.followed[i].idle {
            return Ok(None);
        }
        let realm = self.followed[i].realm.clone();
        let (item, latest, appended) = {
            let Some(state) = realm.lock() else {
                // A broken realm is dropped; the next rescan follows it again once reopened.
                let gone = self.followed.swap_remove(i);
                self.server.session_gone(&gone.realm);
                return Ok(None);
            };
            let f = &mut self.followed[i];
            let server = state.realm.server();
            let history = server.history();
            let feed = match f.feed.take() {
                Some(feed) => feed,
                None => start(f.start, &state.realm)?,
            };
            let feed = f.feed.insert(feed);
            let item = match feed.current(history) {
                Ok(item) => item.cloned(),
                Err(FeedError::BehindHorizon { .. } | FeedError::Ahead { .. }) => {
                    *feed = from_state(&state.realm)?;
                    feed.current(history).map_err(internal)?.cloned()
                }
                Err(e) => return Err(internal(e)),
            };
            feed.advance();
            (item, server.version(), state.end)
        };
        let f = &mut self.followed[i];
        let Some(item) = item else {
            f.idle = true;
            return Ok(None);
        };
        if realm.sync_to(appended).await.is_err() {
            return Err(refusal(
                ErrorCode::ConnectionClosed,
                "the realm is unavailable; try again later".into(),
            ));
        }
        let path = f.path.clone();
        self.cursors.insert(path.clone(), item.version());
        if let FeedItem::Snapshot(s) = &item {
            info!(path = ?path, version = %s.version, "feed starts from the realm's state");
        }
        Ok(Some(item_frames(&path, latest, &item, self.frame_size)))
    }

    /// Lets go of the realms followed.
    fn release(&mut self) {
        for f in self.followed.drain(..) {
            self.server.session_gone(&f.realm);
        }
    }
}

/// The feed of `realm` at `cursor`: replayed from the start of the history, or from the
/// realm's state when that is where the cursor stands or the history no longer reaches back.
fn start(cursor: FeedCursor, realm: &objsync::session::ServerRealm) -> Result<Feed, ErrorMessage> {
    let server = realm.server();
    let history = server.history();
    if cursor.version == ServerVersion(0) && history.horizon() == ServerVersion(0) {
        return Ok(Feed::new());
    }
    if cursor.version == server.version() {
        return Feed::resume(Some(&server.state_snapshot()), cursor, history).map_err(internal);
    }
    match Feed::resume(None, cursor, history) {
        Ok(feed) => Ok(feed),
        Err(FeedError::BehindHorizon { .. } | FeedError::Ahead { .. }) => from_state(realm),
        Err(e) => Err(internal(e)),
    }
}

/// A feed whose first item is the realm's state.
fn from_state(realm: &objsync::session::ServerRealm) -> Result<Feed, ErrorMessage> {
    Feed::from_state(&realm.server().state_snapshot()).map_err(internal)
}

/// A feed that cannot go on over a realm the server holds: the realm's data is at fault, not
/// the consumer; it may retry once an operator looked.
fn internal(e: FeedError) -> ErrorMessage {
    warn!(error = %e, "feed failed");
    refusal(ErrorCode::ConnectionClosed, format!("the feed failed: {e}"))
}
