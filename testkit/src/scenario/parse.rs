//! Reading a scenario file: the top-level keys and the steps (spec/scenario-format.md). The
//! ops of a transaction are the library's JSON writes ([`objsync::json::WriteOp`]).

use super::{malformed, Malformed};
use objsync::json::WriteOp;
use objsync::sync::ResetMode;
use serde_json::{Map, Value as Json};

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
    /// How clients are reset when they must be, unless a reset step says otherwise.
    pub reset_mode: ResetMode,
    /// Client k's user id at index k - 1 (`"u<k>"` unless `users` names it).
    pub users: Vec<String>,
    /// Clients that use the admin token (never checked).
    pub admins: Vec<usize>,
    /// Expected final states of single clients (partial, like `expect`).
    pub expect_client: Vec<ClientExpectation>,
}

/// A client (1-based) and the state it must end in (partial, like `expect`).
pub type ClientExpectation = (usize, Map<String, Json>);

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
        ops: Vec<WriteOp>,
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
    /// Save a replica, drop it, and load it from those bytes only.
    Restart(Who),
    /// The server compacts its history.
    Compact,
    /// A client that has neither written nor downloaded starts from the server's state.
    Bootstrap(usize),
    /// The server forgets its history up to its current version.
    Trim,
    /// Client k is reset from the server's current state.
    Reset {
        /// The client.
        client: usize,
        /// The mode; the scenario's `reset_mode` if `None`.
        mode: Option<ResetMode>,
    },
    /// A copy of the server is saved.
    Backup,
    /// The server is replaced by the latest backup.
    Restore,
}

/// A client (1-based) or the server, for steps that may name either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Client k.
    Client(usize),
    /// The server.
    Server,
}

/// The error names "expect_error" accepts.
pub const EXPECTABLE_ERRORS: &[&str] = &["schema_mismatch"];

/// One JSON object of the file, with where it is for messages.
struct Fields<'a> {
    obj: &'a Map<String, Json>,
    what: &'a str,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Result<&'a Json, Malformed> {
        (self.obj.get(name)).ok_or_else(|| Malformed(format!("{}: missing \"{name}\"", self.what)))
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

    fn flag(&self, name: &str) -> Result<bool, Malformed> {
        match self.obj.get(name) {
            None => Ok(false),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => malformed(format!("{}: \"{name}\" must be a bool", self.what)),
        }
    }

    /// A client number, 1..=clients.
    fn client(&self, json: &Json, clients: usize) -> Result<usize, Malformed> {
        match json.as_u64() {
            Some(k) if k >= 1 && k <= clients as u64 => Ok(k as usize),
            _ => malformed(format!(
                "{}: client must be an integer between 1 and {clients}",
                self.what
            )),
        }
    }
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
        what: "scenario",
    };
    let clients = f.uint("clients")?;
    if clients == 0 || clients > 64 {
        return malformed("scenario: \"clients\" must be between 1 and 64");
    }
    let clients = clients as usize;
    let description = match top.get("description") {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return malformed("scenario: \"description\" must be a string"),
    };
    let Json::Array(raw_steps) = f.get("steps")? else {
        return malformed("scenario: \"steps\" must be an array");
    };
    let steps = (raw_steps.iter().enumerate())
        .map(|(i, s)| parse_step(s, &format!("step {}", i + 1), clients))
        .collect::<Result<_, _>>()?;
    Ok(Scenario {
        description,
        clients,
        steps,
        permute: f.flag("permute")?,
        lenient: f.flag("lenient")?,
        expect_error: expect_error(&top)?,
        expect: expect(&top)?,
        reset_mode: match top.get("reset_mode") {
            None | Some(Json::Null) => ResetMode::default(),
            Some(m) => reset_mode(m, "scenario: \"reset_mode\"")?,
        },
        users: users(&top, clients)?,
        admins: match top.get("admins") {
            None => Vec::new(),
            Some(Json::Array(a)) => (a.iter())
                .map(|c| f.client(c, clients))
                .collect::<Result<_, _>>()?,
            Some(_) => return malformed("scenario: \"admins\" must be an array of clients"),
        },
        expect_client: expect_client(&top, clients)?,
    })
}

/// The `users` map: client number (as a string) to user id.
fn users(top: &Map<String, Json>, clients: usize) -> Result<Vec<String>, Malformed> {
    let mut users: Vec<String> = (1..=clients).map(|k| format!("u{k}")).collect();
    let Some(map) = top.get("users") else {
        return Ok(users);
    };
    let Json::Object(map) = map else {
        return malformed("scenario: \"users\" must map client numbers to user ids");
    };
    for (k, user) in map {
        let k = k
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=clients).contains(k));
        match (k, user) {
            (Some(k), Json::String(u)) if !u.is_empty() => users[k - 1] = u.clone(),
            _ => {
                return malformed(format!(
                    "scenario: \"users\" must map client numbers 1..={clients} to user ids"
                ))
            }
        }
    }
    Ok(users)
}

/// The `expect_client` map: client number (as a string) to an expected state.
fn expect_client(
    top: &Map<String, Json>,
    clients: usize,
) -> Result<Vec<ClientExpectation>, Malformed> {
    let Some(map) = top.get("expect_client") else {
        return Ok(Vec::new());
    };
    let Json::Object(map) = map else {
        return malformed("scenario: \"expect_client\" must map client numbers to states");
    };
    let mut out = Vec::new();
    for (k, state) in map {
        let Some(k) = k
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=clients).contains(k))
        else {
            return malformed(format!(
                "scenario: \"expect_client\" names client {k}, not one of 1..={clients}"
            ));
        };
        let mut one = Map::new();
        one.insert("expect".to_string(), state.clone());
        let Some(state) = expect(&one)? else {
            return malformed("scenario: \"expect_client\" states must be objects");
        };
        out.push((k, state));
    }
    Ok(out)
}

fn reset_mode(json: &Json, what: &str) -> Result<ResetMode, Malformed> {
    match json.as_str().and_then(ResetMode::parse) {
        Some(mode) => Ok(mode),
        None => malformed(format!(
            "{what} must be \"recover\", \"discard\" or \"manual\""
        )),
    }
}

/// A step naming the server: `{"<step>": "server"}`.
fn server_step(json: &Json, what: &str, name: &str, step: Step) -> Result<Step, Malformed> {
    match json {
        Json::String(s) if s == "server" => Ok(step),
        _ => malformed(format!("{what}: \"{name}\" must be \"server\"")),
    }
}

fn expect_error(top: &Map<String, Json>) -> Result<Option<String>, Malformed> {
    match top.get("expect_error") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if EXPECTABLE_ERRORS.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(other) => malformed(format!(
            "scenario: unknown \"expect_error\" {other}; known: {}",
            EXPECTABLE_ERRORS.join(", ")
        )),
    }
}

fn expect(top: &Map<String, Json>) -> Result<Option<Map<String, Json>>, Malformed> {
    match top.get("expect") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => {
            for (ty, objects) in m {
                let Json::Object(objects) = objects else {
                    return malformed(format!("expect: \"{ty}\" must map keys to objects"));
                };
                if let Some((k, _)) = objects.iter().find(|(_, v)| !v.is_object()) {
                    return malformed(format!("expect: {ty}[{k}] must be an object of properties"));
                }
            }
            Ok(Some(m.clone()))
        }
        Some(_) => malformed("scenario: \"expect\" must be an object"),
    }
}

fn parse_step(json: &Json, what: &str, clients: usize) -> Result<Step, Malformed> {
    let Json::Object(obj) = json else {
        return malformed(format!("{what}: a step must be an object"));
    };
    let f = Fields { obj, what };
    if let Some(c) = obj.get("client") {
        let client = f.client(c, clients)?;
        let time = f.uint("time")?;
        let Json::Array(ops) = f.get("tx")? else {
            return malformed(format!("{what}: \"tx\" must be an array of ops"));
        };
        let ops = (ops.iter().enumerate())
            .map(|(j, op)| {
                WriteOp::from_json(op).map_err(|e| Malformed(format!("{what} op {}: {e}", j + 1)))
            })
            .collect::<Result<_, _>>()?;
        return Ok(Step::Tx { client, time, ops });
    }
    if let Some(c) = obj.get("upload") {
        return Ok(Step::Upload(f.client(c, clients)?));
    }
    if let Some(c) = obj.get("download") {
        let count = match obj.get("count") {
            None => None,
            Some(_) => Some(f.index("count")?),
        };
        let client = f.client(c, clients)?;
        return Ok(Step::Download { client, count });
    }
    if let Some(w) = obj.get("restart") {
        return match w {
            Json::String(s) if s == "server" => Ok(Step::Restart(Who::Server)),
            w => Ok(Step::Restart(Who::Client(f.client(w, clients)?))),
        };
    }
    for (name, step) in [
        ("compact", Step::Compact),
        ("trim", Step::Trim),
        ("backup", Step::Backup),
        ("restore", Step::Restore),
    ] {
        if let Some(w) = obj.get(name) {
            return server_step(w, what, name, step);
        }
    }
    if let Some(c) = obj.get("reset") {
        let mode = match obj.get("mode") {
            None => None,
            Some(m) => Some(reset_mode(m, &format!("{what}: \"mode\""))?),
        };
        return Ok(Step::Reset {
            client: f.client(c, clients)?,
            mode,
        });
    }
    if let Some(c) = obj.get("bootstrap") {
        return Ok(Step::Bootstrap(f.client(c, clients)?));
    }
    match obj.get("sync") {
        Some(Json::String(s)) if s == "all" => Ok(Step::Sync((1..=clients).collect())),
        Some(Json::Array(items)) => Ok(Step::Sync(
            (items.iter())
                .map(|c| f.client(c, clients))
                .collect::<Result<_, _>>()?,
        )),
        Some(_) => malformed(format!(
            "{what}: \"sync\" must be \"all\" or an array of clients"
        )),
        None => malformed(format!(
            "{what}: a step needs \"client\"/\"tx\", \"upload\", \"download\", \"sync\", \"restart\", \"compact\", \"bootstrap\", \"trim\", \"reset\", \"backup\" or \"restore\""
        )),
    }
}
