//! PostgreSQL as [`Storage`]: any number of server processes over one database, any of them
//! serving any realm.
//!
//! Tables (created on first start, versioned in `objsync_server_schema`, migrated forward under an
//! advisory lock so processes starting together do not race): `objsync_server_realms` (one row per
//! realm: path, file identifier, log length, the latest snapshot and the log position it was
//! taken at) and `objsync_server_log` (the records after it, keyed by realm and position).
//!
//! Integration of a realm is serialized across processes by its row in `objsync_server_realms`: a
//! turn is a transaction that starts with `SELECT ... FOR UPDATE` on it, reads the records
//! other processes appended since this one's position (replayed before anything is
//! processed), and ends by inserting this process's records and moving `log_len` forward, in
//! one transaction, before any frame that depends on them is sent. The row lock is the
//! turn; the log position is its fencing token: the update only applies `WHERE log_len` is
//! still the position the process built on, so a process that lost its lock (its connection
//! dropped, the database restarted) can never append on top of a history it has not seen.
//! A process killed mid-turn leaves an open transaction that PostgreSQL aborts when its
//! connection goes, releasing the lock; an idle one is cut after
//! `idle_in_transaction_session_timeout`.
//!
//! Other processes learn of new records by `LISTEN objsync_server_log` (the commit notifies
//! `"<log_len> <path>"`), and, since a notification can be missed while the listening
//! connection is down, by polling every realm's `log_len` as a fallback.

use super::{replay, Grown, OpenedRealm, RealmStore, Records, Retention, Storage};
use crate::random_id;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use objsync::session::ServerRealm;
use std::io;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{info, warn};

/// The notification channel commits notify on.
const CHANNEL: &str = "objsync_server_log";

/// The advisory lock key schema migrations hold (any constant the application owns).
const MIGRATION_LOCK: i64 = 0x6f62_6a73_796e_6301;

/// Schema migrations, in order; the schema's version is how many have been applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE objsync_server_realms (
        id BIGSERIAL PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        file_ident BIGINT NOT NULL,
        log_len BIGINT NOT NULL DEFAULT 0,
        snapshot_at BIGINT NOT NULL DEFAULT 0,
        snapshot BYTEA
    );
    CREATE TABLE objsync_server_log (
        realm BIGINT NOT NULL REFERENCES objsync_server_realms (id),
        seq BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (realm, seq)
    );"];

/// Session settings of every connection: a process that stops mid-turn (stopped, not killed,
/// so its connection stays up) loses its lock after 10 s, and nothing waits forever on one.
const SESSION_OPTIONS: &str =
    "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=20000 -c statement_timeout=30000";

/// Connections per process: turns of different realms run in parallel on them.
const POOL_SIZE: usize = 16;

/// Realms in one PostgreSQL database.
pub struct PgStorage {
    config: tokio_postgres::Config,
    pool: Pool,
    retention: Retention,
    poll: Duration,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An error of the database as an `io::Error` (what the server's storage speaks).
fn db(e: tokio_postgres::Error) -> io::Error {
    io::Error::other(format!("postgres: {e}"))
}

fn pool_error(e: deadpool_postgres::PoolError) -> io::Error {
    io::Error::other(format!("postgres pool: {e}"))
}

/// A log position as stored (BIGINT).
fn pos(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

impl PgStorage {
    /// Connects to the database `connstr` names (libpq key=value form or a URL), creates or
    /// migrates its tables, and trims and compacts each realm by `retention` when it writes the
    /// realm's snapshot (when a process opens it). `poll` is the fallback interval at which the
    /// log lengths of all realms are read, in case a notification was missed.
    pub async fn connect(
        connstr: &str,
        retention: Retention,
        poll: Duration,
    ) -> io::Result<PgStorage> {
        let mut config = tokio_postgres::Config::from_str(connstr)
            .map_err(|e| io::Error::other(format!("bad connection string: {e}")))?;
        config.options(SESSION_OPTIONS);
        config.connect_timeout(Duration::from_secs(5));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(io::Error::other)?;
        let storage = PgStorage {
            config,
            pool,
            retention,
            poll,
        };
        storage.migrate().await?;
        Ok(storage)
    }

    /// Brings the schema to the newest version, one transaction under an advisory lock.
    async fn migrate(&self) -> io::Result<()> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS objsync_server_schema (version INT NOT NULL)")
            .await
            .map_err(db)?;
        let version: i32 = match tx
            .query_opt("SELECT version FROM objsync_server_schema", &[])
            .await
            .map_err(db)?
        {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO objsync_server_schema VALUES (0)", &[])
                    .await
                    .map_err(db)?;
                0
            }
        };
        let known = MIGRATIONS.len();
        let from = usize::try_from(version).unwrap_or(usize::MAX);
        if from > known {
            return Err(io::Error::other(format!(
                "the database's schema is version {version}, newer than this server's {known}"
            )));
        }
        for step in &MIGRATIONS[from..] {
            tx.batch_execute(step).await.map_err(db)?;
        }
        tx.execute(
            "UPDATE objsync_server_schema SET version = $1",
            &[&(known as i32)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if from < known {
            info!(from = version, to = known, "database schema migrated");
        }
        Ok(())
    }

    /// The realm at `path`, created if new, rebuilt from its snapshot and log, and
    /// checkpointed when records follow the snapshot: all under its row lock, so no other
    /// process appends meanwhile.
    async fn open_realm(&self, path: &str) -> io::Result<OpenedRealm> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO objsync_server_realms (path, file_ident) VALUES ($1, $2)
             ON CONFLICT (path) DO NOTHING",
            &[&path, &(random_id() as i64)],
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one(
                "SELECT id, file_ident, log_len, snapshot_at, snapshot FROM objsync_server_realms
                 WHERE path = $1 FOR UPDATE",
                &[&path],
            )
            .await
            .map_err(db)?;
        let (id, file_ident, log_len, snapshot_at): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let snapshot: Option<Vec<u8>> = row.get(4);
        let mut realm = match snapshot {
            Some(bytes) => ServerRealm::load(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the snapshot of {path} in the database does not load: {e}"),
                )
            })?,
            None => ServerRealm::new(file_ident as u64),
        };
        let records = read_log(&*tx, id, snapshot_at, log_len).await?;
        replay(&mut realm, &records, path)?;
        if log_len > snapshot_at || self.retention.changes_history() {
            self.retention.apply(&mut realm, path);
            // The records before the previous snapshot go; the ones after it stay one
            // generation, for processes still catching up from there.
            tx.execute(
                "UPDATE objsync_server_realms SET snapshot = $2, snapshot_at = $3 WHERE id = $1",
                &[&id, &realm.save(), &log_len],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "DELETE FROM objsync_server_log WHERE realm = $1 AND seq < $2",
                &[&id, &snapshot_at],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        info!(
            path = ?path,
            version = %realm.server().version(),
            records = log_len,
            "realm opened"
        );
        Ok(OpenedRealm {
            realm,
            end: log_len as u64,
            store: Box::new(PgRealm {
                pool: self.pool.clone(),
                id,
                path: path.to_string(),
                turn: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

/// Records `from..to` of realm `id`, checked to be all there.
async fn read_log(
    client: &impl tokio_postgres::GenericClient,
    id: i64,
    from: i64,
    to: i64,
) -> io::Result<Records> {
    if to <= from {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT seq, record FROM objsync_server_log WHERE realm = $1 AND seq >= $2 AND seq < $3
             ORDER BY seq",
            &[&id, &from, &to],
        )
        .await
        .map_err(db)?;
    let mut records = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let seq: i64 = row.get(0);
        if seq != from + i as i64 {
            break;
        }
        records.push(row.get::<_, Vec<u8>>(1));
    }
    if records.len() as i64 != to - from {
        // A checkpoint elsewhere removed records this process has not read: it reopens.
        return Err(io::Error::other(format!(
            "records {from}..{to} are no longer all in the log"
        )));
    }
    Ok(records)
}

impl Storage for PgStorage {
    fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, io::Result<OpenedRealm>> {
        Box::pin(self.open_realm(path))
    }

    fn realms(&self) -> BoxFuture<'_, io::Result<Vec<String>>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query("SELECT path FROM objsync_server_realms ORDER BY path", &[])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn watch(&self, grown: mpsc::UnboundedSender<Grown>) {
        tokio::spawn(listen(self.config.clone(), grown.clone()));
        tokio::spawn(poll(self.pool.clone(), self.poll, grown));
    }

    fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| format!("{h:?}"))
            .collect();
        format!(
            "postgres {} port {:?} database {:?}",
            hosts.join(","),
            self.config.get_ports(),
            self.config.get_dbname().unwrap_or("")
        )
    }
}

/// Follows the notifications of commits, reconnecting whenever the connection goes.
async fn listen(config: tokio_postgres::Config, grown: mpsc::UnboundedSender<Grown>) {
    while !grown.is_closed() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = message {
                            if tx.send(n.payload().to_string()).is_err() {
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    warn!(error = %e, "cannot listen for new records");
                } else {
                    while let Some(payload) = rx.recv().await {
                        if let Some(news) = parse_news(&payload) {
                            if grown.send(news).is_err() {
                                break;
                            }
                        }
                    }
                    warn!("the notification connection closed; reconnecting");
                }
                driver.abort();
            }
            Err(e) => warn!(error = %e, "cannot connect to listen for new records"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A notification's payload: `"<log_len> <path>"`.
fn parse_news(payload: &str) -> Option<Grown> {
    let (end, path) = payload.split_once(' ')?;
    Some(Grown {
        path: path.to_string(),
        end: end.parse().ok()?,
    })
}

/// Reads every realm's log length at each interval: what catches up a process that missed a
/// notification, and what its status line measures lag against.
async fn poll(pool: Pool, every: Duration, grown: mpsc::UnboundedSender<Grown>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !grown.is_closed() {
        ticks.tick().await;
        let rows = match pool.get().await {
            Ok(client) => client
                .query("SELECT path, log_len FROM objsync_server_realms", &[])
                .await
                .map_err(db),
            Err(e) => Err(pool_error(e)),
        };
        match rows {
            Ok(rows) => {
                for row in rows {
                    let news = Grown {
                        path: row.get(0),
                        end: row.get::<_, i64>(1) as u64,
                    };
                    if grown.send(news).is_err() {
                        return;
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot poll the realms' log lengths"),
        }
    }
}

/// One realm's log in the database, as one process appends to it.
struct PgRealm {
    pool: Pool,
    id: i64,
    path: String,
    /// The open transaction holding the realm's row lock, while this process has the turn.
    turn: tokio::sync::Mutex<Option<Object>>,
}

impl PgRealm {
    /// Opens a transaction holding the realm's row lock; returns it and the log length.
    async fn lock_row(&self) -> io::Result<(Object, i64)> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let locked = async {
            client.batch_execute("BEGIN").await?;
            let statement = client
                .prepare_cached(
                    "SELECT log_len FROM objsync_server_realms WHERE id = $1 FOR UPDATE",
                )
                .await?;
            client.query_one(&statement, &[&self.id]).await
        }
        .await;
        match locked {
            Ok(row) => Ok((client, row.get(0))),
            Err(e) => Err(abandon(client, e)),
        }
    }

    /// Inserts `records` after `at` and moves the log length, fenced by `at`; commits.
    async fn append(
        client: &Object,
        id: i64,
        path: &str,
        at: u64,
        records: &Records,
    ) -> Result<(), Failure> {
        let end = at + records.len() as u64;
        if !records.is_empty() {
            let seqs: Vec<i64> = (at..end).map(pos).collect();
            let insert = client
                .prepare_cached(
                    "INSERT INTO objsync_server_log (realm, seq, record)
                     SELECT $1, * FROM unnest($2::BIGINT[], $3::BYTEA[])",
                )
                .await?;
            client.execute(&insert, &[&id, &seqs, records]).await?;
            let fence = client
                .prepare_cached(
                    "UPDATE objsync_server_realms SET log_len = $3 WHERE id = $1 AND log_len = $2",
                )
                .await?;
            if client.execute(&fence, &[&id, &pos(at), &pos(end)]).await? != 1 {
                return Err(Failure::Fenced);
            }
            let notify = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
            client
                .execute(&notify, &[&CHANNEL, &format!("{end} {path}")])
                .await?;
        }
        client.batch_execute("COMMIT").await?;
        Ok(())
    }
}

/// Why an append failed.
enum Failure {
    Db(tokio_postgres::Error),
    /// The log moved past the position the records were built on.
    Fenced,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

/// Drops a connection whose transaction is in an unknown state rather than giving it back to
/// the pool: closing it makes PostgreSQL roll the transaction back and release its locks.
fn abandon(client: Object, e: tokio_postgres::Error) -> io::Error {
    drop(Object::take(client));
    db(e)
}

impl Drop for PgRealm {
    /// A turn left open (its realm broke mid-turn) is rolled back by closing its connection,
    /// never handed back to the pool inside a transaction.
    fn drop(&mut self) {
        if let Some(client) = self.turn.get_mut().take() {
            drop(Object::take(client));
        }
    }
}

impl RealmStore for PgRealm {
    fn shared(&self) -> bool {
        true
    }

    fn begin(&self, at: u64) -> BoxFuture<'_, io::Result<Records>> {
        Box::pin(async move {
            let mut turn = self.turn.lock().await;
            if turn.is_some() {
                return Ok(Vec::new());
            }
            let (client, log_len) = self.lock_row().await?;
            if log_len < pos(at) {
                drop(Object::take(client));
                return Err(io::Error::other(format!(
                    "the log of {} is at {log_len}, behind this process's {at}: reopen",
                    self.path
                )));
            }
            let missed = match read_log(&**client, self.id, pos(at), log_len).await {
                Ok(records) => records,
                Err(e) => {
                    drop(Object::take(client));
                    return Err(e);
                }
            };
            *turn = Some(client);
            Ok(missed)
        })
    }

    fn commit(&self, at: u64, records: Records) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let mut turn = self.turn.lock().await;
            let client = match turn.take() {
                Some(client) => client,
                None if records.is_empty() => return Ok(()),
                // Records processed without a turn (not expected): take one now; the fence
                // refuses them if anyone appended meanwhile.
                None => self.lock_row().await?.0,
            };
            match PgRealm::append(&client, self.id, &self.path, at, &records).await {
                Ok(()) => Ok(()),
                Err(Failure::Db(e)) => Err(abandon(client, e)),
                Err(Failure::Fenced) => {
                    drop(Object::take(client));
                    Err(io::Error::other(format!(
                        "the log of {} moved past {at}: this process lost its turn",
                        self.path
                    )))
                }
            }
        })
    }

    fn since(&self, at: u64) -> BoxFuture<'_, io::Result<Records>> {
        Box::pin(async move {
            if self.turn.lock().await.is_some() {
                return Ok(Vec::new());
            }
            let client = self.pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one(
                    "SELECT log_len FROM objsync_server_realms WHERE id = $1",
                    &[&self.id],
                )
                .await
                .map_err(db)?;
            read_log(&**client, self.id, pos(at), row.get(0)).await
        })
    }
}
