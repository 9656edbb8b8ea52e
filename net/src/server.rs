//! The reference sync server: realms in a [`Storage`] (journals on disk, or PostgreSQL shared
//! by several server processes), tokens and permissions, and one task per WebSocket connection
//! driving a [`ServerSession`] over the realm its BIND names.
//!
//! Each realm is a [`ServerRealm`] in memory, rebuilt at first use from its snapshot and the
//! log records after it (a Registered record per client identity issued, an Integrated record
//! per changeset as uploaded; integration is deterministic, so replaying them reproduces the
//! history exactly). The sessions of a realm share it behind a mutex; a watch channel wakes
//! them when the history grows so they send the new entries.
//!
//! Durability ("nothing acknowledged is lost"): every event a session reports becomes a record
//! buffered under the realm's lock, in the same critical section that changed the realm, and
//! no session transmits anything while records it may depend on are not yet committed. So
//! every frame that reveals an entry, an acknowledgement or a salt leaves only once the records
//! behind it are durable, whichever session sends it. Commits happen outside the lock, one at
//! a time per realm (its gate), and each takes everything buffered (group commit): sessions
//! that appended meanwhile are covered by one `fdatasync` or one transaction.
//!
//! A connection whose first message is FEED rather than BIND is an Adapter feed consumer
//! (`feed`: admin token only, spec/protocol.md section 13).
//!
//! A shared storage (PostgreSQL) is appended to by other processes too. A frame that may append
//! (an IDENT, an UPLOAD carrying changesets) is then processed in a turn: under the realm's gate
//! the storage takes the realm's lock across processes and hands over what others appended
//! since, which is replayed first; the turn ends with the commit. Growth elsewhere is reported
//! by the storage ([`Storage::watch`]) and replayed likewise, so sessions here send it.
//!
//! A commit that fails marks its realm broken: its sessions are closed with ConnectionClosed
//! (retry), and the realm is dropped from memory so the next BIND reopens it from storage; its
//! clients re-upload whatever was not acknowledged, and what was committed after all is
//! recognised by its client version and not integrated twice.

mod config;
mod feed;
mod operations;
mod realm;
mod users;

pub use config::{check_path, resolve_path, Config, Level, ServerLimits, User, ADMIN_USER};

use super::disk;
pub use super::disk::{open_realm, realm_file, snapshot_file};
use super::storage::journal::JournalStorage;
use super::storage::{Retention, Storage};
use super::{now_ms, random_id, random_u64, ws_config, Link, SERVER_READ_BUFFER};
use futures_util::StreamExt;
use objsync::permissions::Identity;
use objsync::session::{Access, BindRequest, ServerEvent, ServerRealm, ServerSession};
use objsync::wire::{is_feed_request, Action, ErrorCode, ErrorMessage};
use objsync::Store;
use realm::{needs, Needs, Realm};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, error, info, warn, Instrument};

/// How long the WebSocket handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of frames taken from a session under the realm's lock before sending them, and the
/// largest frame a session builds: large enough to amortise the locking and the framing,
/// small enough that a connection whose client reads slowly holds a few of them at most
/// (in its queue, its writer's channel and the WebSocket's buffer), whatever it lags by.
const SEND_BATCH: usize = 64 << 10;

/// How long a session waits, per session bound to its realm, after the realm changed before it
/// builds its download, and the most it waits. Every integration wakes every session of the
/// realm; waiting lets one download carry the entries of several integrations, so a realm of N
/// busy clients costs the server about N sends per interval instead of N per integration
/// (1,000 clients: a 100 ms wait). An upload's own acknowledgement never waits, and carries
/// everything the uploader has not seen, so the wait delays only what a client that is not
/// writing learns. Each send costs the server and the client about as much as integrating ten
/// small changesets: with 20 ms, 1,000 busy clients received 15 entries a download on average,
/// and sending took a third of the server's time.
const COALESCE_PER_SESSION: Duration = Duration::from_micros(100);
const MAX_COALESCE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The server: its storage, configuration and open realms.
pub struct Server {
    storage: Arc<dyn Storage>,
    config: Config,
    realms: tokio::sync::Mutex<HashMap<String, Arc<Realm>>>,
    /// A lock per realm being opened, so that a realm is opened once at a time while other
    /// realms open alongside (an opening reads storage: with PostgreSQL, a transaction).
    openings: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Realms whose files are damaged, with why: refused until an operator repairs them
    /// (with the server stopped), so the files are not read again at every BIND.
    damaged: Mutex<HashMap<String, String>>,
    /// Connections open, in all and by address.
    admitted: Mutex<Admitted>,
    /// Bytes of incomplete changesets all sessions hold.
    in_transit: AtomicU64,
    /// Changesets integrated by this process, for the status line.
    integrations: AtomicU64,
    /// Set on shutdown: sessions finish what they are doing and close with a retryable error.
    stopping: watch::Sender<bool>,
}

#[derive(Default)]
struct Admitted {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place among those admitted, given back when it closes.
struct Admission {
    server: Arc<Server>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut admitted = lock(&self.server.admitted);
        admitted.total -= 1;
        if let Some(n) = admitted.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                admitted.by_address.remove(&self.ip);
            }
        }
    }
}

/// A std mutex's guard; a poisoned one still guards plain counters and maps.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Server {
    /// A server keeping realms in journals under `data`, with their whole histories.
    pub fn new(data: PathBuf, config: Config) -> Arc<Server> {
        Server::keeping(data, config, Retention::default())
    }

    /// A server keeping realms in journals under `data`, each trimmed and compacted by
    /// `retention` whenever it is opened: clients further behind than a trim are told to reset
    /// (222), new ones start from the state.
    pub fn keeping(data: PathBuf, config: Config, retention: Retention) -> Arc<Server> {
        Server::with_storage(Arc::new(JournalStorage::new(data, retention)), config)
    }

    /// A server keeping realms in `storage`.
    pub fn with_storage(storage: Arc<dyn Storage>, config: Config) -> Arc<Server> {
        Arc::new(Server {
            storage,
            config,
            realms: tokio::sync::Mutex::new(HashMap::new()),
            openings: Mutex::default(),
            damaged: Mutex::default(),
            admitted: Mutex::default(),
            in_transit: AtomicU64::new(0),
            integrations: AtomicU64::new(0),
            stopping: watch::channel(false).0,
        })
    }

    fn limits(&self) -> &ServerLimits {
        &self.config.limits
    }

    /// Accepts connections, one task each, within the connection caps, until
    /// [`shutdown`](Self::shutdown); follows what the storage reports of other processes and
    /// logs a status line at the configured interval meanwhile.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        info!(storage = %self.storage.describe(), "serving");
        let (grown, news) = mpsc::unbounded_channel();
        self.storage.watch(grown);
        tokio::spawn(self.clone().follow(news));
        if let Some(every) = self.config.status_interval {
            tokio::spawn(self.clone().status(every));
        }
        let mut stopping = self.stopping.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopping.wait_for(|s| *s) => return,
            };
            match accepted {
                Ok((tcp, addr)) => {
                    let Some(admission) = self.admit(addr.ip()) else {
                        // Closed at once: the cheapest refusal, and the client backs off.
                        debug!(%addr, "connection refused: too many connections");
                        continue;
                    };
                    // Protocol messages are small and latency-bound.
                    let _ = tcp.set_nodelay(true);
                    let span = tracing::info_span!("conn", %addr);
                    tokio::spawn(
                        self.clone()
                            .connection(tcp, addr, admission)
                            .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A place for a connection from `ip`, unless the server or that address is at its cap.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let limits = self.limits();
        let mut admitted = lock(&self.admitted);
        let from_ip = admitted.by_address.get(&ip).copied().unwrap_or(0);
        if admitted.total >= limits.max_connections || from_ip >= limits.max_connections_per_address
        {
            return None;
        }
        admitted.total += 1;
        admitted.by_address.insert(ip, from_ip + 1);
        Some(Admission {
            server: self.clone(),
            ip,
        })
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, addr: SocketAddr, admission: Admission) {
        let accepted = Instant::now();
        let limits = self.limits().protocol();
        let accept = tokio_tungstenite::accept_async_with_config(
            tcp,
            Some(ws_config(&limits, SERVER_READ_BUFFER)),
        );
        let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return debug!(error = %e, "handshake failed"),
            Err(_) => return debug!("handshake timed out"),
        };
        debug!(%addr, "connected");
        Conn {
            session: ServerSession::new(limits).with_frame_size(SEND_BATCH),
            server: self,
            bound: None,
            identity: None,
            unbound: ServerRealm::new(0),
            reassembling: 0,
            _admission: admission,
        }
        .run(Link::new(ws), accepted)
        .await;
    }

    /// The realm at `path`, opened (and replayed) or created on first use, counted as having
    /// one more session. A realm whose stored form is damaged stays refused.
    async fn realm(&self, path: &str) -> io::Result<Arc<Realm>> {
        if let Some(realm) = self.joined(path).await? {
            return Ok(realm);
        }
        let slot = lock(&self.openings)
            .entry(path.to_string())
            .or_default()
            .clone();
        let opened = {
            let _opening = slot.lock().await;
            self.open(path).await
        };
        // The slot goes once nobody else waits at it (counted under the same lock as cloned).
        let mut openings = lock(&self.openings);
        drop(slot);
        if openings
            .get(path)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            openings.remove(path);
        }
        opened
    }

    /// The realm at `path` if it is open, counted as having one more session; an error if it
    /// is known to be damaged.
    async fn joined(&self, path: &str) -> io::Result<Option<Arc<Realm>>> {
        let realms = self.realms.lock().await;
        if let Some(realm) = realms.get(path) {
            realm.sessions.fetch_add(1, Ordering::AcqRel);
            return Ok(Some(realm.clone()));
        }
        match lock(&self.damaged).get(path) {
            Some(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why.clone())),
            None => Ok(None),
        }
    }

    /// Opens the realm at `path` (its opening slot held), unless another session did while
    /// this one waited for the slot.
    async fn open(&self, path: &str) -> io::Result<Arc<Realm>> {
        if let Some(realm) = self.joined(path).await? {
            return Ok(realm);
        }
        let opened = self
            .storage
            .open(path)
            .await
            .map(|opened| Realm::new(path.to_string(), opened));
        let realm = match opened {
            Ok(realm) => Arc::new(realm),
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    lock(&self.damaged).insert(path.to_string(), e.to_string());
                }
                return Err(e);
            }
        };
        realm.sessions.fetch_add(1, Ordering::AcqRel);
        self.realms
            .lock()
            .await
            .insert(path.to_string(), realm.clone());
        Ok(realm)
    }

    /// Forgets a broken realm so the next BIND reopens it from disk.
    async fn evict(&self, realm: &Arc<Realm>) {
        let mut realms = self.realms.lock().await;
        if realms
            .get(&realm.path)
            .is_some_and(|r| Arc::ptr_eq(r, realm))
        {
            realms.remove(&realm.path);
        }
    }

    /// A session of `realm` has gone: once the realm has had none for `realm_idle_secs`, it
    /// leaves memory (storage has everything; the next BIND reopens it).
    fn session_gone(self: &Arc<Self>, realm: &Arc<Realm>) {
        if realm.sessions.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (server, realm) = (self.clone(), realm.clone());
        let idle = Duration::from_secs(self.limits().realm_idle_secs);
        tokio::spawn(async move {
            tokio::time::sleep(idle).await;
            // Sessions are counted under this lock, so none can be joining meanwhile.
            let mut realms = server.realms.lock().await;
            if realm.sessions.load(Ordering::Acquire) == 0
                && realms
                    .get(&realm.path)
                    .is_some_and(|r| Arc::ptr_eq(r, &realm))
            {
                realms.remove(&realm.path);
                debug!(path = ?realm.path, "realm closed: no sessions");
            }
        });
    }
}

/// The realm a session is bound to.
struct Bound {
    realm: Arc<Realm>,
    changed: watch::Receiver<()>,
}

/// What woke a connection up.
enum Wake {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Sent,
    WriterGone,
    Changed,
    Coalesced,
    Idle,
    BindTimeout,
    Stopping,
}

/// One connection's session and what it is bound to.
struct Conn {
    server: Arc<Server>,
    session: ServerSession,
    bound: Option<Bound>,
    /// Who the bound token authenticates, as the realm's permission checks know it.
    identity: Option<Identity>,
    /// An empty realm to poll the session with while none is bound (or the bound one broke):
    /// `poll_transmit` wants a realm even for the frames queued before BIND (PONG, ERROR).
    unbound: ServerRealm,
    /// This session's share of the server's bytes in transit.
    reassembling: u64,
    _admission: Admission,
}

impl Conn {
    async fn run(mut self, mut link: Link<TcpStream>, accepted: Instant) {
        let limits = *self.server.limits();
        let idle = Duration::from_secs(limits.idle_timeout_secs);
        let bind_deadline = accepted + Duration::from_secs(limits.bind_timeout_secs);
        let mut queue = VecDeque::new();
        let mut last_heard = Instant::now();
        // Set after the realm changed: the download waits until then (see COALESCE_PER_SESSION).
        let mut hold: Option<Instant> = None;
        let mut stopping = self.server.stopping.subscribe();
        loop {
            if queue.is_empty() && hold.is_none() {
                queue.extend(self.transmittable().await);
                if queue.is_empty() && self.session.is_closed() {
                    break;
                }
            }
            // A peer that does not read its replies is not read from either, until they drain.
            let reading = self.session.backlog() < limits.max_backlog;
            let wake = tokio::select! {
                frame = link.incoming.next(), if reading => Wake::Frame(frame),
                permit = link.outgoing.reserve(), if !queue.is_empty() => match permit {
                    Ok(permit) => {
                        permit.send(queue.pop_front().expect("a queued frame"));
                        Wake::Sent
                    }
                    Err(_) => Wake::WriterGone,
                },
                () = changed(&mut self.bound), if hold.is_none() => Wake::Changed,
                () = tokio::time::sleep_until(hold.unwrap_or(bind_deadline)), if hold.is_some() => {
                    Wake::Coalesced
                }
                () = tokio::time::sleep_until(last_heard + idle) => Wake::Idle,
                () = tokio::time::sleep_until(bind_deadline), if self.bound.is_none() => {
                    Wake::BindTimeout
                }
                _ = stopping.wait_for(|s| *s), if !self.session.is_closed() => Wake::Stopping,
            };
            if let Wake::Frame(Some(Ok(_))) = &wake {
                last_heard = Instant::now();
                hold = None;
            }
            match wake {
                // A feed consumer, not a sync client: its connection is the feed's from here.
                Wake::Frame(Some(Ok(Message::Binary(frame))))
                    if self.bound.is_none() && is_feed_request(&frame) =>
                {
                    return feed::serve(self, link, &frame).await;
                }
                Wake::Frame(Some(Ok(Message::Binary(frame)))) => self.frame(&frame).await,
                Wake::Frame(Some(Ok(Message::Text(_)))) => self.session.refuse(
                    ErrorCode::MalformedMessage,
                    "protocol messages travel in binary WebSocket messages",
                ),
                // WebSocket pings are answered by the transport.
                Wake::Frame(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Wake::Frame(Some(Ok(Message::Close(_))) | None) => break,
                Wake::Frame(Some(Err(e))) => {
                    debug!(error = %e, "receive failed");
                    break;
                }
                Wake::WriterGone => {
                    debug!("send failed");
                    break;
                }
                Wake::Idle => {
                    info!("silent for {}s; dropping the connection", idle.as_secs());
                    break;
                }
                Wake::BindTimeout => {
                    info!(
                        "not bound after {}s; dropping the connection",
                        limits.bind_timeout_secs
                    );
                    break;
                }
                // The frame being processed is done (frames are handled inside this loop), so
                // nothing is half-integrated; the client reconnects, here or elsewhere.
                Wake::Stopping => self.session.refuse(
                    ErrorCode::ConnectionClosed,
                    "the server is shutting down; reconnect",
                ),
                Wake::Changed => hold = Some(Instant::now() + self.coalesce()),
                Wake::Coalesced => hold = None,
                Wake::Sent => {}
            }
        }
        if let Some(bound) = &self.bound {
            if let Ok(mut state) = bound.realm.state.lock() {
                self.session.disconnect(&mut state.realm);
            }
            self.server.session_gone(&bound.realm);
        }
        self.server
            .in_transit
            .fetch_sub(self.reassembling, Ordering::AcqRel);
        link.close().await;
        debug!("closed");
    }

    /// How long to gather the realm's changes before building a download.
    fn coalesce(&self) -> Duration {
        let sessions = self
            .bound
            .as_ref()
            .map_or(0, |b| b.realm.sessions.load(Ordering::Relaxed));
        (COALESCE_PER_SESSION * u32::try_from(sessions).unwrap_or(u32::MAX)).min(MAX_COALESCE)
    }

    /// Takes one binary frame.
    async fn frame(&mut self, frame: &[u8]) {
        let Some(bound) = &self.bound else {
            match self.session.receive(frame) {
                Ok(Some(request)) => self.bind(request).await,
                Ok(None) => {}
                Err(e) => info!(error = ?e.to_string(), "frame refused"),
            }
            return;
        };
        let realm = bound.realm.clone();
        let limits = *self.server.limits();
        let needs = if realm.store.shared() {
            needs(frame, &limits.protocol())
        } else {
            Needs::Nothing
        };
        let turn = match needs {
            Needs::Turn => match realm.begin_turn().await {
                Ok(gate) => Some(gate),
                Err(e) => return self.broken(&realm, &e).await,
            },
            Needs::Newest => match realm.refresh(u64::MAX).await {
                Ok(()) => None,
                Err(e) => return self.broken(&realm, &e).await,
            },
            Needs::Nothing => None,
        };
        let grew = {
            let Some(mut state) = realm.lock() else {
                return self.unavailable();
            };
            if let Err(e) = self.session.receive(frame) {
                info!(error = ?e.to_string(), "frame refused");
            }
            self.count_in_transit(&limits);
            self.session.set_clock(now_ms(), limits.max_clock_skew_ms);
            // Who the peer writes as is known (and logged) before its uploads integrate.
            let before = self.identify(&mut state.realm);
            let events = self.session.process(&mut state.realm);
            for event in &events {
                match event {
                    ServerEvent::Closed(e) => info!(error = ?e.to_string(), "session closed"),
                    ServerEvent::Integrated { .. } => {
                        self.server.integrations.fetch_add(1, Ordering::Relaxed);
                    }
                    ServerEvent::Registered { .. } => {}
                }
            }
            self.count_in_transit(&limits);
            let after = self.identify(&mut state.realm);
            state.record(before);
            let grew = state.persist(&events);
            state.record(after);
            grew
        };
        if grew {
            realm.changed.send_replace(());
        }
        if let Some(gate) = turn {
            // Frames queued at the gate meanwhile share the turn; the commit ends it.
            drop(gate);
            if let Err(e) = realm.end_turn().await {
                return self.broken(&realm, &e).await;
            }
        }
        if grew {
            // The upload may have been what made the realm use permissions.
            self.ensure_users(&realm).await;
        }
    }

    /// Writes the `__User` objects the config's users lack in `realm` (see `users`), in a
    /// write turn of its own.
    async fn ensure_users(&mut self, realm: &Arc<Realm>) {
        let turn = match realm.store.shared() {
            true => match realm.begin_turn().await {
                Ok(gate) => Some(gate),
                Err(e) => return self.broken(realm, &e).await,
            },
            false => None,
        };
        let written = {
            let Some(mut state) = realm.lock() else {
                return self.unavailable();
            };
            let missing = users::missing(&state.realm, &self.server.config, &realm.path);
            if missing.is_empty() {
                Ok(false)
            } else {
                users::write(&mut state.realm, &missing).map(|records| {
                    info!(path = ?realm.path, users = missing.len(), "wrote the config's users");
                    records.into_iter().for_each(|r| state.record(Some(r)));
                    true
                })
            }
        };
        match written {
            Ok(true) => {
                realm.changed.send_replace(());
            }
            Ok(false) => {}
            Err(e) => return self.broken(realm, &e).await,
        }
        if let Some(gate) = turn {
            drop(gate);
            if let Err(e) = realm.end_turn().await {
                self.broken(realm, &e).await;
            }
        }
    }

    /// Tells the realm who this session's peer writes as, once the peer is known; returns the
    /// journal record to keep if that was news to the realm.
    fn identify(&self, realm: &mut ServerRealm) -> Option<Vec<u8>> {
        let (peer, identity) = (self.session.peer()?, self.identity.clone()?);
        realm
            .set_identity(peer, identity.clone())
            .then(|| disk::identified(peer, &identity))
    }

    /// Brings this session's share of the bytes in transit up to date; a session that takes
    /// the server past its budget is closed (104, retry), which frees its buffer.
    fn count_in_transit(&mut self, limits: &ServerLimits) {
        let now = self.session.reassembling() as u64;
        let before = std::mem::replace(&mut self.reassembling, now);
        let total = if now >= before {
            self.server
                .in_transit
                .fetch_add(now - before, Ordering::AcqRel)
                + (now - before)
        } else {
            self.server
                .in_transit
                .fetch_sub(before - now, Ordering::AcqRel)
                - (before - now)
        };
        if now > before && total > limits.changeset_budget {
            info!(
                in_transit = total,
                budget = limits.changeset_budget,
                "memory budget for changesets in transit spent; closing the session"
            );
            self.session.refuse_with(ErrorMessage {
                action: Action::Retry,
                ..ErrorMessage::new(
                    ErrorCode::LimitsExceeded,
                    "the server holds as many incomplete changesets as it can; try again later",
                )
            });
            self.count_in_transit(limits);
        }
    }

    /// Decides a BIND: token, path, permission; then binds the session to the realm. Paths
    /// are logged in their escaped (`Debug`) form: a client chooses them, and a newline in
    /// one must not start a line of its own in the log. Tokens are never logged.
    async fn bind(&mut self, request: BindRequest) {
        let config = &self.server.config;
        let Some(user) = config.user(&request.token) else {
            info!(path = ?request.path, "unknown token");
            return self
                .session
                .refuse(ErrorCode::BadAuthentication, "unknown token");
        };
        let path = match resolve_path(&request.path, &user) {
            Ok(path) => path,
            Err(why) => {
                info!(path = ?request.path, why = ?why, "illegal realm path");
                return self.session.refuse(ErrorCode::IllegalRealmPath, why);
            }
        };
        let Some(level) = config.level(&user, &path) else {
            info!(user = ?user.id(), path = ?path, "permission denied");
            return self.session.refuse(
                ErrorCode::PermissionDenied,
                format!("user {} may not access {path}", user.id()),
            );
        };
        let realm = match self.server.realm(&path).await {
            Ok(realm) => realm,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                error!(path = ?path, error = %e, "realm refused: its files are damaged");
                return self.session.refuse(
                    ErrorCode::ConnectionClosed,
                    "the realm is damaged and closed until an operator repairs it",
                );
            }
            Err(e) => {
                error!(path = ?path, error = %e, "cannot open realm");
                return self.unavailable();
            }
        };
        let access = Access {
            read: true,
            write: level >= Level::Write,
        };
        self.identity = Some(match &user {
            User::Admin => Identity::Admin,
            User::Named(id) => Identity::User(id.clone()),
        });
        self.session.accept(access, random_id());
        info!(user = ?user.id(), path = ?path, write = access.write, "bound");
        self.bound = Some(Bound {
            changed: realm.changed.subscribe(),
            realm: realm.clone(),
        });
        self.ensure_users(&realm).await;
    }

    /// Closes the session because its realm cannot serve it now; the client retries.
    fn unavailable(&mut self) {
        self.session.refuse(
            ErrorCode::ConnectionClosed,
            "the realm is unavailable; try again later",
        );
    }

    async fn broken(&mut self, realm: &Arc<Realm>, why: &io::Error) {
        realm.break_down(why);
        self.server.evict(realm).await;
        self.unavailable();
    }

    /// The next batch of frames to send, once every record they may depend on is committed:
    /// any of them may reveal an entry, salt or acknowledgement of the realm, and everything
    /// the realm held when they were built was buffered as records by then (in the critical
    /// section that produced them). So the frames are taken first and the commit waited for
    /// afterwards, to the log position at that moment: a fixed target, which later uploads to
    /// a busy realm cannot move out of reach.
    async fn transmittable(&mut self) -> Vec<Vec<u8>> {
        let Some(bound) = &self.bound else {
            return drain(&mut self.session, &self.unbound);
        };
        let realm = bound.realm.clone();
        let (frames, appended) = {
            let Some(state) = realm.lock() else {
                self.unavailable();
                return drain(&mut self.session, &self.unbound);
            };
            (drain(&mut self.session, &state.realm), state.end)
        };
        if frames.is_empty() {
            return frames;
        }
        match realm.sync_to(appended).await {
            Ok(()) => frames,
            Err(e) => {
                // Frames that may reveal what storage lost never leave.
                self.broken(&realm, &e).await;
                drain(&mut self.session, &self.unbound)
            }
        }
    }
}

/// Up to [`SEND_BATCH`] bytes of frames from the session.
fn drain<S: Store>(session: &mut ServerSession, realm: &ServerRealm<S>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut bytes = 0;
    while bytes < SEND_BATCH {
        let Some(frame) = session.poll_transmit(realm) else {
            break;
        };
        bytes += frame.len();
        frames.push(frame);
    }
    frames
}

/// Resolves when the bound realm changes; never while unbound.
async fn changed(bound: &mut Option<Bound>) {
    if let Some(b) = bound {
        if b.changed.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// A fresh admin token: 128 random bits in hex.
pub fn random_token() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}
