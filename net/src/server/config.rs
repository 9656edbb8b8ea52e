//! The server's configuration: tokens and the users they authenticate, realm-level
//! permissions by path, resource limits, and the rules a realm path must follow.

use objsync::wire::Limits;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use subtle::{Choice, ConstantTimeEq};

/// The user id the admin token acts as, for `/~/` paths.
pub const ADMIN_USER: &str = "__admin";

/// The longest path segment: segments become file names.
const MAX_SEGMENT: usize = 200;

/// The longest realm path: it becomes a file path of about as many bytes under the data
/// directory, which must stay well inside the system's limit (4,096 on Linux).
const MAX_PATH: usize = 1024;

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
    /// How often to log a status line (connections, realms, integrations per second, lag),
    /// if at all.
    pub status_interval: Option<Duration>,
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
            .field("status_interval", &self.status_interval)
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
            status_interval: None,
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

    /// The ids of the configured users that may access the realm at `path` (resolved), each
    /// once.
    pub fn users_of<'c>(&'c self, path: &'c str) -> impl Iterator<Item = &'c str> + 'c {
        let mut seen = std::collections::HashSet::new();
        self.users.iter().filter_map(move |(_, id)| {
            let user = User::Named(id.clone());
            (seen.insert(id.as_str()) && self.level(&user, path).is_some()).then_some(id.as_str())
        })
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
