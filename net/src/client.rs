//! The reference client: a durable local realm ([`Local`]), connections to a server
//! ([`Live`]) and the loop that reconnects with backoff ([`run`]).
//!
//! The local realm is a journal under the client's directory, replayed at start to rebuild
//! the [`ClientSession`]:
//! - a header with the peer id, drawn at random when the directory is created;
//! - Identity: the salt and realm file identifier the server issued (and the realm path they
//!   belong to), synced before anything else is sent, since without the salt the client file
//!   could never bind again;
//! - Write: a local transaction as its timestamp and ops JSON, synced before `apply` returns.
//!   Replaying the same ops at the same timestamp on the same state reproduces the same
//!   changeset, so the ops are all that needs keeping;
//! - Download: history entries integrated (their changesets in the binary encoding), with the
//!   download cursor;
//! - Ack: the server acknowledged local changesets up to a client version;
//! - Latest: the latest server version heard of.
//!
//! - Snapshot: the whole client (`Client::save`), after it started from the server's state or
//!   was reset, and as the checkpoint every open leaves (see below).
//!
//! Records replay in the order they happened, which is what reproduces the state: a write
//! replays on the downloads integrated before it. Downloads, acks and latest versions are not
//! synced one by one: losing the tail of them in a power failure only means downloading again
//! or re-uploading changesets the server will recognise, and any later Write's sync covers them.
//!
//! Opening a local realm whose journal holds more than a checkpoint replaces it, atomically,
//! with a checkpoint: the header, the identity, the latest version heard of and a snapshot of the
//! client. So a client starts in time proportional to its state, not to its history.
//!
//! When the server says the local realm must be reset ([`Failure::Reset`]), [`run`] resets it
//! with the local realm's [`ResetMode`] (recover by default) on the next connection and logs
//! what was recovered, reverted and deferred.

use super::journal::{invalid, Journal, Put, Take};
use super::{lock_dir, now_ms, random_id, random_u64, ws_config, Link, CLIENT_READ_BUFFER};
use futures_util::StreamExt;
use objsync::json::{canonical, state_json};
use objsync::json::{parse_ops, WriteOp};
use objsync::session::{ClientConfig, ClientError, ClientEvent, ClientSession, Identity};
use objsync::sync::{
    Client, Cursor, Download, DownloadEntry, ResetCause, ResetMode, ResetReport, UploadAck,
};
use objsync::wire;
use objsync::wire::{Action, ErrorMessage, FileIdent, Limits};
use objsync::{ClientVersion, Fingerprint, PeerId, ServerVersion};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// Journal record tags of a local realm.
const HEADER: u8 = 0;
const IDENTITY: u8 = 1;
const WRITE: u8 = 2;
const DOWNLOAD: u8 = 3;
const ACK: u8 = 4;
const LATEST: u8 = 5;
/// The whole client (`Client::save`), after it started from the server's state: what the
/// records before it cannot rebuild.
const SNAPSHOT: u8 = 6;

/// A checkpoint's records: the header, the identity, the latest version and the snapshot.
const CHECKPOINT_RECORDS: usize = 4;

/// What a local realm journal's header record says it is.
const CLIENT_KIND: &[u8] = b"objsync client";

/// How long to wait for the TCP connection and the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a connected client PINGs (the server drops connections silent for a minute).
const PING_EVERY: Duration = Duration::from_secs(10);

/// A server not heard from for this long is taken for gone (a half-open connection).
const DEAD_AFTER: Duration = Duration::from_secs(35);

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/// Why a connection attempt, or the whole run, ended.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The server could not be reached, or the connection dropped.
    Connection(String),
    /// The server ended the session with an ERROR.
    Server(ErrorMessage),
    /// The server broke the protocol.
    Protocol(String),
    /// A local failure: the journal, or a download that does not integrate.
    Local(String),
    /// The local realm cannot sync with the server's as it is: it must be reset.
    Reset {
        /// Why.
        cause: ResetCause,
        /// The error that said so.
        error: String,
    },
    /// Retries exhausted.
    GaveUp {
        /// Connection attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Failure>,
    },
}

impl Failure {
    /// What to do about it: reconnect after a backoff, or stop.
    pub fn action(&self) -> Action {
        match self {
            Failure::Connection(_) | Failure::Protocol(_) => Action::Retry,
            Failure::Server(e) => e.action,
            Failure::Reset { .. } => Action::Reset,
            Failure::Local(_) | Failure::GaveUp { .. } => Action::Fatal,
        }
    }

    fn local(e: impl fmt::Display) -> Failure {
        Failure::Local(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connection(e) => write!(f, "connection failed: {e}"),
            Failure::Server(e) => {
                write!(f, "the server refused: {e}")?;
                if e.action == Action::Reset {
                    write!(
                        f,
                        " (this local realm cannot sync with the server's any more)"
                    )?;
                }
                Ok(())
            }
            Failure::Protocol(e) => write!(f, "protocol violation by the server: {e}"),
            Failure::Local(e) => write!(f, "local realm: {e}"),
            Failure::Reset { cause, error } => {
                write!(f, "the local realm must be reset ({cause}): {error}")
            }
            Failure::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last: {last}")
            }
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Server(e) => Failure::Server(e),
            ClientError::Protocol(e) => Failure::Protocol(e),
            ClientError::Sync(e) => Failure::Local(format!("integrating a download: {e}")),
            other if other.action() == Action::Retry => Failure::Protocol(other.to_string()),
            other => Failure::Local(other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Op files
// ---------------------------------------------------------------------------------------------

/// Runs `ops` in one transaction of `client` at `timestamp`: all of them, or (on the first
/// error) none.
fn write_ops(
    client: &mut Client,
    timestamp: u64,
    ops: &[WriteOp],
) -> Result<Option<ClientVersion>, objsync::Error> {
    let ((), version) = client.write(timestamp, |tx| ops.iter().try_for_each(|op| op.apply(tx)))?;
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// The local realm
// ---------------------------------------------------------------------------------------------

/// A client's realm: its session and, unless it lives in memory only, its journal.
pub struct Local {
    /// The protocol session around the client.
    pub session: ClientSession,
    /// The realm path the session binds to (as given, `/~/` unresolved).
    path: String,
    journal: Option<Journal>,
    /// Held while the directory is ours.
    _lock: Option<File>,
    /// The identity persisted, and the realm path it belongs to.
    identity: Option<(Identity, String)>,
    /// The latest server version persisted.
    latest: ServerVersion,
    /// Events that moved the realm on (an acknowledgement, a download, the state): whether a
    /// connection got anywhere. Being bound is not enough: a server that binds and then refuses
    /// every attempt with a retry error would otherwise be retried at once, for ever.
    progressed: u64,
    /// How [`run`] resets the local realm when the server says it must be; `None`: it stops
    /// with the error instead.
    pub reset_mode: Option<ResetMode>,
    /// The cause of a reset [`run`] began and the session has not carried out yet.
    resetting: Option<ResetCause>,
}

/// What replaying a local journal rebuilds.
#[derive(Default)]
struct Replayed {
    /// Records replayed.
    records: usize,
    client: Option<Client>,
    identity: Option<(Identity, String)>,
    latest: ServerVersion,
}

impl Replayed {
    fn record(&mut self, rec: &[u8]) -> io::Result<()> {
        self.records += 1;
        let mut t = Take(rec);
        let tag = t.tag()?;
        if tag == HEADER {
            if self.client.is_some() || t.bytes()? != CLIENT_KIND {
                return Err(invalid("not a local realm journal"));
            }
            self.client = Some(Client::new(PeerId(t.u64()?)));
            return t.end();
        }
        let client = self.client.as_mut().ok_or_else(|| invalid("no header"))?;
        match tag {
            IDENTITY => {
                let file = FileIdent {
                    peer: PeerId(t.u64()?),
                    salt: t.u64()?,
                };
                let server_file = t.u64()?;
                let path = t.text()?.to_string();
                self.identity = Some((Identity { file, server_file }, path));
            }
            WRITE => {
                let timestamp = t.u64()?;
                let ops = parse_ops(t.text()?).map_err(|e| invalid(e.to_string()))?;
                match write_ops(client, timestamp, &ops) {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(invalid("a replayed write wrote nothing")),
                    Err(e) => return Err(invalid(format!("replaying a write: {e}"))),
                }
            }
            DOWNLOAD => {
                let cursor = Cursor {
                    server: ServerVersion(t.u64()?),
                    own: ClientVersion(t.u64()?),
                    fingerprint: Fingerprint(t.u64()?),
                };
                let latest = ServerVersion(t.u64()?);
                let integrated = ClientVersion(t.u64()?);
                let n = t.u64()?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    entries.push(DownloadEntry {
                        server_version: ServerVersion(t.u64()?),
                        last_own: ClientVersion(t.u64()?),
                        fingerprint: Fingerprint(t.u64()?),
                        changeset: wire::decode(t.bytes()?).map_err(|e| invalid(e.to_string()))?,
                    });
                }
                // Checked when it arrived; a replay integrates what was integrated.
                let download = Download {
                    entries,
                    cursor,
                    own_signature: None,
                    latest,
                    integrated,
                };
                client
                    .integrate(download)
                    .map_err(|e| invalid(format!("replaying a download: {e}")))?;
            }
            ACK => client.acknowledge(UploadAck {
                integrated: ClientVersion(t.u64()?),
            }),
            LATEST => self.latest = self.latest.max(ServerVersion(t.u64()?)),
            // The whole client: after a reset as a new identity, under another peer id.
            SNAPSHOT => *client = Client::load(t.bytes()?).map_err(|e| invalid(e.to_string()))?,
            other => return Err(invalid(format!("unknown record tag {other}"))),
        }
        t.end()
    }
}

impl Local {
    /// Opens (or creates) the local realm in `dir`, for syncing as `config` says. A directory
    /// whose identity belongs to another realm path is refused: its history cannot continue
    /// there. An empty `config.path` (the offline commands) skips that check.
    pub fn open(dir: &Path, config: ClientConfig) -> Result<Local, String> {
        let lock = lock_dir(dir).map_err(|e| e.to_string())?;
        let file = dir.join("realm.log");
        let mut replayed = Replayed::default();
        let journal = if file.exists() {
            let opened = Journal::open(&file, |rec| replayed.record(rec))
                .map_err(|e| format!("cannot open the local realm: {e}"))?;
            if opened.dropped > 0 {
                tracing::warn!(
                    dropped = opened.dropped,
                    "cut a torn tail off the local realm's journal"
                );
            }
            opened.journal
        } else {
            let peer = random_id();
            let header = Put::tag(HEADER).bytes(CLIENT_KIND).u64(peer);
            let journal = Journal::create(&file, &header.0)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            replayed.client = Some(Client::new(PeerId(peer)));
            journal
        };
        if let Some((_, path)) = &replayed.identity {
            if !config.path.is_empty() && *path != config.path {
                return Err(format!(
                    "{} holds realm {path}, not {}; use another --local directory",
                    dir.display(),
                    config.path
                ));
            }
        }
        let client = replayed.client.expect("a journal has a header");
        let records = replayed.records;
        let mut local = Local::build(client, config, replayed.identity, Some(journal));
        local._lock = Some(lock);
        local.session.set_latest(replayed.latest);
        local.latest = replayed.latest;
        if records > CHECKPOINT_RECORDS {
            local
                .checkpoint(&file)
                .map_err(|e| format!("cannot checkpoint {}: {e}", file.display()))?;
        }
        Ok(local)
    }

    /// Replaces the journal with a checkpoint of everything it holds (see the module
    /// documentation), atomically.
    fn checkpoint(&mut self, file: &Path) -> io::Result<()> {
        let client = self.session.client();
        let header = Put::tag(HEADER).bytes(CLIENT_KIND).u64(client.peer().0).0;
        let mut records = vec![header];
        if let Some((identity, path)) = &self.identity {
            records.push(identity_record(identity, path));
        }
        records.push(Put::tag(LATEST).u64(self.latest.0).0);
        records.push(Put::tag(SNAPSHOT).bytes(&client.save()).0);
        self.journal = Some(Journal::rewrite(file, &records)?);
        Ok(())
    }

    /// A realm in memory only (the load generator's clients), with a random peer id.
    pub fn in_memory(config: ClientConfig) -> Local {
        Local::build(Client::new(PeerId(random_id())), config, None, None)
    }

    fn build(
        client: Client,
        config: ClientConfig,
        identity: Option<(Identity, String)>,
        journal: Option<Journal>,
    ) -> Local {
        Local {
            path: config.path.clone(),
            session: ClientSession::new(client, config, identity.as_ref().map(|i| i.0)),
            journal,
            _lock: None,
            identity,
            latest: ServerVersion(0),
            progressed: 0,
            reset_mode: Some(ResetMode::Recover),
            resetting: None,
        }
    }

    /// The state as the scenario format's canonical JSON.
    pub fn state(&self) -> String {
        let state = state_json(self.session.client().replica().store())
            .expect("a replica's state renders as JSON");
        canonical(&state)
    }

    /// Whether every local changeset is acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        let client = self.session.client();
        client.acknowledged() >= client.last_version()
    }

    /// Commits `ops` as one local transaction stamped by the hybrid logical clock, durably
    /// (the journal is synced before this returns). `None` if the ops changed nothing.
    pub fn apply(&mut self, ops_json: &str) -> Result<Option<ClientVersion>, String> {
        let ops = parse_ops(ops_json).map_err(|e| e.to_string())?;
        let client = self.session.client_mut();
        let timestamp = client.stamp(now_ms());
        let version = write_ops(client, timestamp, &ops).map_err(|e| e.to_string())?;
        if version.is_some() {
            // Kept as given: the replay parses the very same text.
            let record = Put::tag(WRITE).u64(timestamp).bytes(ops_json.as_bytes());
            self.append(&[record.0]).map_err(|e| e.to_string())?;
            self.sync().map_err(|e| e.to_string())?;
        }
        Ok(version)
    }

    /// Takes one frame from the server and persists what its events say must outlive the
    /// process, before the caller sends anything else.
    pub fn handle(&mut self, frame: &[u8]) -> Result<Vec<ClientEvent>, Failure> {
        let events = self.session.handle(frame).map_err(|e| {
            match (self.reset_mode, self.session.reset_cause(&e)) {
                (Some(_), Some(cause)) => Failure::Reset {
                    cause,
                    error: e.to_string(),
                },
                _ => Failure::from(e),
            }
        })?;
        let mut records = Vec::new();
        let mut sync = false;
        // An in-memory realm (the load generator's thousand clients) has no journal: its
        // records, a re-encoding of every downloaded changeset, would only be thrown away.
        let journaled = self.journal.is_some();
        for event in &events {
            match event {
                ClientEvent::Identified(identity) => {
                    let path = &self.path;
                    if self.identity.as_ref() != Some(&(*identity, path.clone())) {
                        records.push(identity_record(identity, path));
                        self.identity = Some((*identity, path.clone()));
                        sync = true;
                    }
                }
                ClientEvent::Integrated(download) => {
                    self.progressed += 1;
                    if journaled {
                        records.push(download_record(download));
                    }
                }
                ClientEvent::Acknowledged(v) => {
                    self.progressed += 1;
                    records.push(Put::tag(ACK).u64(v.0).0);
                }
                ClientEvent::StartedFromState(_) => {
                    self.progressed += 1;
                    if journaled {
                        records.push(Put::tag(SNAPSHOT).bytes(&self.session.client().save()).0);
                    }
                    sync = true;
                }
                ClientEvent::Reset(report) => {
                    self.progressed += 1;
                    self.resetting = None;
                    log_reset(report);
                    if journaled {
                        records.push(Put::tag(SNAPSHOT).bytes(&self.session.client().save()).0);
                    }
                    sync = true;
                }
                _ => {}
            }
        }
        if self.session.latest() > self.latest {
            self.latest = self.session.latest();
            records.push(Put::tag(LATEST).u64(self.latest.0).0);
        }
        self.append(&records).map_err(Failure::local)?;
        if sync {
            self.sync().map_err(Failure::local)?;
        }
        Ok(events)
    }

    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<()> {
        match &mut self.journal {
            Some(journal) => journal.append(records),
            None => Ok(()),
        }
    }

    /// Makes everything recorded durable.
    pub fn sync(&self) -> io::Result<()> {
        match &self.journal {
            Some(journal) => journal.sync(),
            None => Ok(()),
        }
    }
}

/// The journal record of the identity the server issued for the realm at `path`.
fn identity_record(identity: &Identity, path: &str) -> Vec<u8> {
    let FileIdent { peer, salt } = identity.file;
    (Put::tag(IDENTITY)
        .u64(peer.0)
        .u64(salt)
        .u64(identity.server_file))
    .bytes(path.as_bytes())
    .0
}

/// Logs what a reset did: the summary, then each reverted and deferred changeset.
fn log_reset(report: &ResetReport) {
    tracing::warn!("{report}");
    let ops = |cs: &objsync::Changeset| {
        let ops = cs.ops.iter().map(|op| {
            let obj = op
                .instr
                .object()
                .map(|o| format!(" {}[{}]", o.ty, o.key.render()));
            format!("{}{}", op.instr.kind().name(), obj.unwrap_or_default())
        });
        ops.collect::<Vec<_>>().join(", ")
    };
    for cs in &report.reverted {
        tracing::warn!(timestamp = cs.timestamp, "reverted: {}", ops(cs));
    }
    for cs in &report.deferred {
        tracing::warn!(timestamp = cs.timestamp, "deferred: {}", ops(cs));
    }
}

/// The journal record of an integrated download.
fn download_record(d: &Download) -> Vec<u8> {
    let mut put = Put::tag(DOWNLOAD)
        .u64(d.cursor.server.0)
        .u64(d.cursor.own.0)
        .u64(d.cursor.fingerprint.0)
        .u64(d.latest.0)
        .u64(d.integrated.0)
        .u64(d.entries.len() as u64);
    for e in &d.entries {
        put = put
            .u64(e.server_version.0)
            .u64(e.last_own.0)
            .u64(e.fingerprint.0)
            .bytes(&wire::encode(&e.changeset));
    }
    put.0
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// A server address and realm path, from `realm://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmUrl {
    /// `host:port`.
    pub authority: String,
    /// The realm path, e.g. `/alice/notes` or `/~/notes`.
    pub path: String,
}

impl RealmUrl {
    /// Parses `realm://host:port/path`.
    pub fn parse(url: &str) -> Result<RealmUrl, String> {
        if url.starts_with("realms://") {
            return Err("TLS (realms://) is not supported; use realm://".into());
        }
        let rest = url
            .strip_prefix("realm://")
            .ok_or_else(|| format!("{url}: expected realm://host:port/path"))?;
        match rest.split_once('/') {
            Some((authority, path)) if !authority.is_empty() && !path.is_empty() => Ok(RealmUrl {
                authority: authority.to_string(),
                path: format!("/{path}"),
            }),
            _ => Err(format!("{url}: expected realm://host:port/path")),
        }
    }
}

/// What an event handler tells the connection loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The work is done: return.
    Done,
}

/// One open connection of a [`Local`]'s session.
pub struct Live {
    link: Link<MaybeTlsStream<TcpStream>>,
    /// A frame taken from the session and not yet handed to the writer; kept across
    /// [`pump`](Self::pump) calls since the session counts it as sent.
    pending: Option<Vec<u8>>,
    last_heard: Instant,
}

impl Live {
    /// Connects and starts the session (BIND and IDENT are queued).
    pub async fn connect(
        local: &mut Local,
        url: &RealmUrl,
        limits: &Limits,
    ) -> Result<Live, Failure> {
        let request = format!("ws://{}/realm-sync", url.authority);
        let connect = tokio_tungstenite::connect_async_with_config(
            request,
            Some(ws_config(limits, CLIENT_READ_BUFFER)),
            true,
        );
        let ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return Err(Failure::Connection(format!("{}: {e}", url.authority))),
            Err(_) => return Err(Failure::Connection(format!("{}: timed out", url.authority))),
        };
        local.session.connect();
        Ok(Live {
            link: Link::new(ws),
            pending: None,
            last_heard: Instant::now(),
        })
    }

    /// Moves frames both ways, handing every event to `on_event` (after it is persisted),
    /// until `on_event` says [`Flow::Done`] or the connection fails. PINGs keep the connection
    /// alive and detect a server that vanished.
    pub async fn pump<F>(&mut self, local: &mut Local, mut on_event: F) -> Result<(), Failure>
    where
        F: FnMut(&mut Local, &ClientEvent) -> Result<Flow, Failure>,
    {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        // Nothing was read while the caller was not pumping: the silence before counts not.
        self.last_heard = Instant::now();
        loop {
            if self.pending.is_none() {
                self.pending = local.session.poll_transmit();
            }
            tokio::select! {
                message = self.link.incoming.next() => {
                    let frame = match message {
                        Some(Ok(Message::Binary(frame))) => frame,
                        Some(Ok(Message::Text(_))) => {
                            return Err(Failure::Protocol("a text WebSocket message".into()))
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            return Err(Failure::Connection("closed by the server".into()))
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(Failure::Connection(e.to_string())),
                    };
                    self.last_heard = Instant::now();
                    for event in local.handle(&frame)? {
                        if on_event(local, &event)? == Flow::Done {
                            return Ok(());
                        }
                    }
                    if !local.session.is_connected() {
                        // A reset gave the client a new identity: it binds again under it.
                        return Err(Failure::Connection("reconnecting under a new identity".into()));
                    }
                }
                permit = self.link.outgoing.reserve(), if self.pending.is_some() => {
                    let permit = permit
                        .map_err(|_| Failure::Connection("the connection dropped".into()))?;
                    permit.send(self.pending.take().expect("a pending frame"));
                }
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > DEAD_AFTER {
                        return Err(Failure::Connection("the server stopped answering".into()));
                    }
                    local.session.ping(now_ms());
                }
            }
        }
    }

    /// Sends what is queued and closes the connection.
    pub async fn close(self, local: &mut Local) {
        self.link.close().await;
        local.session.disconnected();
    }
}

/// Exponential backoff with jitter: 100 ms doubling up to 3.2 s, each delay drawn from
/// 75 %..125 % of the nominal one so that clients dropped together do not return together.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    failures: u32,
    limit: Option<u32>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_millis(3200);

    /// A backoff allowing `limit` consecutive failures (`None`: unbounded).
    pub fn new(limit: Option<u32>) -> Backoff {
        Backoff {
            next: Backoff::FIRST,
            failures: 0,
            limit,
        }
    }

    /// After a failure: how long to wait, or `None` once the failures are exhausted.
    pub fn fail(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.limit.is_some_and(|l| self.failures > l) {
            return None;
        }
        let nominal = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        let jitter = 750 + random_u64() % 501;
        Some(nominal * u32::try_from(jitter).expect("small") / 1000)
    }

    /// After progress: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
        self.failures = 0;
    }

    /// Connection attempts so far in this run of failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Connects, and reconnects after failures the server or the transport call transient,
/// until `on_event` says [`Flow::Done`] or a failure is final. `retries` bounds consecutive
/// failed attempts (`None`: never give up); an attempt that made progress (an
/// acknowledgement, a download) resets the count. `on_retry` hears of each failure and the delay before the next attempt.
pub async fn run<F>(
    local: &mut Local,
    url: &RealmUrl,
    retries: Option<u32>,
    mut on_event: F,
    mut on_retry: impl FnMut(&Failure, Duration),
) -> Result<(), Failure>
where
    F: FnMut(&mut Local, &ClientEvent) -> Result<Flow, Failure>,
{
    let limits = Limits::default();
    let mut backoff = Backoff::new(retries);
    loop {
        let progressed = local.progressed;
        let failure = match Live::connect(local, url, &limits).await {
            Ok(mut live) => {
                let result = live.pump(local, &mut on_event).await;
                live.close(local).await;
                match result {
                    Ok(()) => return Ok(()),
                    Err(failure) => failure,
                }
            }
            Err(failure) => failure,
        };
        if let (Failure::Reset { cause, .. }, Some(mode)) = (&failure, local.reset_mode) {
            // A reset refused before it could be carried out (the recovery never came) is not
            // tried again for the same cause; one that was carried out is refused by the
            // session if the same cause comes back before a sync. Neither loops.
            if local.resetting == Some(*cause) {
                return Err(failure);
            }
            local.resetting = Some(*cause);
            match cause {
                // Another installation writes under this identity: this one takes a new one.
                ResetCause::ChangesetMismatch { .. } => {
                    local
                        .session
                        .begin_reset_as(*cause, mode, PeerId(random_id()))
                }
                _ => local.session.begin_reset(*cause, mode),
            }
            on_retry(&failure, Duration::ZERO);
            continue;
        }
        if failure.action() != Action::Retry {
            return Err(failure);
        }
        if local.progressed > progressed {
            backoff.reset();
        }
        let Some(delay) = backoff.fail() else {
            return Err(Failure::GaveUp {
                attempts: backoff.failures(),
                last: Box::new(failure),
            });
        };
        on_retry(&failure, delay);
        tokio::time::sleep(delay).await;
    }
}
