//! How a realm looks in PostgreSQL, and the SQL that mirrors feed instructions into it: pure
//! functions from instructions to statements, no connection.
//!
//! - A realm path gets a schema (`schema_name`), recorded in `objsync_realms`.
//! - A type gets a table named after it: its primary key as the primary key, or `_id text`
//!   (the engine id `peer:seq`) for a type without one; a column per scalar property, of the
//!   SQL type that fits ([`sql_type`]); a link is a column holding the target's key.
//! - A list property gets a table `<Type>_<property>(owner, idx, value)`, `(owner, idx)` its
//!   primary key, deferred so that shifting indices inside a statement is allowed.
//!
//! Every value travels as a text parameter cast in SQL (`$1::text::bigint`,
//! `to_timestamp($1::text::double precision / 1000)`, `decode($1::text, 'base64')`), so one
//! parameter type carries every JSON form of the feed (spec/feed.md section 3).

use objsync::feed::{FeedInstruction, FeedProperty};
use objsync::Name;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// One type as the connector knows it: what `ADD_TYPE` and `ADD_PROPERTIES` said.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TypeDef {
    /// The primary-key property, if the type has one.
    pub primary_key: Option<Name>,
    /// Every property, the primary key included, in schema order.
    pub properties: indexmap::IndexMap<Name, FeedProperty>,
}

/// A realm's types, by name.
pub type Types = BTreeMap<Name, TypeDef>;

/// A statement and its text parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// The SQL, with `$1`, `$2`, ... placeholders.
    pub sql: String,
    /// The parameters, as text (`None`: SQL NULL).
    pub params: Vec<Option<String>>,
}

/// What an instruction becomes: schema changes (run before anything is prepared against the
/// tables they make) and row changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// DDL, run as it is.
    Ddl(String),
    /// A row change.
    Dml(Stmt),
    /// A type's definition changed: record it (`objsync_types`).
    Defined(Name),
}

/// The PostgreSQL identifier limit (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// The schema of the realm at `path`: the path without its leading `/` when it fits in an
/// identifier, else its first 46 bytes and a hash of the whole (distinct paths, distinct
/// schemas).
pub fn schema_name(path: &str) -> String {
    let name = path.trim_start_matches('/');
    if name.len() <= MAX_IDENT {
        return name.to_string();
    }
    let mut cut = 46;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}_{hash:016x}", &name[..cut])
}

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, quoted.
pub fn table(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// The table of a list property.
pub fn list_table(ty: &str, prop: &str) -> String {
    format!("{ty}_{prop}")
}

/// The key column of the tables of types without a primary key: the engine id, as text.
pub const ENGINE_KEY_COLUMN: &str = "_id";

/// The key column of a type: its primary key, or `_id` for engine ids.
pub fn key_column(def: &TypeDef) -> &str {
    def.primary_key.as_deref().unwrap_or(ENGINE_KEY_COLUMN)
}

/// The SQL type of a scalar type name as the feed writes it (`int`, `objectId`, ...).
pub fn sql_type(scalar: &str) -> &'static str {
    match scalar {
        "int" => "bigint",
        "bool" => "boolean",
        "float" => "real",
        "double" => "double precision",
        "date" => "timestamptz",
        "data" => "bytea",
        "decimal128" => "numeric",
        // string, objectId (24 hex digits), and engine ids
        _ => "text",
    }
}

/// The scalar type name of a type's key: its primary key's type, or `string` for engine ids.
pub fn key_scalar<'t>(types: &'t Types, ty: &str) -> &'t str {
    types.get(ty).map_or("string", own_key_scalar)
}

/// The scalar type name of `def`'s key.
pub fn own_key_scalar(def: &TypeDef) -> &str {
    let pk = (def.primary_key.as_ref()).and_then(|pk| def.properties.get(pk));
    pk.map_or("string", |p| p.ty.as_str())
}

/// The scalar type name a property's values (a list's elements) are stored as: a link's is
/// its target's key.
pub fn value_scalar<'t>(types: &'t Types, prop: &'t FeedProperty) -> &'t str {
    let target = prop.object_type.as_deref();
    match (prop.ty.as_str(), target) {
        ("object", Some(t)) => key_scalar(types, t),
        ("list", Some(t)) if is_scalar(t) => t,
        ("list", Some(t)) => key_scalar(types, t),
        (t, _) => t,
    }
}

fn is_scalar(name: &str) -> bool {
    sql_type(name) != "text" || name == "string" || name == "objectId"
}

/// The SQL expression that turns text parameter `n` into a value of `scalar`.
pub fn cast(scalar: &str, n: usize) -> String {
    match scalar {
        "date" => format!("to_timestamp(${n}::text::double precision / 1000)"),
        "data" => format!("decode(${n}::text, 'base64')"),
        s => match sql_type(s) {
            "text" => format!("${n}::text"),
            t => format!("${n}::text::{t}"),
        },
    }
}

/// The SQL expression that reads column `col` of `scalar` back as the text of its feed JSON
/// form (the inverse of [`cast`]).
pub fn read(scalar: &str, col: &str) -> String {
    let c = ident(col);
    match scalar {
        "date" => format!("(extract(epoch from {c}) * 1000)::bigint::text"),
        "data" => format!("encode({c}, 'base64')"),
        _ => format!("{c}::text"),
    }
}

/// A feed JSON value as a text parameter.
pub fn text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The JSON form of a text read back with [`read`].
pub fn json(scalar: &str, text: Option<String>) -> Json {
    let Some(t) = text else { return Json::Null };
    match scalar {
        "int" | "date" => t.parse::<i64>().map_or(Json::Null, Json::from),
        "bool" => Json::Bool(t == "true"),
        "float" | "double" => t.parse::<f64>().map_or(Json::Null, Json::from),
        _ => Json::String(t),
    }
}

/// The SQL for one instruction of the realm whose schema is `schema`; `types` learns the
/// types it defines.
pub fn translate(
    schema: &str,
    types: &mut Types,
    instruction: &FeedInstruction,
) -> Result<Vec<Step>, String> {
    use FeedInstruction as I;
    let def = |types: &Types, ty: &str| {
        (types.get(ty).cloned()).ok_or_else(|| format!("type {ty} is not defined"))
    };
    Ok(match instruction {
        I::AddType {
            object_type,
            primary_key,
            properties,
        } => {
            let new = TypeDef {
                primary_key: primary_key.clone(),
                properties: properties.clone(),
            };
            // Known before its columns are made: a type may link to itself.
            types.insert(object_type.clone(), new.clone());
            let mut steps = create_type(schema, types, object_type, &new);
            steps.push(Step::Defined(object_type.clone()));
            steps
        }
        I::AddProperties {
            object_type,
            properties,
        } => {
            let mut d = def(types, object_type)?;
            let mut steps = Vec::new();
            for (name, prop) in properties {
                steps.extend(add_property(schema, types, object_type, &d, name, prop)?);
                d.properties.insert(name.clone(), prop.clone());
            }
            types.insert(object_type.clone(), d);
            steps.push(Step::Defined(object_type.clone()));
            steps
        }
        I::Insert {
            object_type,
            identity,
            values,
        } => vec![Step::Dml(upsert(
            schema,
            types,
            object_type,
            &def(types, object_type)?,
            identity,
            values,
        ))],
        I::Set {
            object_type,
            identity,
            values,
        } => vec![Step::Dml(update(
            schema,
            types,
            object_type,
            &def(types, object_type)?,
            identity,
            values,
        ))],
        I::Delete {
            object_type,
            identity,
        } => delete(
            schema,
            types,
            object_type,
            &def(types, object_type)?,
            identity,
        ),
        other => list_steps(schema, types, other)?,
    })
}

fn create_type(schema: &str, types: &Types, ty: &str, def: &TypeDef) -> Vec<Step> {
    let key = key_column(def);
    let key_type = sql_type(own_key_scalar(def));
    let mut columns = vec![format!("{} {key_type} PRIMARY KEY", ident(key))];
    let mut lists = Vec::new();
    for (name, prop) in &def.properties {
        if Some(name) == def.primary_key.as_ref() {
            continue;
        }
        if prop.ty == "list" {
            lists.push(create_list(schema, types, ty, def, name, prop));
        } else {
            let t = sql_type(value_scalar(types, prop));
            columns.push(format!("{} {t}", ident(name)));
        }
    }
    let t = table(schema, ty);
    let mut steps = vec![
        Step::Ddl(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema))),
        Step::Ddl(format!(
            "CREATE TABLE IF NOT EXISTS {t} ({})",
            columns.join(", ")
        )),
        Step::Ddl(capture_trigger(&t, key)),
    ];
    steps.extend(lists);
    steps
}

fn create_list(
    schema: &str,
    types: &Types,
    ty: &str,
    def: &TypeDef,
    prop: &str,
    p: &FeedProperty,
) -> Step {
    let owner = sql_type(own_key_scalar(def));
    let value = sql_type(value_scalar(types, p));
    let t = table(schema, &list_table(ty, prop));
    Step::Ddl(format!(
        "CREATE TABLE IF NOT EXISTS {t} (owner {owner} NOT NULL, idx integer NOT NULL, \
         value {value}, PRIMARY KEY (owner, idx) DEFERRABLE INITIALLY DEFERRED); {}",
        capture_trigger(&t, "owner")
    ))
}

/// The trigger that records changes made by other programs into the outbox (the function is
/// made once, by `outbox::install`).
fn capture_trigger(table: &str, key: &str) -> String {
    format!(
        "CREATE OR REPLACE TRIGGER objsync_capture AFTER INSERT OR UPDATE OR DELETE ON {table} \
         FOR EACH ROW EXECUTE FUNCTION objsync_capture('{}')",
        key.replace('\'', "''")
    )
}

fn add_property(
    schema: &str,
    types: &Types,
    ty: &str,
    def: &TypeDef,
    name: &str,
    prop: &FeedProperty,
) -> Result<Vec<Step>, String> {
    if prop.ty == "list" {
        return Ok(vec![create_list(schema, types, ty, def, name, prop)]);
    }
    let scalar = value_scalar(types, prop);
    let t = table(schema, ty);
    let col = ident(name);
    let mut steps = vec![Step::Ddl(format!(
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {col} {}",
        sql_type(scalar)
    ))];
    // Existing objects hold the property's default.
    let default = prop.prop_type().map_err(|e| e.to_string())?.default_value();
    let default = text(&objsync::json::value_to_json(&default));
    if default.is_some() {
        steps.push(Step::Dml(Stmt {
            sql: format!("UPDATE {t} SET {col} = {}", cast(scalar, 1)),
            params: vec![default],
        }));
    }
    Ok(steps)
}

/// The columns and parameters of `values`, from parameter `first` on.
fn assignments(
    types: &Types,
    def: &TypeDef,
    values: &objsync::feed::Values,
    first: usize,
) -> (Vec<(String, String)>, Vec<Option<String>>) {
    let mut cols = Vec::new();
    let mut params = Vec::new();
    for (name, value) in values {
        let Some(prop) = def.properties.get(name) else {
            continue;
        };
        cols.push((
            ident(name),
            cast(value_scalar(types, prop), first + params.len()),
        ));
        params.push(text(value));
    }
    (cols, params)
}

fn upsert(
    schema: &str,
    types: &Types,
    ty: &str,
    def: &TypeDef,
    identity: &Json,
    values: &objsync::feed::Values,
) -> Stmt {
    let (cols, mut rest) = assignments(types, def, values, 2);
    let key = ident(key_column(def));
    let mut names = vec![key.clone()];
    let mut exprs = vec![cast(key_scalar(types, ty), 1)];
    names.extend(cols.iter().map(|(c, _)| c.clone()));
    exprs.extend(cols.iter().map(|(_, e)| e.clone()));
    let on_conflict = if cols.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let sets: Vec<String> = cols
            .iter()
            .map(|(c, _)| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!("DO UPDATE SET {}", sets.join(", "))
    };
    let mut params = vec![text(identity)];
    params.append(&mut rest);
    Stmt {
        sql: format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({key}) {on_conflict}",
            table(schema, ty),
            names.join(", "),
            exprs.join(", ")
        ),
        params,
    }
}

fn update(
    schema: &str,
    types: &Types,
    ty: &str,
    def: &TypeDef,
    identity: &Json,
    values: &objsync::feed::Values,
) -> Stmt {
    let (cols, mut rest) = assignments(types, def, values, 2);
    let sets: Vec<String> = cols.iter().map(|(c, e)| format!("{c} = {e}")).collect();
    let mut params = vec![text(identity)];
    params.append(&mut rest);
    Stmt {
        sql: format!(
            "UPDATE {} SET {} WHERE {} = {}",
            table(schema, ty),
            sets.join(", "),
            ident(key_column(def)),
            cast(key_scalar(types, ty), 1)
        ),
        params,
    }
}

fn delete(schema: &str, types: &Types, ty: &str, def: &TypeDef, identity: &Json) -> Vec<Step> {
    let key = cast(key_scalar(types, ty), 1);
    let mut steps: Vec<Step> = (def.properties.iter())
        .filter(|(_, p)| p.ty == "list")
        .map(|(name, _)| {
            Step::Dml(Stmt {
                sql: format!(
                    "DELETE FROM {} WHERE owner = {key}",
                    table(schema, &list_table(ty, name))
                ),
                params: vec![text(identity)],
            })
        })
        .collect();
    steps.push(Step::Dml(Stmt {
        sql: format!(
            "DELETE FROM {} WHERE {} = {key}",
            table(schema, ty),
            ident(key_column(def))
        ),
        params: vec![text(identity)],
    }));
    steps
}

fn list_steps(schema: &str, types: &Types, i: &FeedInstruction) -> Result<Vec<Step>, String> {
    use FeedInstruction as I;
    let (ty, identity, prop) = match i {
        I::ListInsert {
            object_type,
            identity,
            property,
            ..
        }
        | I::ListSet {
            object_type,
            identity,
            property,
            ..
        }
        | I::ListErase {
            object_type,
            identity,
            property,
            ..
        }
        | I::ListMove {
            object_type,
            identity,
            property,
            ..
        }
        | I::ListClear {
            object_type,
            identity,
            property,
        } => (object_type, identity, property),
        _ => return Ok(Vec::new()),
    };
    let def = types
        .get(&**ty)
        .ok_or_else(|| format!("type {ty} is not defined"))?;
    let p = def
        .properties
        .get(&**prop)
        .ok_or_else(|| format!("{ty}.{prop} is not defined"))?;
    let t = table(schema, &list_table(ty, prop));
    let owner = cast(key_scalar(types, ty), 1);
    let value = cast(value_scalar(types, p), 3);
    let key = text(identity);
    let stmt = |sql: String, params: Vec<Option<String>>| Step::Dml(Stmt { sql, params });
    let at = |n: usize| Some(n.to_string());
    let element = |e: &objsync::feed::Element| match e {
        objsync::feed::Element::Value(v) | objsync::feed::Element::Object(v) => text(v),
    };
    Ok(match i {
        I::ListInsert {
            list_index,
            element: e,
            ..
        } => vec![
            stmt(
                format!("UPDATE {t} SET idx = idx + 1 WHERE owner = {owner} AND idx >= $2::text::integer"),
                vec![key.clone(), at(*list_index)],
            ),
            stmt(
                format!("INSERT INTO {t} (owner, idx, value) VALUES ({owner}, $2::text::integer, {value})"),
                vec![key, at(*list_index), element(e)],
            ),
        ],
        I::ListSet {
            list_index,
            element: e,
            ..
        } => vec![stmt(
            format!("UPDATE {t} SET value = {value} WHERE owner = {owner} AND idx = $2::text::integer"),
            vec![key, at(*list_index), element(e)],
        )],
        I::ListErase { list_index, .. } => vec![
            stmt(
                format!("DELETE FROM {t} WHERE owner = {owner} AND idx = $2::text::integer"),
                vec![key.clone(), at(*list_index)],
            ),
            stmt(
                format!("UPDATE {t} SET idx = idx - 1 WHERE owner = {owner} AND idx > $2::text::integer"),
                vec![key, at(*list_index)],
            ),
        ],
        I::ListMove {
            list_index,
            new_index,
            ..
        } => {
            let (from, to) = (*list_index, *new_index);
            // The elements between the two places move one step toward where it was.
            let shift = if from < to {
                "idx - 1 WHERE owner = {owner} AND idx > $2::text::integer AND idx <= $3::text::integer"
            } else {
                "idx + 1 WHERE owner = {owner} AND idx >= $3::text::integer AND idx < $2::text::integer"
            }
            .replace("{owner}", &owner);
            vec![
                stmt(
                    format!("UPDATE {t} SET idx = -1 WHERE owner = {owner} AND idx = $2::text::integer"),
                    vec![key.clone(), at(from)],
                ),
                stmt(
                    format!("UPDATE {t} SET idx = {shift}"),
                    vec![key.clone(), at(from), at(to)],
                ),
                stmt(
                    format!("UPDATE {t} SET idx = $2::text::integer WHERE owner = {owner} AND idx = -1"),
                    vec![key, at(to)],
                ),
            ]
        }
        I::ListClear { .. } => vec![stmt(
            format!("DELETE FROM {t} WHERE owner = {owner}"),
            vec![key],
        )],
        _ => Vec::new(),
    })
}

/// The most rows one coalesced INSERT carries.
const MAX_ROWS: usize = 256;

/// Coalesces runs of consecutive upserts of the same shape (same SQL, as [`translate`] makes
/// for `INSERT`s into one table with the same columns) into multi-row INSERTs, in order: one
/// statement for up to 256 rows instead of one each. A run stops at a key it already
/// holds, since one INSERT ... ON CONFLICT DO UPDATE may not touch a row twice. Runs are cut
/// into powers of two so that few distinct statements get prepared.
pub fn coalesce(pending: Vec<Stmt>) -> Vec<Stmt> {
    let mut out = Vec::with_capacity(pending.len());
    let mut run: Vec<Stmt> = Vec::new();
    for stmt in pending {
        let joins = run.first().is_some_and(|first| {
            first.sql == stmt.sql
                && run.len() < MAX_ROWS
                && !run.iter().any(|r| r.params.first() == stmt.params.first())
        });
        if !joins {
            emit(&mut out, std::mem::take(&mut run));
        }
        if upsert_parts(&stmt.sql).is_some() {
            run.push(stmt);
        } else {
            out.push(stmt);
        }
    }
    emit(&mut out, run);
    out
}

/// `INSERT INTO t (cols) VALUES ` , the row's expressions, and ` ON CONFLICT ...`.
fn upsert_parts(sql: &str) -> Option<(&str, &str, &str)> {
    if !sql.starts_with("INSERT INTO ") {
        return None;
    }
    let (head, rest) = sql.split_once(" VALUES (")?;
    let (row, tail) = rest.split_once(") ON CONFLICT ")?;
    Some((head, row, tail))
}

fn emit(out: &mut Vec<Stmt>, mut run: Vec<Stmt>) {
    while !run.is_empty() {
        let n = 1 << run.len().ilog2();
        let rest = run.split_off(n);
        out.push(merge(run));
        run = rest;
    }
}

/// One INSERT of every row of `run` (statements of one shape), its placeholders renumbered.
fn merge(mut run: Vec<Stmt>) -> Stmt {
    if run.len() == 1 {
        return run.pop().expect("one statement");
    }
    let sql = &run[0].sql;
    let (head, row, tail) = upsert_parts(sql).expect("a run holds upserts");
    let width = run[0].params.len();
    let rows: Vec<String> = (0..run.len())
        .map(|i| format!("({})", renumber(row, i * width)))
        .collect();
    let sql = format!("{head} VALUES {} ON CONFLICT {tail}", rows.join(", "));
    let params = run.into_iter().flat_map(|s| s.params).collect();
    Stmt { sql, params }
}

/// `row` with every placeholder `$n` made `$(n + by)`.
fn renumber(row: &str, by: usize) -> String {
    let mut out = String::with_capacity(row.len() + 8);
    let mut chars = row.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = 0;
        let mut digits = false;
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            n = n * 10 + d.to_digit(10).unwrap_or(0) as usize;
            digits = true;
            chars.next();
        }
        if digits {
            out.push_str(&(n + by).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use objsync::feed::Element;
    use serde_json::json;

    fn prop(ty: &str, object_type: Option<&str>, optional: bool) -> FeedProperty {
        FeedProperty {
            ty: ty.into(),
            object_type: object_type.map(Into::into),
            optional,
        }
    }

    fn person() -> FeedInstruction {
        FeedInstruction::AddType {
            object_type: "Person".into(),
            primary_key: Some("id".into()),
            properties: [
                ("id".into(), prop("int", None, false)),
                ("best".into(), prop("object", Some("Person"), true)),
                ("tags".into(), prop("list", Some("string"), false)),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn ddl(steps: &[Step]) -> Vec<&str> {
        (steps.iter())
            .filter_map(|s| match s {
                Step::Ddl(d) => Some(d.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn long_paths_get_distinct_schemas_within_the_identifier_limit() {
        assert_eq!(schema_name("/shop/a"), "shop/a");
        let a = format!("/{}/a", "x".repeat(80));
        let b = format!("/{}/b", "x".repeat(80));
        assert!(schema_name(&a).len() <= MAX_IDENT);
        assert_ne!(schema_name(&a), schema_name(&b));
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn a_type_becomes_a_table_a_self_link_its_key_type_and_a_list_a_table() {
        let mut types = Types::new();
        let steps = translate("s", &mut types, &person()).unwrap();
        let ddl = ddl(&steps);
        assert!(ddl.iter().any(|d| d.contains(
            "CREATE TABLE IF NOT EXISTS \"s\".\"Person\" (\"id\" bigint PRIMARY KEY, \"best\" bigint)"
        )));
        assert!(ddl.iter().any(|d| d.contains(
            "\"s\".\"Person_tags\" (owner bigint NOT NULL, idx integer NOT NULL, value text"
        )));
        assert_eq!(steps.last(), Some(&Step::Defined("Person".into())));
        // A new non-optional property: a column, and the default for existing rows.
        let add = FeedInstruction::AddProperties {
            object_type: "Person".into(),
            properties: [("age".into(), prop("int", None, false))]
                .into_iter()
                .collect(),
        };
        let steps = translate("s", &mut types, &add).unwrap();
        assert!(
            matches!(&steps[0], Step::Ddl(d) if d.contains("ADD COLUMN IF NOT EXISTS \"age\" bigint"))
        );
        assert!(matches!(&steps[1], Step::Dml(s) if s.params == vec![Some("0".to_string())]));
        assert!(types["Person"].properties.contains_key("age"));
    }

    #[test]
    fn values_travel_as_text_cast_in_sql() {
        let mut types = Types::new();
        translate("s", &mut types, &person()).unwrap();
        let insert = FeedInstruction::Insert {
            object_type: "Person".into(),
            identity: json!(7),
            values: [("best".into(), json!(7))].into_iter().collect(),
        };
        let steps = translate("s", &mut types, &insert).unwrap();
        let Step::Dml(stmt) = &steps[0] else {
            panic!("a row")
        };
        assert_eq!(
            stmt.sql,
            "INSERT INTO \"s\".\"Person\" (\"id\", \"best\") VALUES ($1::text::bigint, $2::text::bigint) \
             ON CONFLICT (\"id\") DO UPDATE SET \"best\" = EXCLUDED.\"best\""
        );
        assert_eq!(stmt.params, vec![Some("7".into()), Some("7".into())]);
        assert_eq!(
            cast("date", 2),
            "to_timestamp($2::text::double precision / 1000)"
        );
        assert_eq!(json("date", Some("1500".into())), json!(1500));
        assert_eq!(json("bool", Some("true".into())), json!(true));
        assert_eq!(json("int", None), Json::Null);
        assert_eq!(text(&json!("x")), Some("x".into()));
        // A list move shifts the elements between its two places.
        let mv = FeedInstruction::ListMove {
            object_type: "Person".into(),
            identity: json!(7),
            property: "tags".into(),
            list_index: 3,
            new_index: 1,
        };
        let steps = translate("s", &mut types, &mv).unwrap();
        assert_eq!(steps.len(), 3);
        assert!(
            matches!(&steps[1], Step::Dml(s) if s.sql.contains("idx + 1") && s.params[1..] == [Some("3".into()), Some("1".into())])
        );
        let unknown = FeedInstruction::ListInsert {
            object_type: "Nobody".into(),
            identity: json!(1),
            property: "p".into(),
            list_index: 0,
            element: Element::Value(json!(1)),
        };
        assert!(translate("s", &mut types, &unknown).is_err());
    }

    #[test]
    fn runs_of_upserts_become_multi_row_inserts_in_order() {
        let up = |k: &str, v: &str| Stmt {
            sql: "INSERT INTO \"s\".\"T\" (\"id\", \"v\") VALUES ($1::text::bigint, $2::text) \
                  ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""
                .into(),
            params: vec![Some(k.into()), Some(v.into())],
        };
        let other = Stmt {
            sql: "DELETE FROM \"s\".\"T\" WHERE \"id\" = $1::text::bigint".into(),
            params: vec![Some("9".into())],
        };
        let pending = vec![
            up("1", "a"),
            up("2", "b"),
            up("3", "c"),
            other.clone(),
            up("1", "d"),
            up("1", "e"),
        ];
        let out = coalesce(pending);
        // 3 = 2 + 1 (powers of two), the delete, then the same key twice stays two statements.
        assert_eq!(out.len(), 5);
        assert!(out[0].sql.contains(
            "VALUES ($1::text::bigint, $2::text), ($3::text::bigint, $4::text) ON CONFLICT"
        ));
        assert_eq!(out[0].params.len(), 4);
        assert_eq!(out[1].params, vec![Some("3".into()), Some("c".into())]);
        assert_eq!(out[2], other);
        assert_eq!(out[3].params[1], Some("d".into()));
        assert_eq!(out[4].params[1], Some("e".into()));
        assert_eq!(renumber("f($1, $12) $x", 10), "f($11, $22) $x");
    }
}
