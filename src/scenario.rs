//! The conformance scenario format (spec/scenario-format.md): parsing a scenario file, running
//! it against replicas, and checking the result.
//!
//! A scenario names a number of clients, a list of steps (local transactions, uploads,
//! downloads, syncs) and optionally the state the server must end in. The runner executes the
//! steps, performs a closing full sync, checks that every client equals the server, and compares
//! the server's state with "expect". [`run`] returns an [`Outcome`] that the example binary maps
//! to exit codes 0 (pass), 1 (divergence or mismatch) and 2 (malformed scenario).

use crate::error::Error;
use crate::json::{key_from_json, state_json, value_from_json};
use crate::schema::{ObjectType, PropType, Property};
use crate::store::Store;
use crate::sync::{Client, Server, SyncError};
use crate::transaction::Transaction;
use crate::value::{ObjKey, Value};
use crate::PeerId;
use serde_json::{Map, Value as Json};
use std::fmt;

/// The result of running one scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every check passed; the final server state.
    Pass(Json),
    /// A divergence or an "expect" mismatch: the final server state and a readable report.
    Fail {
        /// The server's final state.
        state: Json,
        /// What differed, one finding per line.
        report: String,
    },
    /// The scenario itself is invalid; the reason in one line.
    Malformed(String),
}

impl Outcome {
    /// The runner's exit status for this outcome: 0, 1 or 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Pass(_) => 0,
            Outcome::Fail { .. } => 1,
            Outcome::Malformed(_) => 2,
        }
    }
}

/// A malformed scenario: the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(msg.into()))
}

/// One parsed step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A local transaction of `client` at `time` with its ops.
    Tx {
        /// The client (1-based).
        client: usize,
        /// The origin timestamp.
        time: u64,
        /// The ops.
        ops: Vec<ScenarioOp>,
    },
    /// Upload everything the server has not integrated.
    Upload(usize),
    /// Download every (or the next `count`) server changesets.
    Download {
        /// The client.
        client: usize,
        /// How many changesets at most; `None` for all.
        count: Option<usize>,
    },
    /// Upload each client in order, then download each in order.
    Sync(Vec<usize>),
}

/// One op of a transaction, with its values still in JSON (they are read against the writer's
/// schema when the op runs).
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioOp {
    /// add_type.
    AddType {
        /// Type name.
        ty: String,
        /// Primary key property.
        primary_key: Option<String>,
        /// Property name to type string.
        properties: Vec<(String, String)>,
    },
    /// add_properties.
    AddProperties {
        /// Type name.
        ty: String,
        /// Property name to type string.
        properties: Vec<(String, String)>,
    },
    /// insert (pk absent for types without a primary key).
    Insert {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Option<Json>,
        /// Values to set.
        values: Vec<(String, Json)>,
    },
    /// set.
    Set {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// Values to set.
        values: Vec<(String, Json)>,
        /// A default-value write.
        default: bool,
    },
    /// add_int.
    AddInt {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// Property.
        property: String,
        /// Amount.
        value: i64,
    },
    /// delete.
    Delete {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
    },
    /// clear.
    Clear {
        /// Type name.
        ty: String,
    },
    /// list_insert.
    ListInsert {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
        /// Index.
        index: usize,
        /// Value.
        value: Json,
    },
    /// list_set.
    ListSet {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
        /// Index.
        index: usize,
        /// Value.
        value: Json,
    },
    /// list_erase.
    ListErase {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
        /// Index.
        index: usize,
    },
    /// list_move.
    ListMove {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
        /// From index.
        from: usize,
        /// To index.
        to: usize,
    },
    /// list_clear.
    ListClear {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
    },
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Free text.
    pub description: Option<String>,
    /// Number of clients (peer ids 1..=clients).
    pub clients: usize,
    /// The steps.
    pub steps: Vec<Step>,
    /// Run once per permutation of the client order inside sync steps.
    pub permute: bool,
    /// Skip invalid ops instead of failing.
    pub lenient: bool,
    /// An error the run must hit.
    pub expect_error: Option<String>,
    /// Expected server state (partial).
    pub expect: Option<Map<String, Json>>,
}

/// The error names "expect_error" accepts.
pub const EXPECTABLE_ERRORS: &[&str] = &["schema_mismatch"];

struct Fields<'a> {
    obj: &'a Map<String, Json>,
    what: String,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Result<&'a Json, Malformed> {
        self.obj
            .get(name)
            .ok_or_else(|| Malformed(format!("{}: missing \"{name}\"", self.what)))
    }
    fn str(&self, name: &str) -> Result<String, Malformed> {
        self.get(name)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Malformed(format!("{}: \"{name}\" must be a string", self.what)))
    }
    fn uint(&self, name: &str) -> Result<u64, Malformed> {
        self.get(name)?.as_u64().ok_or_else(|| {
            Malformed(format!(
                "{}: \"{name}\" must be a non-negative integer",
                self.what
            ))
        })
    }
    fn index(&self, name: &str) -> Result<usize, Malformed> {
        usize::try_from(self.uint(name)?)
            .map_err(|_| Malformed(format!("{}: \"{name}\" is too large", self.what)))
    }
    fn map(&self, name: &str) -> Result<Vec<(String, Json)>, Malformed> {
        match self.get(name)? {
            Json::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            _ => malformed(format!("{}: \"{name}\" must be an object", self.what)),
        }
    }
    fn type_map(&self, name: &str) -> Result<Vec<(String, String)>, Malformed> {
        self.map(name)?
            .into_iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k, s)),
                _ => malformed(format!(
                    "{}: property \"{k}\" must have a type string",
                    self.what
                )),
            })
            .collect()
    }
}

fn parse_op(json: &Json, what: &str) -> Result<ScenarioOp, Malformed> {
    let Json::Object(obj) = json else {
        return malformed(format!("{what}: an op must be an object"));
    };
    let f = Fields {
        obj,
        what: what.to_string(),
    };
    let op = f.str("op")?;
    let f = Fields {
        obj,
        what: format!("{what} ({op})"),
    };
    Ok(match op.as_str() {
        "add_type" => ScenarioOp::AddType {
            ty: f.str("type")?,
            primary_key: match obj.get("primary_key") {
                None | Some(Json::Null) => None,
                Some(_) => Some(f.str("primary_key")?),
            },
            properties: f.type_map("properties")?,
        },
        "add_properties" => ScenarioOp::AddProperties {
            ty: f.str("type")?,
            properties: f.type_map("properties")?,
        },
        "insert" => ScenarioOp::Insert {
            ty: f.str("type")?,
            pk: obj.get("pk").cloned(),
            values: if obj.contains_key("values") {
                f.map("values")?
            } else {
                Vec::new()
            },
        },
        "set" => ScenarioOp::Set {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            values: f.map("values")?,
            default: match obj.get("default") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(_) => return malformed(format!("{}: \"default\" must be a bool", f.what)),
            },
        },
        "add_int" => ScenarioOp::AddInt {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
            value: f
                .get("value")?
                .as_i64()
                .ok_or_else(|| Malformed(format!("{}: \"value\" must be an integer", f.what)))?,
        },
        "delete" => ScenarioOp::Delete {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
        },
        "clear" => ScenarioOp::Clear { ty: f.str("type")? },
        "list_insert" => ScenarioOp::ListInsert {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
            index: f.index("index")?,
            value: f.get("value")?.clone(),
        },
        "list_set" => ScenarioOp::ListSet {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
            index: f.index("index")?,
            value: f.get("value")?.clone(),
        },
        "list_erase" => ScenarioOp::ListErase {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
            index: f.index("index")?,
        },
        "list_move" => ScenarioOp::ListMove {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
            from: f.index("from")?,
            to: f.index("to")?,
        },
        "list_clear" => ScenarioOp::ListClear {
            ty: f.str("type")?,
            pk: f.get("pk")?.clone(),
            property: f.str("property")?,
        },
        other => return malformed(format!("{what}: unknown op \"{other}\"")),
    })
}

fn client_ref(json: &Json, clients: usize, what: &str) -> Result<usize, Malformed> {
    match json.as_u64() {
        Some(k) if k >= 1 && (k as usize) <= clients => Ok(k as usize),
        _ => malformed(format!(
            "{what}: client must be an integer between 1 and {clients}"
        )),
    }
}

/// Parses a JSON array of ops in the scenario format's op syntax (what one transaction of a
/// scenario holds), e.g. for a tool that applies a file of ops as one transaction.
pub fn parse_ops(text: &str) -> Result<Vec<ScenarioOp>, Malformed> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| Malformed(format!("invalid JSON: {e}")))?;
    let Json::Array(ops) = json else {
        return malformed("ops must be a JSON array");
    };
    ops.iter()
        .enumerate()
        .map(|(i, op)| parse_op(op, &format!("op {i}")))
        .collect()
}

/// Parses a scenario from JSON text.
pub fn parse(text: &str) -> Result<Scenario, Malformed> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| Malformed(format!("invalid JSON: {e}")))?;
    let Json::Object(top) = json else {
        return malformed("a scenario must be a JSON object");
    };
    let f = Fields {
        obj: &top,
        what: "scenario".to_string(),
    };
    let clients = f.uint("clients")?;
    if clients == 0 || clients > 64 {
        return malformed("scenario: \"clients\" must be between 1 and 64");
    }
    let clients = clients as usize;
    let bool_field = |name: &str| match top.get(name) {
        None => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(_) => malformed(format!("scenario: \"{name}\" must be a bool")),
    };
    let permute = bool_field("permute")?;
    let lenient = bool_field("lenient")?;
    let description = match top.get("description") {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return malformed("scenario: \"description\" must be a string"),
    };
    let expect_error = match top.get("expect_error") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if EXPECTABLE_ERRORS.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => {
            return malformed(format!(
                "scenario: unknown \"expect_error\" {other}; known: {}",
                EXPECTABLE_ERRORS.join(", ")
            ))
        }
    };
    let expect = match top.get("expect") {
        None | Some(Json::Null) => None,
        Some(Json::Object(m)) => {
            for (ty, objects) in m {
                let Json::Object(objects) = objects else {
                    return malformed(format!("expect: \"{ty}\" must map keys to objects"));
                };
                if let Some((k, _)) = objects.iter().find(|(_, v)| !v.is_object()) {
                    return malformed(format!("expect: {ty}[{k}] must be an object of properties"));
                }
            }
            Some(m.clone())
        }
        Some(_) => return malformed("scenario: \"expect\" must be an object"),
    };
    let Json::Array(raw_steps) = f.get("steps")? else {
        return malformed("scenario: \"steps\" must be an array");
    };
    let mut steps = Vec::new();
    for (i, s) in raw_steps.iter().enumerate() {
        let what = format!("step {}", i + 1);
        let Json::Object(obj) = s else {
            return malformed(format!("{what}: a step must be an object"));
        };
        let sf = Fields {
            obj,
            what: what.clone(),
        };
        let step = if let Some(c) = obj.get("client") {
            let client = client_ref(c, clients, &what)?;
            let time = sf.uint("time")?;
            let Json::Array(ops) = sf.get("tx")? else {
                return malformed(format!("{what}: \"tx\" must be an array of ops"));
            };
            let ops = ops
                .iter()
                .enumerate()
                .map(|(j, op)| parse_op(op, &format!("{what} op {}", j + 1)))
                .collect::<Result<_, _>>()?;
            Step::Tx { client, time, ops }
        } else if let Some(c) = obj.get("upload") {
            Step::Upload(client_ref(c, clients, &what)?)
        } else if let Some(c) = obj.get("download") {
            let count = match obj.get("count") {
                None => None,
                Some(_) => Some(sf.index("count")?),
            };
            Step::Download {
                client: client_ref(c, clients, &what)?,
                count,
            }
        } else if let Some(list) = obj.get("sync") {
            match list {
                Json::String(s) if s == "all" => Step::Sync((1..=clients).collect()),
                Json::Array(items) => Step::Sync(
                    items
                        .iter()
                        .map(|c| client_ref(c, clients, &what))
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return malformed(format!(
                        "{what}: \"sync\" must be \"all\" or an array of clients"
                    ))
                }
            }
        } else {
            return malformed(format!(
                "{what}: a step needs \"client\"/\"tx\", \"upload\", \"download\" or \"sync\""
            ));
        };
        steps.push(step);
    }
    Ok(Scenario {
        description,
        clients,
        steps,
        permute,
        lenient,
        expect_error,
        expect,
    })
}

/// Parses a property map of the scenario format into properties.
fn properties(list: &[(String, String)]) -> Result<Vec<Property>, Error> {
    list.iter()
        .map(|(name, t)| Ok(Property::new(name, PropType::parse(t)?)))
        .collect()
}

fn key_of<S: Store>(tx: &Transaction<'_, S>, ty: &str, pk: &Json) -> Result<ObjKey, Error> {
    key_from_json(tx.store().schema().get(ty)?, pk)
}

fn value_of<S: Store>(
    tx: &Transaction<'_, S>,
    ty: &str,
    prop: &str,
    json: &Json,
) -> Result<Value, Error> {
    let schema = tx.store().schema();
    let pt = schema.get(ty)?.property(prop)?;
    value_from_json(schema, ty, prop, pt, json)
}

/// Writes "values" of insert/set: scalars are set, lists are replaced (cleared and refilled).
fn set_values<S: Store>(
    tx: &mut Transaction<'_, S>,
    ty: &str,
    key: &ObjKey,
    values: &[(String, Json)],
    default: bool,
) -> Result<(), Error> {
    for (prop, json) in values {
        let pt = tx.store().schema().get(ty)?.property(prop)?.clone();
        if pt.list {
            let Json::Array(items) = json else {
                return Err(Error::TypeMismatch {
                    ty: ty.to_string(),
                    prop: prop.clone(),
                    expected: pt.to_string(),
                    found: json.to_string(),
                });
            };
            tx.list_clear(ty, key.clone(), prop)?;
            for (i, item) in items.iter().enumerate() {
                let v = value_of(tx, ty, prop, item)?;
                tx.list_insert(ty, key.clone(), prop, i, v)?;
            }
        } else {
            let v = value_of(tx, ty, prop, json)?;
            if default {
                tx.set_default(ty, key.clone(), prop, v)?;
            } else {
                tx.set(ty, key.clone(), prop, v)?;
            }
        }
    }
    Ok(())
}

/// Runs one op in a transaction.
pub fn run_op<S: Store>(tx: &mut Transaction<'_, S>, op: &ScenarioOp) -> Result<(), Error> {
    match op {
        ScenarioOp::AddType {
            ty,
            primary_key,
            properties: props,
        } => {
            let def = ObjectType::new(ty, primary_key.as_deref(), properties(props)?)?;
            tx.add_type(def)
        }
        ScenarioOp::AddProperties {
            ty,
            properties: props,
        } => tx.add_properties(ty, properties(props)?),
        ScenarioOp::Insert { ty, pk, values } => {
            let key = match pk {
                Some(pk) => {
                    let key = key_of(tx, ty, pk)?;
                    tx.insert(ty, key.clone())?;
                    key
                }
                None => tx.create(ty)?,
            };
            set_values(tx, ty, &key, values, false)
        }
        ScenarioOp::Set {
            ty,
            pk,
            values,
            default,
        } => {
            let key = key_of(tx, ty, pk)?;
            set_values(tx, ty, &key, values, *default)
        }
        ScenarioOp::AddInt {
            ty,
            pk,
            property,
            value,
        } => {
            let key = key_of(tx, ty, pk)?;
            tx.add_int(ty, key, property, *value)
        }
        ScenarioOp::Delete { ty, pk } => {
            let key = key_of(tx, ty, pk)?;
            tx.delete(ty, key)
        }
        ScenarioOp::Clear { ty } => tx.clear(ty),
        ScenarioOp::ListInsert {
            ty,
            pk,
            property,
            index,
            value,
        } => {
            let key = key_of(tx, ty, pk)?;
            let v = value_of(tx, ty, property, value)?;
            tx.list_insert(ty, key, property, *index, v)
        }
        ScenarioOp::ListSet {
            ty,
            pk,
            property,
            index,
            value,
        } => {
            let key = key_of(tx, ty, pk)?;
            let v = value_of(tx, ty, property, value)?;
            tx.list_set(ty, key, property, *index, v)
        }
        ScenarioOp::ListErase {
            ty,
            pk,
            property,
            index,
        } => {
            let key = key_of(tx, ty, pk)?;
            tx.list_erase(ty, key, property, *index)
        }
        ScenarioOp::ListMove {
            ty,
            pk,
            property,
            from,
            to,
        } => {
            let key = key_of(tx, ty, pk)?;
            tx.list_move(ty, key, property, *from, *to)
        }
        ScenarioOp::ListClear { ty, pk, property } => {
            let key = key_of(tx, ty, pk)?;
            tx.list_clear(ty, key, property)
        }
    }
}

/// The replicas of one run: the clients and the server, exchanging changesets in process.
struct World {
    clients: Vec<Client>,
    server: Server,
    /// Errors hit so far, by name ("schema_mismatch", ...), with the client that hit them.
    errors: Vec<(usize, String, String)>,
}

fn error_name(e: &SyncError) -> &'static str {
    match e.data_error() {
        Some(Error::SchemaMismatch { .. }) => "schema_mismatch",
        _ => "sync_error",
    }
}

impl World {
    fn new(clients: usize) -> World {
        World {
            clients: (1..=clients)
                .map(|k| Client::new(PeerId(k as u64)))
                .collect(),
            server: Server::new(),
            errors: Vec::new(),
        }
    }

    fn stopped(&self, client: usize) -> bool {
        self.clients[client - 1].failure().is_some() || self.errors.iter().any(|e| e.0 == client)
    }

    fn tx(
        &mut self,
        scenario: &Scenario,
        client: usize,
        time: u64,
        ops: &[ScenarioOp],
    ) -> Result<(), Malformed> {
        let lenient = scenario.lenient;
        let mut failure = None;
        let result = self.clients[client - 1].write(time, |tx| {
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) = tx.atomically(|tx| run_op(tx, op)) {
                    if !lenient {
                        failure =
                            Some(format!("client {client} at time {time}, op {}: {e}", i + 1));
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        match (result, failure) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(f)) => malformed(f),
            (Err(e), None) => malformed(format!("client {client} at time {time}: {e}")),
        }
    }

    /// Uploads; returns whether anything was sent.
    fn upload(&mut self, client: usize) -> bool {
        if self.stopped(client) {
            return false;
        }
        let c = &mut self.clients[client - 1];
        let up = c.upload();
        if up.changesets.is_empty() {
            return false;
        }
        match self.server.integrate(c.peer(), up) {
            Ok(ack) => c.acknowledge(ack),
            Err(e) => self
                .errors
                .push((client, error_name(&e).to_string(), e.to_string())),
        }
        true
    }

    /// Downloads; returns whether anything was received.
    fn download(&mut self, client: usize, count: Option<usize>) -> bool {
        if self.stopped(client) {
            return false;
        }
        let c = &mut self.clients[client - 1];
        let d = self.server.download(c.peer(), c.cursor(), count);
        let moved = !d.entries.is_empty();
        if let Err(e) = c.integrate(d) {
            self.errors
                .push((client, error_name(&e).to_string(), e.to_string()));
        }
        moved
    }
}

fn compare_expect(
    state: &Json,
    expect: &Map<String, Json>,
    schema: &crate::schema::Schema,
) -> Vec<String> {
    let mut findings = Vec::new();
    for (ty, objects) in expect {
        let Ok(def) = schema.get(ty) else {
            findings.push(format!("expect: type {ty} does not exist"));
            continue;
        };
        let actual = state
            .get(ty)
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(objects) = objects.as_object() else {
            continue;
        };
        let mut expected_keys = Vec::new();
        for (k, props) in objects {
            let key = match key_from_json(def, &Json::String(k.clone())) {
                Ok(key) => key,
                Err(e) => {
                    findings.push(format!("expect: {ty}[{k}]: {e}"));
                    continue;
                }
            };
            let rendered = key.render();
            expected_keys.push(rendered.clone());
            let Some(actual_obj) = actual.get(&rendered) else {
                findings.push(format!("expect: {ty}[{k}] is missing"));
                continue;
            };
            let Some(props) = props.as_object() else {
                continue;
            };
            for (prop, want) in props {
                let got = actual_obj.get(prop).cloned().unwrap_or(Json::Null);
                if !json_value_matches(schema, def, prop, want, &got) {
                    findings.push(format!(
                        "expect: {ty}[{k}].{prop}: expected {want}, got {got}"
                    ));
                }
            }
        }
        for k in actual.keys() {
            if !expected_keys.contains(k) {
                findings.push(format!("expect: {ty}[{k}] exists but is not expected"));
            }
        }
    }
    findings
}

/// Compares an expected JSON value with a rendered one by the property's type (numbers
/// numerically, decimals by value, keys in either form).
fn json_value_matches(
    schema: &crate::schema::Schema,
    def: &ObjectType,
    prop: &str,
    want: &Json,
    got: &Json,
) -> bool {
    let Ok(pt) = def.property(prop) else {
        return false;
    };
    let read = |j: &Json| value_from_json(schema, &def.name, prop, pt, j);
    if pt.list {
        match (want, got) {
            (Json::Array(a), Json::Array(b)) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .all(|(x, y)| matches!((read(x), read(y)), (Ok(x), Ok(y)) if x.semantic_eq(&y))),
            _ => false,
        }
    } else {
        matches!((read(want), read(got)), (Ok(x), Ok(y)) if x.semantic_eq(&y))
    }
}

/// Runs a parsed scenario once. With `order` (a permutation of 1..=clients) the clients inside
/// every sync step, and in the closing sync, are visited in that order; without it, in the order
/// the step lists them (and 1..=n for the closing sync).
fn run_once(scenario: &Scenario, order: Option<&[usize]>) -> Result<Outcome, Malformed> {
    let natural: Vec<usize> = (1..=scenario.clients).collect();
    let rank = |k: &usize| order.and_then(|o| o.iter().position(|x| x == k));
    let mut world = World::new(scenario.clients);
    for step in &scenario.steps {
        match step {
            Step::Tx { client, time, ops } => world.tx(scenario, *client, *time, ops)?,
            Step::Upload(k) => {
                world.upload(*k);
            }
            Step::Download { client, count } => {
                world.download(*client, *count);
            }
            Step::Sync(list) => {
                let mut list = list.clone();
                if order.is_some() {
                    list.sort_by_key(rank);
                }
                for k in &list {
                    world.upload(*k);
                }
                for k in &list {
                    world.download(*k, None);
                }
            }
        }
    }
    // The closing full sync: bounded, since every round that moves something integrates at
    // least one changeset and there are finitely many.
    let order = order.unwrap_or(&natural);
    for _ in 0..=(2 * scenario.steps.len() + 2) {
        let mut moved = false;
        for k in order {
            moved |= world.upload(*k);
        }
        for k in order {
            moved |= world.download(*k, None);
        }
        if !moved {
            break;
        }
    }
    let server_state =
        state_json(world.server.replica().store()).map_err(|e| Malformed(e.to_string()))?;
    let mut findings = Vec::new();
    for (i, c) in world.clients.iter().enumerate() {
        if world.stopped(i + 1) {
            continue;
        }
        let s = state_json(c.replica().store()).map_err(|e| Malformed(e.to_string()))?;
        if s != server_state {
            findings.push(format!(
                "client {} diverged from the server:\n  client {}\n  server {}",
                i + 1,
                crate::json::canonical(&s),
                crate::json::canonical(&server_state)
            ));
        }
    }
    if let Some(expect) = &scenario.expect {
        findings.extend(compare_expect(
            &server_state,
            expect,
            world.server.replica().store().schema(),
        ));
    }
    match &scenario.expect_error {
        Some(err) => {
            if !world.errors.iter().any(|e| &e.1 == err) {
                findings.push(format!("expected error \"{err}\" did not occur"));
            }
        }
        None => {
            for (client, _, msg) in &world.errors {
                findings.push(format!("client {client}: unexpected error: {msg}"));
            }
        }
    }
    Ok(if findings.is_empty() {
        Outcome::Pass(server_state)
    } else {
        Outcome::Fail {
            state: server_state,
            report: findings.join("\n"),
        }
    })
}

/// Every permutation of 1..=n, in lexicographic order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut p: Vec<usize> = (1..=n).collect();
    loop {
        out.push(p.clone());
        // Next lexicographic permutation.
        let Some(i) = (1..n).rev().find(|&i| p[i - 1] < p[i]) else {
            return out;
        };
        let j = (i..n).rev().find(|&j| p[j] > p[i - 1]).unwrap_or(i);
        p.swap(i - 1, j);
        p[i..].reverse();
    }
}

/// Most clients whose orders `permute` enumerates (8! = 40,320 runs).
pub const MAX_PERMUTED_CLIENTS: usize = 8;

/// Runs a parsed scenario: once, or once per permutation of the client order.
pub fn run_scenario(scenario: &Scenario) -> Outcome {
    let orders: Vec<Option<Vec<usize>>> = if scenario.permute {
        if scenario.clients > MAX_PERMUTED_CLIENTS {
            return Outcome::Malformed(format!(
                "permute is limited to {MAX_PERMUTED_CLIENTS} clients"
            ));
        }
        permutations(scenario.clients)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut first: Option<(Option<Vec<usize>>, Json)> = None;
    for order in orders {
        let outcome = match run_once(scenario, order.as_deref()) {
            Ok(o) => o,
            Err(Malformed(m)) => return Outcome::Malformed(m),
        };
        let state = match &outcome {
            Outcome::Pass(s) => s.clone(),
            Outcome::Fail { state, report } => {
                return Outcome::Fail {
                    state: state.clone(),
                    report: format!("with client order {order:?}:\n{report}"),
                }
            }
            Outcome::Malformed(_) => return outcome,
        };
        match &first {
            None => first = Some((order, state)),
            Some((o, s)) if *s != state => {
                let report = format!(
                    "the final state depends on the client order:\n  order {o:?}: {}\n  order {order:?}: {}",
                    crate::json::canonical(s),
                    crate::json::canonical(&state)
                );
                return Outcome::Fail { state, report };
            }
            Some(_) => {}
        }
    }
    match first {
        Some((_, s)) => Outcome::Pass(s),
        None => Outcome::Malformed("no run".to_string()),
    }
}

/// Runs a scenario given as JSON text.
pub fn run(text: &str) -> Outcome {
    let scenario = match parse(text) {
        Ok(s) => s,
        Err(Malformed(m)) => return Outcome::Malformed(m),
    };
    run_scenario(&scenario)
}
