//! The reference sync server: realms on disk, tokens and permissions, and one task per
//! WebSocket connection driving a [`ServerSession`] over the realm its BIND names.
//!
//! Each realm is a [`ServerRealm`] in memory, rebuilt at first use from its snapshot (a
//! `ServerRealm::save`, if it has one) and its journal after it (a Registered record per client
//! identity issued, an Integrated record per changeset as uploaded; integration is
//! deterministic, so replaying them reproduces the history exactly, and one already in the
//! snapshot is skipped as a duplicate). Opening then writes a new snapshot, trimming the
//! history first if the server keeps only so many entries, and cuts the journal behind it, so
//! a realm opens in time proportional to its state plus what changed since it was last opened.
//! The sessions of a realm share it behind a mutex; a watch channel wakes them when the history
//! grows so they send the new entries.
//!
//! Durability ("nothing acknowledged is lost"): every event a session reports is appended to
//! the journal under the realm's lock, in the same critical section that changed the realm, and
//! no session transmits anything while the journal holds bytes not yet synced. So every frame
//! that reveals an entry, an acknowledgement or a salt leaves only once the records behind it
//! are on disk, whichever session sends it. Syncing happens outside the lock and is shared
//! (group commit): sessions that appended meanwhile wait for one `fdatasync` that covers them
//! all, so concurrent uploads cost one sync per batch rather than one each.
//!
//! A journal that cannot be written or synced marks its realm broken: its sessions are closed
//! with ConnectionClosed (retry), and the realm is dropped from memory so the next BIND
//! reopens it from disk, where the failed tail is cut off; its clients re-upload whatever was
//! not acknowledged.

use super::disk::{self, checkpoint, create_realm};
pub use super::disk::{open_realm, realm_file, snapshot_file};
use super::journal::Journal;
use super::{now_ms, random_id, random_u64, ws_config, Link};
use futures_util::StreamExt;
use objsync::permissions::Identity;
use objsync::session::{Access, BindRequest, ServerEvent, ServerRealm, ServerSession};
use objsync::wire::{Action, ErrorCode, ErrorMessage, Limits};
use objsync::Store;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::{Choice, ConstantTimeEq};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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

/// The user id the admin token acts as, for `/~/` paths.
pub const ADMIN_USER: &str = "__admin";

/// The longest path segment: segments become file names.
const MAX_SEGMENT: usize = 200;

/// The longest realm path: it becomes a file path of about as many bytes under the data
/// directory, which must stay well inside the system's limit (4,096 on Linux).
const MAX_PATH: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Configuration: tokens, users, permissions
// ---------------------------------------------------------------------------------------------

/// Who a token authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum User {
    /// The admin token: every right on every realm.
    Admin,
    /// An ordinary user, by id.
    Named(String),
}

impl User {
    /// The id `/~/` resolves to.
    pub fn id(&self) -> &str {
        match self {
            User::Admin => ADMIN_USER,
            User::Named(id) => id,
        }
    }
}

/// A realm-level permission; each includes the ones before it (as the source documents'
/// access levels do: write implies read, manage implies write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// May bind and download.
    Read,
    /// May also upload.
    Write,
    /// May also manage the realm's permissions. This server has no API to change them at run
    /// time (they come from the config file), so it acts as write.
    Manage,
}

impl Level {
    fn parse(s: &str) -> Result<Level, String> {
        match s {
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            "manage" => Ok(Level::Manage),
            other => Err(format!(
                "unknown permission \"{other}\" (read, write or manage)"
            )),
        }
    }
}

/// The server's configuration: tokens, permission grants and resource limits. Its `Debug`
/// form shows no token.
#[derive(Default, Clone)]
pub struct Config {
    admin_token: Option<String>,
    /// (token, user id), scanned whole at every look-up so that the time a look-up takes
    /// does not tell how much of a guessed token is right.
    users: Vec<(String, String)>,
    /// Realm path → user id (or `*`, any authenticated user) → level.
    grants: HashMap<String, HashMap<String, Level>>,
    /// What the server spends on connections.
    pub limits: ServerLimits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("admin", &self.admin_token.is_some())
            .field(
                "users",
                &self.users.iter().map(|(_, id)| id).collect::<Vec<_>>(),
            )
            .field("grants", &self.grants)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The server's resource limits: the config file's `"limits"` object, every field optional.
/// A peer that does not follow the protocol, or follows it greedily, can make the server hold
/// at most these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// The largest frame accepted (bytes).
    pub max_message: usize,
    /// The largest changeset one connection may upload, and so reassemble (bytes): beyond it
    /// 104 (fatal) at its first chunk.
    pub max_changeset: u64,
    /// Bytes of incomplete changesets all connections together may hold: a connection that
    /// would pass it gets 104 with action retry.
    pub changeset_budget: u64,
    /// Bytes of replies (PONGs and the like) a connection may leave unread before the server
    /// stops reading from it until they drain.
    pub max_backlog: usize,
    /// Seconds a connection has from its TCP accept to a BIND the server accepts; no frame
    /// extends it.
    pub bind_timeout_secs: u64,
    /// Seconds a connection may stay silent before the server drops it.
    pub idle_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// How far ahead of the server's clock an uploaded changeset may be stamped
    /// (milliseconds); later ones get 232 (retry).
    pub max_clock_skew_ms: u64,
    /// Seconds a realm stays in memory once its last session has gone.
    pub realm_idle_secs: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_message: Limits::default().max_message,
            max_changeset: 64 << 20,
            changeset_budget: 512 << 20,
            max_backlog: 256 << 10,
            bind_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
            max_connections_per_address: 1024,
            max_clock_skew_ms: objsync::sync::DEFAULT_MAX_SKEW,
            realm_idle_secs: 60,
        }
    }
}

impl ServerLimits {
    /// The protocol limits of each session.
    pub fn protocol(&self) -> Limits {
        Limits {
            max_message: self.max_message,
            max_changeset: self.max_changeset,
            ..Limits::default()
        }
    }
}

/// The config file's JSON form. Unknown keys are ignored, so one file can carry other
/// settings; unknown keys inside `"limits"` are refused, since a misspelt limit would
/// silently be the default.
#[derive(Deserialize)]
struct ConfigFile {
    admin_token: Option<String>,
    #[serde(default)]
    users: HashMap<String, String>,
    #[serde(default)]
    permissions: HashMap<String, HashMap<String, Vec<String>>>,
    #[serde(default)]
    limits: ServerLimits,
}

impl Config {
    /// Only an admin token, no users (the server's default without `--config`).
    pub fn admin_only(token: String) -> Config {
        Config {
            admin_token: Some(token),
            ..Config::default()
        }
    }

    /// Reads a config file: `{"admin_token": "...", "users": {"token": "user id"},
    /// "permissions": {"/path": {"user id or *": ["read" | "write" | "manage"]}},
    /// "limits": {...}}`.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.admin_token.as_deref() == Some("") || file.users.contains_key("") {
            return Err("tokens must not be empty".into());
        }
        if file
            .admin_token
            .as_ref()
            .is_some_and(|t| file.users.contains_key(t))
        {
            return Err("the admin token is also a user's token".into());
        }
        let mut grants = HashMap::new();
        for (path, users) in file.permissions {
            check_path(&path).map_err(|e| format!("permissions: path {path}: {e}"))?;
            let mut levels = HashMap::new();
            for (user, list) in users {
                let level = list
                    .iter()
                    .map(|s| Level::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("permissions of {path} for {user}: {e}"))?
                    .into_iter()
                    .max();
                if let Some(level) = level {
                    levels.insert(user, level);
                }
            }
            grants.insert(path, levels);
        }
        Ok(Config {
            admin_token: file.admin_token,
            users: file.users.into_iter().collect(),
            grants,
            limits: file.limits,
        })
    }

    /// Who `token` authenticates, if anyone. Every configured token is compared, each in
    /// constant time (`subtle`), whatever matched: the time taken tells nothing of which
    /// token, or how much of one, a guess got right (only, at most, whether its length is
    /// some token's).
    pub fn user(&self, token: &str) -> Option<User> {
        let token = token.as_bytes();
        let mut found = None;
        let admin = self
            .admin_token
            .as_ref()
            .map_or(Choice::from(0), |t| t.as_bytes().ct_eq(token));
        for (candidate, id) in &self.users {
            if bool::from(candidate.as_bytes().ct_eq(token)) {
                found = Some(id);
            }
        }
        if bool::from(admin) {
            return Some(User::Admin);
        }
        found.map(|id| User::Named(id.clone()))
    }

    /// What `user` may do on the realm at `path` (resolved): the admin everything, a user
    /// everything under `/<own id>/`, and otherwise what the config grants to the user or
    /// to `*`.
    pub fn level(&self, user: &User, path: &str) -> Option<Level> {
        let id = match user {
            User::Admin => return Some(Level::Manage),
            User::Named(id) => id,
        };
        if path[1..].split('/').next() == Some(id.as_str()) {
            return Some(Level::Manage);
        }
        let grants = self.grants.get(path)?;
        grants.get(id).max(grants.get("*")).copied()
    }
}

/// Resolves `/~/...` to the user's own `/<id>/...` and checks the result.
pub fn resolve_path(path: &str, user: &User) -> Result<String, String> {
    let resolved = if path == "/~" {
        format!("/{}", user.id())
    } else if let Some(rest) = path.strip_prefix("/~/") {
        format!("/{}/{rest}", user.id())
    } else {
        path.to_string()
    };
    check_path(&resolved)?;
    Ok(resolved)
}

/// The source documents' server path rules: `/seg[/seg...]`, segments of ASCII letters,
/// digits, `_`, `-` and `.`, not starting with `.` and not ending with `.realm`,
/// `.realm.lock` or `.realm.management`. `__partial` (partial sync) is not supported, a
/// segment is at most 200 bytes since it becomes a file name, and the whole path at most
/// 1,024 bytes since it becomes a file path.
pub fn check_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("a realm path starts with /".into());
    };
    if path.len() > MAX_PATH {
        return Err(format!("a path is longer than {MAX_PATH} bytes"));
    }
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("empty path segment".into());
        }
        if seg.len() > MAX_SEGMENT {
            return Err(format!("a segment is longer than {MAX_SEGMENT} bytes"));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
        {
            return Err(format!("segment \"{seg}\" contains {c:?}"));
        }
        if seg.starts_with('.') {
            return Err(format!("segment \"{seg}\" starts with ."));
        }
        if [".realm", ".realm.lock", ".realm.management"]
            .iter()
            .any(|s| seg.ends_with(s))
        {
            return Err(format!("segment \"{seg}\" ends with a reserved suffix"));
        }
        if seg == "__partial" {
            return Err("partial sync is not supported".into());
        }
    }
    Ok(())
}

/// What a realm's lock guards.
struct RealmState {
    realm: ServerRealm,
    journal: Journal,
    /// The journal failed: the in-memory realm may be ahead of the disk and must not be used.
    broken: bool,
}

impl RealmState {
    /// Appends the records of `events`; returns whether the history grew.
    /// Appends one record, if there is one.
    fn record(&mut self, record: Option<Vec<u8>>) -> io::Result<()> {
        let Some(record) = record else {
            return Ok(());
        };
        let result = self.journal.append(&[record]);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn persist(&mut self, events: &[ServerEvent]) -> io::Result<bool> {
        let (records, grew) = disk::records(events);
        let result = self.journal.append(&records);
        if result.is_err() {
            self.broken = true;
        }
        result.map(|()| grew)
    }
}

/// One realm, shared by its sessions.
struct Realm {
    path: String,
    state: Mutex<RealmState>,
    /// Journal length known to be on disk; every waiter sees it move at once.
    synced: watch::Sender<u64>,
    /// Taken by the one session syncing; the others wait for `synced` to move, and usually
    /// find their bytes covered by that sync.
    syncing: tokio::sync::Mutex<()>,
    /// A second handle on the journal, to sync without holding the realm's lock.
    sync_file: Arc<File>,
    /// Bumped when the history grows or the realm breaks.
    changed: watch::Sender<()>,
    /// Sessions bound to it (counted under the server's map of realms).
    sessions: AtomicUsize,
}

impl Realm {
    fn new(path: String, realm: ServerRealm, journal: Journal) -> io::Result<Realm> {
        let len = journal.end();
        Ok(Realm {
            path,
            sync_file: Arc::new(journal.sync_handle()?),
            state: Mutex::new(RealmState {
                realm,
                journal,
                broken: false,
            }),
            // Opening and creating leave the journal synced.
            synced: watch::channel(len).0,
            syncing: tokio::sync::Mutex::new(()),
            changed: watch::channel(()).0,
            sessions: AtomicUsize::new(0),
        })
    }

    /// The state, unless the realm is broken (or a panic poisoned the lock, which leaves the
    /// state suspect just the same).
    fn lock(&self) -> Option<MutexGuard<'_, RealmState>> {
        self.state.lock().ok().filter(|s| !s.broken)
    }

    /// Waits until the journal is on disk up to `target` bytes. One session at a time syncs
    /// (everything appended by then, not just its own target); the others wait for the synced
    /// length to move and sync themselves only if it stops short of their target, so a busy
    /// realm pays one `fdatasync` per batch of uploads and every waiter wakes at once.
    async fn sync_to(&self, target: u64) -> io::Result<()> {
        let mut synced = self.synced.subscribe();
        loop {
            if *synced.borrow_and_update() >= target {
                return Ok(());
            }
            let Ok(gate) = self.syncing.try_lock() else {
                if synced.changed().await.is_err() {
                    return Err(io::Error::other("the realm is gone"));
                }
                continue;
            };
            let upto = match self.lock() {
                Some(state) => state.journal.end(),
                None => return Err(io::Error::other("the realm's journal failed")),
            };
            let file = self.sync_file.clone();
            let result = tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
            // The gate opens before the news goes out, so a waiter it does not cover can take
            // it at once.
            drop(gate);
            result?;
            self.synced.send_modify(|s| *s = (*s).max(upto));
        }
    }

    /// Marks the realm broken and wakes its sessions so they close.
    fn break_down(&self, why: &io::Error) {
        error!(path = ?self.path, error = %why, "realm journal failed; closing its sessions");
        match self.state.lock() {
            Ok(mut s) => s.broken = true,
            Err(poisoned) => poisoned.into_inner().broken = true,
        }
        self.changed.send_replace(());
        // Sessions waiting for a sync look again, and find the realm broken.
        self.synced.send_modify(|_| {});
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The server: its data directory, configuration and open realms.
pub struct Server {
    data: PathBuf,
    config: Config,
    /// Keep at most this many history entries (trimmed when a realm is opened).
    keep_history: Option<u64>,
    realms: tokio::sync::Mutex<HashMap<String, Arc<Realm>>>,
    /// Realms whose files are damaged, with why: refused until an operator repairs them
    /// (with the server stopped), so the files are not read again at every BIND.
    damaged: Mutex<HashMap<String, String>>,
    /// Connections open, in all and by address.
    admitted: Mutex<Admitted>,
    /// Bytes of incomplete changesets all sessions hold.
    in_transit: AtomicU64,
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
    /// A server keeping realms under `data`, with their whole histories.
    pub fn new(data: PathBuf, config: Config) -> Arc<Server> {
        Server::keeping(data, config, None)
    }

    /// A server keeping realms under `data` that keeps at most `keep_history` entries of each
    /// realm's history (trimmed whenever a realm is opened): clients further behind are told to
    /// reset (222), new ones start from the state.
    pub fn keeping(data: PathBuf, config: Config, keep_history: Option<u64>) -> Arc<Server> {
        Arc::new(Server {
            data,
            config,
            keep_history,
            realms: tokio::sync::Mutex::new(HashMap::new()),
            damaged: Mutex::default(),
            admitted: Mutex::default(),
            in_transit: AtomicU64::new(0),
        })
    }

    fn limits(&self) -> &ServerLimits {
        &self.config.limits
    }

    /// Accepts connections forever, one task each, within the connection caps.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
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
        let accept = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config(&limits)));
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
    /// one more session. A realm whose files are damaged stays refused.
    async fn realm(&self, path: &str) -> io::Result<Arc<Realm>> {
        let mut realms = self.realms.lock().await;
        if let Some(realm) = realms.get(path) {
            realm.sessions.fetch_add(1, Ordering::AcqRel);
            return Ok(realm.clone());
        }
        if let Some(why) = lock(&self.damaged).get(path) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        let file = realm_file(&self.data, path);
        let keep = self.keep_history;
        let owned = path.to_string();
        let opened = tokio::task::spawn_blocking(move || {
            let (realm, journal) = if file.exists() {
                let (mut realm, journal, dropped) = open_realm(&file)?;
                if dropped > 0 {
                    warn!(path = ?owned, dropped, "cut a torn tail off the realm's journal");
                }
                drop(journal);
                let journal = checkpoint(&file, &mut realm, keep)?;
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
            Realm::new(owned, realm, journal)
        })
        .await
        .map_err(io::Error::other)?;
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
        realms.insert(path.to_string(), realm.clone());
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
    /// leaves memory (its journal has everything; the next BIND reopens it).
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
    Idle,
    BindTimeout,
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
        loop {
            if queue.is_empty() {
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
                () = changed(&mut self.bound) => Wake::Changed,
                () = tokio::time::sleep_until(last_heard + idle) => Wake::Idle,
                () = tokio::time::sleep_until(bind_deadline), if self.bound.is_none() => {
                    Wake::BindTimeout
                }
            };
            if let Wake::Frame(Some(Ok(_))) = &wake {
                last_heard = Instant::now();
            }
            match wake {
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
                Wake::Sent | Wake::Changed => {}
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
        let persisted = {
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
                if let ServerEvent::Closed(e) = event {
                    info!(error = ?e.to_string(), "session closed");
                }
            }
            self.count_in_transit(&limits);
            let after = self.identify(&mut state.realm);
            state
                .record(before)
                .and_then(|()| state.persist(&events))
                .and_then(|grew| state.record(after).map(|()| grew))
        };
        match persisted {
            Ok(true) => {
                realm.changed.send_replace(());
            }
            Ok(false) => {}
            Err(e) => self.broken(&realm, &e).await,
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
            realm,
        });
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

    /// The next batch of frames to send, once every journal byte they may depend on is on
    /// disk: any of them may reveal an entry, salt or acknowledgement of the realm, and
    /// everything the realm held when they were built was appended to the journal by then
    /// (events are appended in the critical section that produced them). So the frames are
    /// taken first and the sync waited for afterwards, to the journal's length at that moment:
    /// a fixed target, which later uploads to a busy realm cannot move out of reach.
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
            (drain(&mut self.session, &state.realm), state.journal.end())
        };
        if frames.is_empty() {
            return frames;
        }
        match realm.sync_to(appended).await {
            Ok(()) => frames,
            Err(e) => {
                // Frames that may reveal what the disk lost never leave.
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
