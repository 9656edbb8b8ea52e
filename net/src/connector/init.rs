//! `--initialize-from-postgres SCHEMA:PATH`: the tables of an existing PostgreSQL schema
//! become the schema and data of the realm at PATH, and the schema is recorded as that realm's
//! (`objsync_realms`), so the connector mirrors both ways from then on.
//!
//! Each table with a one-column primary key becomes a type of that name, its primary key the
//! type's; each other column a property (`bigint`/`integer`/`smallint` int, `boolean` bool,
//! `text`/`varchar` string, `real` float, `double precision` double, `timestamp[tz]`/`date`
//! date, `bytea` data, `numeric` decimal; nullable columns optional); a one-column foreign key
//! a link to the table it references. Tables without a one-column primary key and columns of
//! other types are left out (and logged). The rows are written by the connector's client of
//! the realm, a thousand to a transaction.

use super::outbox::Writer;
use super::sql::{self, ident, read, table};
use super::{pg, Options};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use tokio_postgres::Client;
use tracing::{info, warn};

/// Rows per realm transaction.
const ROWS_PER_WRITE: usize = 1_000;

/// One table as a type: its primary key and its columns (name, scalar type name or `link<T>`,
/// nullable).
struct Table {
    pk: String,
    columns: Vec<(String, String, bool)>,
}

/// The objsync type string of a PostgreSQL column type, if it has one.
fn scalar_of(data_type: &str) -> Option<&'static str> {
    Some(match data_type {
        "bigint" | "integer" | "smallint" => "int",
        "boolean" => "bool",
        "text" | "character varying" | "character" => "string",
        "real" => "float",
        "double precision" => "double",
        "timestamp with time zone" | "timestamp without time zone" | "date" => "date",
        "bytea" => "data",
        "numeric" => "decimal",
        _ => return None,
    })
}

/// Reads the tables of `schema`.
async fn tables(client: &Client, schema: &str) -> Result<BTreeMap<String, Table>, String> {
    let pks = client
        .query(
            "SELECT tc.table_name, min(k.column_name)::text, count(*) FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name \
               AND k.table_schema = tc.table_schema \
             WHERE tc.table_schema = $1 AND tc.constraint_type = 'PRIMARY KEY' GROUP BY tc.table_name",
            &[&schema],
        )
        .await
        .map_err(pg)?;
    let fks = client
        .query(
            "SELECT k.table_name, k.column_name, c.table_name FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name \
               AND k.table_schema = tc.table_schema \
             JOIN information_schema.constraint_column_usage c ON c.constraint_name = tc.constraint_name \
               AND c.table_schema = tc.table_schema \
             WHERE tc.table_schema = $1 AND tc.constraint_type = 'FOREIGN KEY'",
            &[&schema],
        )
        .await
        .map_err(pg)?;
    let links: BTreeMap<(String, String), String> = (fks.iter())
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut out = BTreeMap::new();
    for row in pks {
        let (name, pk, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        if n != 1 {
            warn!(table = ?name, "left out: its primary key has {n} columns");
            continue;
        }
        out.insert(
            name,
            Table {
                pk,
                columns: Vec::new(),
            },
        );
    }
    let columns = client
        .query(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns \
             WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            &[&schema],
        )
        .await
        .map_err(pg)?;
    for row in columns {
        let (name, column, data_type, nullable): (String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let Some(t) = out.get_mut(&name) else {
            continue;
        };
        if let Some(target) = links.get(&(name.clone(), column.clone())) {
            t.columns.push((column, format!("link<{target}>"), true));
        } else if let Some(s) = scalar_of(&data_type) {
            t.columns.push((column, s.to_string(), nullable));
        } else {
            warn!(table = ?name, column = ?column, data_type = ?data_type, "column left out: no objsync type");
        }
    }
    Ok(out)
}

/// The types in an order where a link's target comes before the link when it can (a cycle
/// keeps the rest in name order).
fn ordered(tables: &BTreeMap<String, Table>) -> Vec<&String> {
    let mut done: Vec<&String> = Vec::new();
    while done.len() < tables.len() {
        let before = done.len();
        for (name, t) in tables {
            let ready = t.columns.iter().all(|(_, ty, _)| {
                let target = ty.strip_prefix("link<").and_then(|r| r.strip_suffix('>'));
                target.map_or(true, |x| {
                    x == name || done.iter().any(|d| *d == x) || !tables.contains_key(x)
                })
            });
            if !done.contains(&name) && ready {
                done.push(name);
            }
        }
        if done.len() == before {
            done.extend(
                tables
                    .keys()
                    .filter(|n| !done.contains(n))
                    .collect::<Vec<_>>(),
            );
        }
    }
    done
}

/// Makes the realm at `path` from the tables of `schema`.
pub async fn initialize(
    client: &Client,
    options: &Options,
    schema: &str,
    path: &str,
) -> Result<(), String> {
    let tables = tables(client, schema).await?;
    if tables.is_empty() {
        return Err(format!(
            "schema {schema} has no table with a one-column primary key"
        ));
    }
    let mut writer = Writer::new(options, path)?;
    writer.sync().await.map_err(|e| e.to_string())?;
    let mut ops = Vec::new();
    let order = ordered(&tables);
    for name in &order {
        let t = &tables[*name];
        let mut props = Map::new();
        for (column, ty, nullable) in &t.columns {
            let ty = if *nullable && !ty.starts_with("link<") && *column != t.pk {
                format!("{ty}?")
            } else {
                ty.clone()
            };
            props.insert(column.clone(), json!(ty));
        }
        ops.push(json!({"op": "add_type", "type": name, "primary_key": t.pk, "properties": props}));
    }
    writer
        .local
        .apply(&Json::Array(std::mem::take(&mut ops)).to_string())?;
    let mut rows_written = 0;
    for name in &order {
        let t = &tables[*name];
        let scalar = |ty: &str| -> String {
            match ty.strip_prefix("link<").and_then(|r| r.strip_suffix('>')) {
                Some(target) => tables
                    .get(target)
                    .and_then(|tt| tt.columns.iter().find(|c| c.0 == tt.pk))
                    .map_or("string".into(), |c| feed_name(&c.1)),
                None => feed_name(ty),
            }
        };
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(c, ty, _)| read(&scalar(ty), c))
            .collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            table(schema, name),
            ident(&t.pk)
        );
        for row in client.query(&select, &[]).await.map_err(pg)? {
            let mut values = Map::new();
            let mut pk = Json::Null;
            for (i, (c, ty, _)) in t.columns.iter().enumerate() {
                let v = sql::json(&scalar(ty), row.get(i));
                if *c == t.pk {
                    pk = v
                } else {
                    values.insert(c.clone(), v);
                }
            }
            ops.push(json!({"op": "insert", "type": name, "pk": pk, "values": values}));
            if ops.len() == ROWS_PER_WRITE {
                rows_written += ops.len();
                writer
                    .local
                    .apply(&Json::Array(std::mem::take(&mut ops)).to_string())?;
            }
        }
    }
    rows_written += ops.len();
    if !ops.is_empty() {
        writer.local.apply(&Json::Array(ops).to_string())?;
    }
    writer.sync().await.map_err(|e| e.to_string())?;
    client
        .execute("INSERT INTO objsync_realms (path, schema) VALUES ($1, $2) ON CONFLICT (path) DO UPDATE SET schema = EXCLUDED.schema", &[&path, &schema])
        .await
        .map_err(pg)?;
    info!(schema = ?schema, path = ?path, types = tables.len(), rows = rows_written, "realm initialized from PostgreSQL");
    Ok(())
}

/// The feed's name of an objsync scalar type string (`decimal` is `decimal128`, `object_id`
/// `objectId`).
fn feed_name(ty: &str) -> String {
    match ty {
        "decimal" => "decimal128".into(),
        "object_id" => "objectId".into(),
        other => other.trim_end_matches('?').to_string(),
    }
}
