//! `pg-connector`: a two-way mirror between the realms a regular expression picks and a
//! PostgreSQL database.
//!
//! - **Realm to PostgreSQL** (this module): the connector follows the server's Adapter feed
//!   (`consumer::FeedLink`, admin token) and turns every item into SQL ([`sql`]): a schema
//!   per realm path (recorded in `objsync_realms`), a table per type, a table per list
//!   property. A batch of items is one PostgreSQL transaction that also stores each realm's
//!   feed cursor (`objsync_feed`), so after a crash the feed resumes exactly after what was
//!   committed: every row once, none missing.
//! - **PostgreSQL to realm** ([`outbox`]): triggers record the rows other programs change in an
//!   outbox table and NOTIFY the connector, which writes them into the realm as an ordinary
//!   client with the admin token; the connector's own writes into PostgreSQL set
//!   `objsync.applying`, which the triggers skip, so nothing that came from a realm is echoed
//!   back.
//! - **`--initialize-from-postgres`** ([`init`]): an existing set of tables becomes a realm's
//!   schema and data.

pub mod init;
pub mod outbox;
pub mod sql;

use super::client::{Backoff, Failure};
use super::consumer::FeedLink;
use futures_util::future::try_join_all;
use indicatif::{ProgressBar, ProgressStyle};
use objsync::feed::{ConsumerConfig, Delivery, FeedConsumer, FeedCursor, FeedItem};
use objsync::wire::Limits;
use objsync::ServerVersion;
use sql::{Step, Stmt, Types};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};
use tracing::{info, warn};

/// What the connector is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's `host:port`.
    pub server: String,
    /// The admin token.
    pub token: String,
    /// The realm paths to mirror: a regular expression matching whole paths.
    pub paths: String,
    /// libpq `key=value` connection string.
    pub postgres: String,
    /// Most feed items committed in one PostgreSQL transaction.
    pub batch: usize,
    /// `(schema, realm path)`: make the realm from the schema's tables first.
    pub initialize: Option<(String, String)>,
}

/// A backlog beyond this many transactions shows a progress bar.
const LARGE_BACKLOG: u64 = 1_000;

/// Connects to PostgreSQL; the connection runs in a task of its own.
pub async fn connect(conn: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

fn pg(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}: {}", db.code().code(), db.message()),
        None => format!("PostgreSQL: {e}"),
    }
}

/// Runs the connector until a failure that retrying cannot cure.
pub async fn run(options: Options) -> Result<(), String> {
    let client = connect(&options.postgres).await?;
    outbox::install(&client).await?;
    if let Some((schema, path)) = &options.initialize {
        init::initialize(&client, &options, schema, path).await?;
    }
    let writes = tokio::spawn(outbox::run(options.clone()));
    let mirrored = mirror_feed(&options, client).await;
    writes.abort();
    mirrored
}

/// Realm to PostgreSQL: follows the feed for ever, reconnecting after failures.
async fn mirror_feed(options: &Options, mut client: Client) -> Result<(), String> {
    let mut backoff = Backoff::new(None);
    loop {
        let mut mirror = match Mirror::load(&client).await {
            Ok(mirror) => mirror,
            Err(e) => {
                let delay = backoff.fail().unwrap_or(Duration::from_secs(3));
                warn!(error = %e, "cannot read the mirror's state; again in {delay:?}");
                tokio::time::sleep(delay).await;
                if let Ok(c) = connect(&options.postgres).await {
                    client = c;
                }
                continue;
            }
        };
        let config = ConsumerConfig {
            paths: options.paths.clone(),
            token: options.token.clone(),
            limits: Limits::default(),
        };
        let cursors = (mirror.cursors.iter()).map(|(p, v)| (p.clone(), FeedCursor { version: *v }));
        let consumer = FeedConsumer::new(config, cursors.collect::<Vec<_>>());
        let failure = match FeedLink::connect(&options.server, consumer, &Limits::default()).await {
            Ok(mut link) => {
                let result = mirror
                    .follow(&mut client, &mut link, options.batch, &mut backoff)
                    .await;
                link.close().await;
                result
            }
            Err(failure) => failure,
        };
        let delay = backoff.fail().unwrap_or(Duration::from_secs(3));
        match failure {
            // PostgreSQL failed (a dropped connection, a server restarting): nothing of the
            // batch was kept, and the feed starts again from the cursors committed.
            Failure::Local(e) => {
                warn!(error = %e, "mirroring into PostgreSQL failed; again in {delay:?}");
                tokio::time::sleep(delay).await;
                if let Ok(c) = connect(&options.postgres).await {
                    client = c;
                }
            }
            f if f.action() == objsync::wire::Action::Retry => {
                warn!(error = %f, "feed interrupted; reconnecting in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            f => return Err(format!("the feed stopped: {f}")),
        }
    }
}

/// What the connector knows of the mirrored realms, as committed in PostgreSQL.
struct Mirror {
    /// Realm path → schema.
    schemas: HashMap<String, String>,
    /// Realm path → its types.
    types: HashMap<String, Types>,
    /// Realm path → the feed cursor committed.
    cursors: BTreeMap<String, ServerVersion>,
    statements: HashMap<String, Statement>,
    bar: Option<ProgressBar>,
}

impl Mirror {
    async fn load(client: &Client) -> Result<Mirror, String> {
        let mut mirror = Mirror {
            schemas: HashMap::new(),
            types: HashMap::new(),
            cursors: BTreeMap::new(),
            statements: HashMap::new(),
            bar: None,
        };
        for row in (client
            .query("SELECT path, schema FROM objsync_realms", &[])
            .await)
            .map_err(pg)?
        {
            mirror.schemas.insert(row.get(0), row.get(1));
        }
        let types = client
            .query(
                "SELECT path, type, definition::text FROM objsync_types",
                &[],
            )
            .await
            .map_err(pg)?;
        for row in types {
            let def: String = row.get(2);
            let def = serde_json::from_str(&def).map_err(|e| format!("objsync_types: {e}"))?;
            (mirror.types.entry(row.get(0)).or_default())
                .insert(row.get::<_, String>(1).into(), def);
        }
        for row in (client
            .query("SELECT path, version FROM objsync_feed", &[])
            .await)
            .map_err(pg)?
        {
            let v: i64 = row.get(1);
            mirror.cursors.insert(row.get(0), ServerVersion(v as u64));
        }
        Ok(mirror)
    }

    /// Mirrors items as they come, a batch per PostgreSQL transaction.
    async fn follow(
        &mut self,
        client: &mut Client,
        link: &mut FeedLink,
        batch: usize,
        backoff: &mut Backoff,
    ) -> Failure {
        loop {
            let first = match link.next(Duration::from_secs(60)).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(f) => return f,
            };
            let mut items = vec![first];
            while items.len() < batch {
                match link.next(Duration::ZERO).await {
                    Ok(Some(d)) => items.push(d),
                    Ok(None) => break,
                    Err(f) => return f,
                }
            }
            let started = Instant::now();
            let rows = match self.commit(client, &items).await {
                Ok(rows) => rows,
                Err(e) => return Failure::Local(e),
            };
            backoff.reset();
            self.report(&items, rows, started.elapsed());
        }
    }

    /// Logs what a batch mirrored, and moves the progress bar while a large backlog lasts.
    fn report(&mut self, items: &[Delivery], rows: usize, took: Duration) {
        let last = items.last().expect("a batch holds an item");
        let behind = last.latest.0.saturating_sub(last.cursor().version.0);
        info!(
            items = items.len(),
            rows,
            path = ?last.path,
            version = %last.cursor().version,
            latest = %last.latest,
            ms = took.as_millis() as u64,
            "mirrored"
        );
        if behind > LARGE_BACKLOG && self.bar.is_none() {
            let bar = ProgressBar::new(last.latest.0).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} transactions ({per_sec})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(format!("catching up {}", last.path));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(last.latest.0);
            bar.set_position(last.cursor().version.0);
            if behind == 0 {
                bar.finish_and_clear();
                self.bar = None;
            }
        }
    }

    /// One PostgreSQL transaction: the rows of `items`, and each realm's cursor. Returns the
    /// number of row statements. On failure nothing of it is kept, in PostgreSQL or here.
    async fn commit(&mut self, client: &mut Client, items: &[Delivery]) -> Result<usize, String> {
        let (schemas, types) = (self.schemas.clone(), self.types.clone());
        let result = self.try_commit(client, items).await;
        if result.is_err() {
            (self.schemas, self.types) = (schemas, types);
        }
        result
    }

    async fn try_commit(
        &mut self,
        client: &mut Client,
        items: &[Delivery],
    ) -> Result<usize, String> {
        let tx = client.transaction().await.map_err(pg)?;
        // The triggers leave alone what the connector writes: it came from the realm.
        tx.batch_execute("SET LOCAL objsync.applying = 'on'")
            .await
            .map_err(pg)?;
        let mut pending = Vec::new();
        let mut rows = 0;
        let mut cursors = BTreeMap::new();
        for d in items {
            let schema = match self.schemas.get(&d.path) {
                Some(s) => s.clone(),
                None => {
                    let schema = sql::schema_name(&d.path);
                    pending.push(Stmt {
                        sql: "INSERT INTO objsync_realms (path, schema) VALUES ($1, $2) ON CONFLICT DO NOTHING".into(),
                        params: vec![Some(d.path.clone()), Some(schema.clone())],
                    });
                    self.schemas.insert(d.path.clone(), schema.clone());
                    schema
                }
            };
            let types = self.types.entry(d.path.clone()).or_default();
            let instructions = match &d.item {
                FeedItem::Transaction(t) => &t.instructions,
                FeedItem::Snapshot(s) => {
                    // The state replaces whatever was mirrored of the realm.
                    for (ty, def) in types.iter() {
                        let mut tables = vec![sql::table(&schema, ty)];
                        tables.extend(
                            (def.properties.iter())
                                .filter(|(_, p)| p.ty == "list")
                                .map(|(n, _)| sql::table(&schema, &sql::list_table(ty, n))),
                        );
                        pending.push(Stmt {
                            sql: format!("TRUNCATE {}", tables.join(", ")),
                            params: vec![],
                        });
                    }
                    &s.instructions
                }
            };
            for instruction in instructions {
                for step in sql::translate(&schema, types, instruction)? {
                    match step {
                        Step::Dml(stmt) => {
                            rows += 1;
                            pending.push(stmt);
                        }
                        Step::Ddl(ddl) => {
                            flush(&mut self.statements, &tx, &mut pending).await?;
                            tx.batch_execute(&ddl).await.map_err(pg)?;
                        }
                        Step::Defined(ty) => {
                            let def =
                                serde_json::to_string(&types[&ty]).expect("a type renders as JSON");
                            pending.push(Stmt {
                                sql: "INSERT INTO objsync_types (path, type, definition) VALUES ($1, $2, $3::text::jsonb) \
                                      ON CONFLICT (path, type) DO UPDATE SET definition = EXCLUDED.definition".into(),
                                params: vec![Some(d.path.clone()), Some(ty.to_string()), Some(def)],
                            });
                        }
                    }
                }
            }
            cursors.insert(d.path.clone(), d.cursor().version);
        }
        for (path, version) in &cursors {
            pending.push(Stmt {
                sql: "INSERT INTO objsync_feed (path, version) VALUES ($1, $2::text::bigint) \
                      ON CONFLICT (path) DO UPDATE SET version = EXCLUDED.version"
                    .into(),
                params: vec![Some(path.clone()), Some(version.0.to_string())],
            });
        }
        flush(&mut self.statements, &tx, &mut pending).await?;
        tx.commit().await.map_err(pg)?;
        self.cursors.extend(cursors);
        Ok(rows)
    }
}

/// Runs `pending` in order, pipelined (runs of upserts coalesced), and empties it; `statements` holds the prepared
/// statements by their SQL text (they live as long as the connection).
async fn flush(
    statements: &mut HashMap<String, Statement>,
    tx: &tokio_postgres::Transaction<'_>,
    pending: &mut Vec<Stmt>,
) -> Result<(), String> {
    let batch = sql::coalesce(std::mem::take(pending));
    for s in &batch {
        if !statements.contains_key(&s.sql) {
            let types = vec![Type::TEXT; s.params.len()];
            let prepared = (tx.prepare_typed(&s.sql, &types).await)
                .map_err(|e| format!("{}: {}", pg(e), s.sql))?;
            statements.insert(s.sql.clone(), prepared);
        }
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = (batch.iter())
        .map(|s| s.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
        .collect();
    // Sent back to back without waiting for each answer: the statements of a batch cost one
    // round trip, not one each.
    let runs = (batch.iter().zip(&params)).map(|(s, p)| tx.execute(&statements[&s.sql], p));
    try_join_all(runs).await.map_err(pg)?;
    Ok(())
}
