//! PostgreSQL to realm: rows that other programs insert, update or delete become changesets in
//! the realm.
//!
//! **Triggers into an outbox, with LISTEN/NOTIFY** (rather than logical decoding): each mirrored
//! table has an `AFTER INSERT OR UPDATE OR DELETE` row trigger that records the row's key (for a
//! list table, the owner's) in `objsync_outbox` and NOTIFYs `objsync_outbox`. Why: the outbox
//! is written in the writer's own transaction, so it holds exactly the committed changes and
//! survives a connector that is down; the connector's own writes are told apart by a
//! transaction-local setting (`objsync.applying`) that the trigger reads, which logical
//! decoding cannot see (it would need a replication origin per session, a superuser's
//! replication connection, and a slot that holds WAL back for as long as the connector is
//! away). The price is a row insert per changed row in the writer's transaction.
//!
//! The connector reads the outbox in id order, reads each changed row as it is now (not as the
//! trigger saw it: several changes to a row become one write of its latest state), compares it
//! with the realm as its client holds it, and writes only the difference: an insert, the
//! properties that differ, a delete, or the list edits that turn the realm's list into the
//! table's. The write is an ordinary local transaction of a client with the admin token, so it
//! conflicts with devices by the ordinary rules. Outbox rows are deleted once the server has
//! acknowledged the write; after a crash they are read again, and writing the difference again
//! is a no-op.

use super::sql::{self, ident, read, table};
use super::{connect, pg, Options};
use crate::client::{run as sync_run, Failure, Flow, Local, RealmUrl};
use objsync::json::{key_from_json, value_to_json};
use objsync::session::{ClientConfig, ClientEvent};
use objsync::wire::Limits;
use objsync::{ObjKey, ObjectType, OpId, PropType, Store};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};
use tracing::{info, warn};

/// The connector's own tables and the trigger function, made if missing.
pub async fn install(client: &Client) -> Result<(), String> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS objsync_realms (path text PRIMARY KEY, schema text NOT NULL);
             CREATE TABLE IF NOT EXISTS objsync_feed (path text PRIMARY KEY, version bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS objsync_types (path text NOT NULL, type text NOT NULL,
                 definition jsonb NOT NULL, PRIMARY KEY (path, type));
             CREATE TABLE IF NOT EXISTS objsync_outbox (id bigserial PRIMARY KEY,
                 schema text NOT NULL, tbl text NOT NULL, key text);
             CREATE OR REPLACE FUNCTION objsync_capture() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE
                 new_key text;
                 old_key text;
             BEGIN
                 IF current_setting('objsync.applying', true) = 'on' THEN
                     RETURN NULL;
                 END IF;
                 IF TG_OP <> 'DELETE' THEN
                     new_key := to_jsonb(NEW) ->> TG_ARGV[0];
                     INSERT INTO objsync_outbox (schema, tbl, key)
                         VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, new_key);
                 END IF;
                 IF TG_OP <> 'INSERT' THEN
                     old_key := to_jsonb(OLD) ->> TG_ARGV[0];
                     IF old_key IS DISTINCT FROM new_key THEN
                         INSERT INTO objsync_outbox (schema, tbl, key)
                             VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, old_key);
                     END IF;
                 END IF;
                 PERFORM pg_notify('objsync_outbox', TG_TABLE_SCHEMA);
                 RETURN NULL;
             END $$;",
        )
        .await
        .map_err(pg)
}

/// How often the outbox is read when no NOTIFY came (a notification lost with a dropped
/// connection must not leave rows waiting for ever).
const POLL: Duration = Duration::from_secs(2);

/// Most outbox rows taken at once.
const TAKE: i64 = 5_000;

/// Writes the outbox into the realms for ever; a failure is logged and the work tried again.
pub async fn run(options: Options) {
    let mut writers = HashMap::new();
    loop {
        if let Err(e) = follow(&options, &mut writers).await {
            warn!(error = %e, "writing PostgreSQL's changes into the realms failed; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn follow(options: &Options, writers: &mut HashMap<String, Writer>) -> Result<(), String> {
    let client = connect(&options.postgres).await?;
    let (_listening, mut notified) = listen(&options.postgres).await?;
    loop {
        while take(options, &client, writers).await? {}
        tokio::select! {
            n = notified.recv() => if n.is_none() {
                return Err("the LISTEN connection ended".into());
            },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// A connection that LISTENs; each NOTIFY comes out of the channel while the client returned
/// is kept.
async fn listen(conn: &str) -> Result<(Client, mpsc::UnboundedReceiver<()>), String> {
    let (client, mut connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .map_err(pg)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client
        .batch_execute("LISTEN objsync_outbox")
        .await
        .map_err(pg)?;
    Ok((client, rx))
}

/// Takes one batch of the outbox into the realms; whether there may be more.
async fn take(
    options: &Options,
    client: &Client,
    writers: &mut HashMap<String, Writer>,
) -> Result<bool, String> {
    let rows = client
        .query(
            "SELECT o.id, r.path, o.tbl, o.key FROM objsync_outbox o \
             LEFT JOIN objsync_realms r ON r.schema = o.schema ORDER BY o.id LIMIT $1",
            &[&TAKE],
        )
        .await
        .map_err(pg)?;
    if rows.is_empty() {
        return Ok(false);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut changed: BTreeMap<String, BTreeSet<(String, Option<String>)>> = BTreeMap::new();
    for row in &rows {
        let Some(path) = row.get::<_, Option<String>>(1) else {
            continue;
        };
        changed
            .entry(path)
            .or_default()
            .insert((row.get(2), row.get(3)));
    }
    for (path, rows) in changed {
        let schema: String = client
            .query_one(
                "SELECT schema FROM objsync_realms WHERE path = $1",
                &[&path],
            )
            .await
            .map_err(pg)?
            .get(0);
        let writer = match writers.entry(path.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Writer::new(options, &path)?),
        };
        writer.sync().await.map_err(|e| e.to_string())?;
        let mut ops = Vec::new();
        // Rows another program inserted into tables of types without a primary key, by type,
        // in the order their inserts come in `ops`.
        let mut new_rows: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tbl, key) in &rows {
            let Some(key) = key else { continue };
            let diff = writer.diff(client, &schema, tbl, key).await?;
            if diff.new_row.is_some() {
                new_rows.entry(tbl.as_str()).or_default().push(key.as_str());
            }
            ops.extend(diff.ops);
        }
        if !ops.is_empty() {
            let n = ops.len();
            let before: HashMap<&str, usize> = (new_rows.keys())
                .map(|ty| Ok((*ty, writer.minted(ty)?.len())))
                .collect::<Result<_, String>>()?;
            writer.local.apply(&Json::Array(ops).to_string())?;
            for (ty, keys) in &new_rows {
                let minted = writer.minted(ty)?;
                rekey(client, &schema, ty, keys, &minted[before[ty]..]).await?;
            }
            writer.sync().await.map_err(|e| e.to_string())?;
            info!(path = ?path, rows = rows.len(), ops = n, "wrote PostgreSQL's changes into the realm");
        }
    }
    client
        .execute("DELETE FROM objsync_outbox WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(pg)?;
    Ok(rows.len() as i64 == TAKE)
}

/// The connector's client of one realm (in memory: what it writes is in the outbox until the
/// server has acknowledged it).
pub struct Writer {
    /// The client.
    pub local: Local,
    url: RealmUrl,
}

impl Writer {
    /// A new client of the realm at `path`, that starts from the server's state.
    pub fn new(options: &Options, path: &str) -> Result<Writer, String> {
        let url = RealmUrl::parse(&format!("realm://{}{path}", options.server))?;
        let config = ClientConfig {
            path: path.to_string(),
            token: options.token.clone(),
            limits: Limits::default(),
            start_from_state: true,
        };
        Ok(Writer {
            local: Local::in_memory(config),
            url,
        })
    }

    /// Syncs until everything the server had is integrated and everything written is
    /// acknowledged.
    pub async fn sync(&mut self) -> Result<(), Failure> {
        let (mut mark, mut reached) = (0, false);
        let on_event = |local: &mut Local, event: &ClientEvent| {
            match event {
                ClientEvent::Identified(_) => {
                    mark += 1;
                    local.session.mark(mark);
                }
                ClientEvent::MarkReached(m) => reached |= *m == mark,
                _ => {}
            }
            Ok(if reached && local.all_acknowledged() {
                Flow::Done
            } else {
                Flow::Continue
            })
        };
        sync_run(&mut self.local, &self.url, Some(20), on_event, |_, _| {}).await
    }

    /// The ops that make the realm's object (or list) that table `tbl` row `key` stands for
    /// what the table holds now.
    async fn diff(
        &self,
        client: &Client,
        schema: &str,
        tbl: &str,
        key: &str,
    ) -> Result<RowDiff, String> {
        let store = self.local.session.client().replica().store();
        for def in store.schema().types() {
            if def.name.as_ref() == tbl {
                return object_diff(client, store, schema, def, key).await;
            }
            for (prop, pt) in def.properties.iter().filter(|(_, t)| t.list) {
                if sql::list_table(&def.name, prop) == tbl {
                    let ops = list_diff(client, store, schema, def, prop, pt, key).await?;
                    return Ok(RowDiff { ops, new_row: None });
                }
            }
        }
        Ok(RowDiff::default())
    }

    /// The engine ids of `ty`'s objects this client minted, in minting order.
    fn minted(&self, ty: &str) -> Result<Vec<OpId>, String> {
        let client = self.local.session.client();
        let me = client.peer();
        let objects = client
            .replica()
            .store()
            .objects(ty)
            .map_err(|e| e.to_string())?;
        let mut ids: Vec<OpId> = objects
            .into_iter()
            .filter_map(|k| match k {
                ObjKey::Engine(id) if id.peer == me => Some(id),
                _ => None,
            })
            .collect();
        ids.sort_unstable_by_key(|id| id.seq);
        Ok(ids)
    }
}

/// The feed's scalar type name of what a property holds (a link: its target's key).
fn scalar(store: &impl Store, pt: &PropType) -> String {
    let fp = objsync::feed::FeedProperty::from(pt);
    let target = fp.object_type.clone();
    let key_of = |t: &str| {
        let def = store.schema().types().find(|d| d.name.as_ref() == t);
        let pk = def.and_then(|d| d.primary_key.as_ref().and_then(|pk| d.properties.get(pk)));
        pk.map_or("string".to_string(), |p| {
            objsync::feed::FeedProperty::from(p).ty
        })
    };
    match (fp.ty.as_str(), target) {
        ("object", Some(t)) => key_of(&t),
        ("list", Some(t)) if pt.link_target().is_some() => key_of(&t),
        ("list", Some(t)) => t.to_string(),
        (t, _) => t.to_string(),
    }
}

/// A row's key column as SQL sees it (its scalar type), as the JSON ops name the object, and
/// the object it names, if any: a type without a primary key keys its rows by the engine id
/// (`peer:seq`, text), and a row another program inserted there names no object yet.
fn row_object(
    store: &impl Store,
    def: &ObjectType,
    key: &str,
) -> Result<(String, Json, Option<ObjKey>), String> {
    match &def.primary_key {
        Some(pk) => {
            let pk_scalar = scalar(store, &def.properties[pk]);
            let pk_json = sql::json(&pk_scalar, Some(key.to_string()));
            let obj = key_from_json(def, &pk_json).map_err(|e| e.to_string())?;
            Ok((pk_scalar, pk_json, Some(obj)))
        }
        None => Ok(("string".into(), json!(key), ObjKey::parse_engine(key))),
    }
}

/// What an object row's change becomes: ops, and for a row another program inserted into the
/// table of a type without a primary key, the row's key, which the object's new engine id
/// replaces in the table once the realm has minted it ([`rekey`]).
#[derive(Default)]
struct RowDiff {
    /// The JSON write ops.
    ops: Vec<Json>,
    /// The row's key, if the ops create the object it stands for under a new engine id.
    new_row: Option<String>,
}

async fn object_diff(
    client: &Client,
    store: &impl Store,
    schema: &str,
    def: &ObjectType,
    key: &str,
) -> Result<RowDiff, String> {
    let (pk_scalar, pk_json, obj) = row_object(store, def, key)?;
    let key_col = def.primary_key.as_deref().unwrap_or(sql::ENGINE_KEY_COLUMN);
    let props: Vec<(&objsync::Name, &PropType)> = (def.properties.iter())
        .filter(|(n, t)| !t.list && n.as_ref() != key_col)
        .collect();
    let cols: Vec<String> = props
        .iter()
        .map(|(n, t)| read(&scalar(store, t), n))
        .collect();
    let select = format!(
        "SELECT {} FROM {} WHERE {} = {}",
        if cols.is_empty() {
            "1".to_string()
        } else {
            cols.join(", ")
        },
        table(schema, &def.name),
        ident(key_col),
        sql::cast(&pk_scalar, 1)
    );
    let row = client.query_opt(&select, &[&key]).await.map_err(pg)?;
    let exists = match &obj {
        Some(obj) => store.exists(&def.name, obj).map_err(|e| e.to_string())?,
        None => false,
    };
    let Some(row) = row else {
        let ops = if exists {
            vec![json!({"op": "delete", "type": def.name, "pk": pk_json})]
        } else {
            Vec::new()
        };
        return Ok(RowDiff { ops, new_row: None });
    };
    let mut values = serde_json::Map::new();
    for (i, (name, pt)) in props.iter().enumerate() {
        let now = sql::json(&scalar(store, pt), row.get(i));
        let held = match (&obj, exists) {
            (Some(obj), true) => {
                value_to_json(&store.get(&def.name, obj, name).map_err(|e| e.to_string())?)
            }
            _ => Json::Null,
        };
        if !exists || now != held {
            values.insert(name.to_string(), now);
        }
    }
    if exists && values.is_empty() {
        return Ok(RowDiff::default());
    }
    if exists {
        let op = json!({"op": "set", "type": def.name, "pk": pk_json, "values": values});
        return Ok(RowDiff {
            ops: vec![op],
            new_row: None,
        });
    }
    if def.primary_key.is_some() {
        let op = json!({"op": "insert", "type": def.name, "pk": pk_json, "values": values});
        return Ok(RowDiff {
            ops: vec![op],
            new_row: None,
        });
    }
    // A new row of a type without a primary key: the realm mints the object's id.
    Ok(RowDiff {
        ops: vec![json!({"op": "insert", "type": def.name, "values": values})],
        new_row: Some(key.to_string()),
    })
}

async fn list_diff(
    client: &Client,
    store: &impl Store,
    schema: &str,
    def: &ObjectType,
    prop: &str,
    pt: &PropType,
    key: &str,
) -> Result<Vec<Json>, String> {
    let (pk_scalar, pk_json, obj) = row_object(store, def, key)?;
    let Some(obj) = obj.filter(|o| store.exists(&def.name, o).unwrap_or(false)) else {
        return Ok(Vec::new());
    };
    let elem = scalar(store, pt);
    let select = format!(
        "SELECT {} FROM {} WHERE owner = {} ORDER BY idx",
        read(&elem, "value"),
        table(schema, &sql::list_table(&def.name, prop)),
        sql::cast(&pk_scalar, 1)
    );
    let rows = client.query(&select, &[&key]).await.map_err(pg)?;
    let now: Vec<Json> = rows.iter().map(|r| sql::json(&elem, r.get(0))).collect();
    let held: Vec<Json> = (store
        .list(&def.name, &obj, prop)
        .map_err(|e| e.to_string())?)
    .iter()
    .map(value_to_json)
    .collect();
    // Keep the common prefix and suffix; erase what is between in the realm's list, insert
    // what is between in the table's.
    let prefix = held.iter().zip(&now).take_while(|(a, b)| a == b).count();
    let suffix = (held[prefix..].iter().rev())
        .zip(now[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let base = json!({"type": def.name, "pk": pk_json, "property": prop});
    let with = |op: &str, index: usize, value: Option<&Json>| {
        let mut o = base.clone();
        o["op"] = json!(op);
        o["index"] = json!(index);
        if let Some(v) = value {
            o["value"] = v.clone();
        }
        o
    };
    let mut ops = Vec::new();
    for _ in prefix..held.len() - suffix {
        ops.push(with("list_erase", prefix, None));
    }
    for (i, v) in now[prefix..now.len() - suffix].iter().enumerate() {
        ops.push(with("list_insert", prefix + i, Some(v)));
    }
    Ok(ops)
}

/// Gives rows another program inserted into the table of `ty` (a type without a primary key)
/// the engine ids the realm minted for their objects, in the connector's own transaction (the
/// triggers skip it). The realm's own insert may have reached the table first through the
/// feed; then the program's row is the duplicate and goes.
async fn rekey(
    client: &Client,
    schema: &str,
    ty: &str,
    keys: &[&str],
    minted: &[OpId],
) -> Result<(), String> {
    if keys.len() != minted.len() {
        return Err(format!(
            "{} new rows of {ty} but {} objects minted for them",
            keys.len(),
            minted.len()
        ));
    }
    let tbl = table(schema, ty);
    let col = ident(sql::ENGINE_KEY_COLUMN);
    let update = format!(
        "UPDATE {tbl} SET {col} = $1 WHERE {col} = $2 \
         AND NOT EXISTS (SELECT 1 FROM {tbl} WHERE {col} = $1)"
    );
    let delete = format!("DELETE FROM {tbl} WHERE {col} = $1");
    let rename = async {
        client
            .batch_execute("BEGIN; SET LOCAL objsync.applying = 'on'")
            .await?;
        for (old, id) in keys.iter().zip(minted) {
            client.execute(&update, &[&id.to_string(), old]).await?;
            client.execute(&delete, &[old]).await?;
        }
        client.batch_execute("COMMIT").await
    };
    if let Err(e) = rename.await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(pg(e));
    }
    Ok(())
}
